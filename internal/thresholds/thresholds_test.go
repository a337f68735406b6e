package thresholds

import (
	"reflect"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	set := Set{
		Queues: []QueueRule{
			{Source: AllSources, MaxLag: 1000},
			{Source: "nats/audit", MaxLag: 5000, MaxOldestAgeSeconds: 600},
		},
		Filesystems: []FilesystemRule{{Source: "filesystem/data", MinFreePercent: 10, MinFreeBytes: 1 << 30, MinFreeInodesPercent: 5}},
	}
	for _, tc := range []struct {
		name string
		f    Figures
		want []Breach
	}{
		{"under every threshold", Figures{
			Lags:    []Lag{{Source: "nats/orders", Destination: "orders", Group: "workers", Pending: 1000}},
			Volumes: []Volume{{Source: "filesystem/data", Path: "/data", Free: 50 << 30, Used: 50 << 30, InodesFree: 90, InodesUsed: 10}},
		}, nil},
		{"lag over the catch-all rule", Figures{
			Lags: []Lag{{Source: "nats/orders", Destination: "orders", Group: "workers", Pending: 1200}},
		}, []Breach{{Component: "threshold nats/orders lag", Source: "nats/orders", Error: "orders consumer workers lag 1200 > 1000"}}},
		{"a source's own rule wins over the catch-all", Figures{
			Lags: []Lag{{Source: "nats/audit", Destination: "audit", Group: "archiver", Pending: 1200}},
		}, nil},
		{"two consumers of one source make one breach", Figures{
			Lags: []Lag{{Source: "redis-stream/jobs", Destination: "jobs", Group: "a", Pending: 2000},
				{Source: "redis-stream/jobs", Destination: "jobs", Group: "b", Pending: 3000}},
		}, []Breach{{Component: "threshold redis-stream/jobs lag", Source: "redis-stream/jobs", Error: "jobs consumer a lag 2000 > 1000; jobs consumer b lag 3000 > 1000"}}},
		{"oldest message too old", Figures{
			Ages: []Age{{Source: "nats/audit", Destination: "audit", Seconds: 601}, {Source: "nats/orders", Destination: "orders", Seconds: 1e6}},
		}, []Breach{{Component: "threshold nats/audit age", Source: "nats/audit", Error: "audit oldest message 601s > 600s"}}},
		{"disk short of bytes and percent, inodes short", Figures{
			Volumes: []Volume{{Source: "filesystem/data", Path: "/data", Free: 512 << 20, Used: 9 << 30, InodesFree: 4, InodesUsed: 96}},
		}, []Breach{
			{Component: "threshold filesystem/data disk", Source: "filesystem/data", Error: "/data free 536870912 B < 1073741824 B; /data free 5.3% < 10%"},
			{Component: "threshold filesystem/data inodes", Source: "filesystem/data", Error: "/data inodes free 4.0% < 5%"},
		}},
		{"no inode table is not a breach", Figures{
			Volumes: []Volume{{Source: "filesystem/data", Path: "/data", Free: 50 << 30, Used: 1}},
		}, nil},
		{"a source without a rule is not checked", Figures{
			Volumes: []Volume{{Source: "filesystem/tmp", Path: "/tmp", Free: 0, Used: 100}},
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := set.Check(tc.f)
			if len(got) == 0 && len(tc.want) == 0 {
				return
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Check:\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestValidateNamesEveryProblem(t *testing.T) {
	s := Set{
		Queues: []QueueRule{{Source: "", MaxLag: 1}, {Source: "nats/a"}, {Source: "nats/b", MaxLag: -1}, {Source: "nats/b", MaxLag: 2}},
		Filesystems: []FilesystemRule{{Source: "*", MinFreePercent: 100}, {Source: "fs\n", MinFreeBytes: 1},
			{Source: strings.Repeat("x", MaxSourceBytes+1), MinFreeInodesPercent: -1}},
	}
	err := s.Validate()
	if err == nil {
		t.Fatal("Validate accepted a broken set")
	}
	for _, want := range []string{"queues[0].source: empty", "queues[1]: sets no threshold", "queues[2].max_lag: -1 is negative",
		`queues[3].source: "nats/b" has two rules`, "filesystems[0].min_free_percent: 100", "filesystems[1].source: not printable",
		"filesystems[2].source: 257 bytes", "filesystems[2].min_free_inodes_percent: -1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if err := (Set{}).Validate(); err != nil {
		t.Errorf("the empty set is invalid: %v", err)
	}
}

func TestWireRoundTripAndHash(t *testing.T) {
	s := Set{Queues: []QueueRule{{Source: "*", MaxLag: 1000}}, Filesystems: []FilesystemRule{{Source: "*", MinFreePercent: 10}}}
	got, err := DecodeMessage(Message(s))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, s) {
		t.Errorf("round trip: got %+v, want %+v", got, s)
	}
	if Hash(s) == "" || Hash(s) != WireHash(Encode(s)) {
		t.Errorf("Hash %q and WireHash %q of a valid set differ", Hash(s), WireHash(Encode(s)))
	}
	if Hash(Set{}) != "" {
		t.Errorf("the empty set hashes to %q, want the empty hash an agent without thresholds reports", Hash(Set{}))
	}
	for _, bad := range []string{``, `[]`, `{"queues":[{"source":"*"}]}`, `{"queue":[]}`, `{} {}`, `{"queues":[{"source":"*","max_lag":1}]}x`} {
		if _, err := Decode([]byte(bad)); err == nil {
			t.Errorf("Decode(%q) succeeded", bad)
		}
	}
	if _, err := Decode([]byte(`{"queues":[` + strings.Repeat(`{"source":"*","max_lag":1},`, MaxWireBytes/20) + `]}`)); err == nil {
		t.Error("Decode took more than MaxWireBytes")
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Encode(Set{Queues: []QueueRule{{Source: "*", MaxLag: 1000}}, Filesystems: []FilesystemRule{{Source: "fs/data", MinFreePercent: 10}}}))
	f.Add([]byte(`{"queues":[{"source":"","max_lag":-1}]}`))
	f.Add([]byte(`{"filesystems":[{"source":"*","min_free_percent":1e400}]}`))
	f.Fuzz(func(t *testing.T, wire []byte) {
		s, err := Decode(wire)
		if err != nil {
			return
		}
		// What decodes is valid and survives a round trip unchanged.
		if err := s.Validate(); err != nil {
			t.Fatalf("Decode returned an invalid set: %v", err)
		}
		again, err := Decode(Encode(s))
		if err != nil || !reflect.DeepEqual(again, s) {
			t.Fatalf("round trip of %q: %+v, %v", wire, again, err)
		}
		s.Check(Figures{Lags: []Lag{{Source: "nats/x", Pending: 1 << 62}}, Volumes: []Volume{{Source: "fs/data", Free: 1, Used: 1 << 62, InodesFree: 1, InodesUsed: 1}}})
	})
}
