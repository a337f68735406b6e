package s3bucket

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.uber.org/goleak"

	"github.com/periscope-dev/periscope/internal/agent/runtime"
	"github.com/periscope-dev/periscope/internal/agent/runtime/storage"
	"github.com/periscope-dev/periscope/internal/agent/runtime/storage/storagetest"
	"github.com/periscope-dev/periscope/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// build makes the source c describes or fails the test.
func build(t *testing.T, c storage.Config, env ...string) runtime.Source {
	return storagetest.Build(t, New, c, env...)
}

// fillBucket starts versitygw with bucket "usage" and writes objects a/00 …
// (na of them) and b/00 … (nb), object i of each of size 7i+1, returning the
// endpoint and each prefix's bytes.
func fillBucket(t *testing.T, na, nb int) (endpoint string, bytesA, bytesB int64) {
	t.Helper()
	endpoint = testenv.VersityGW(t, "usage")
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	client := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(endpoint), UsePathStyle: true,
		HTTPClient:  &http.Client{Transport: tr},
		Credentials: credentials.NewStaticCredentialsProvider(testenv.VersityAccessKey, testenv.VersitySecretKey, "")})
	put := func(prefix string, n int) (total int64) {
		for i := range n {
			size := 7*i + 1
			_, err := client.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String("usage"),
				Key: aws.String(fmt.Sprintf("%s%02d", prefix, i)), Body: bytes.NewReader(bytes.Repeat([]byte{'x'}, size))})
			if err != nil {
				t.Fatalf("put: %v", err)
			}
			total += int64(size)
		}
		return total
	}
	return endpoint, put("a/", na), put("b/", nb)
}

func s3Config(endpoint string, maxKeys int) storage.Config {
	return storage.Config{Kind: storage.KindS3, Name: "usage", URL: endpoint, Bucket: "usage", PathStyle: true, MaxKeys: maxKeys,
		Prefixes: []string{"a/", "b/", "z/"}, UsernameEnv: "KEY", PasswordEnv: "SECRET"}
}

var s3Env = []string{"KEY=" + testenv.VersityAccessKey, "SECRET=" + testenv.VersitySecretKey}

func TestS3CountsObjectsAndBytesExactly(t *testing.T) {
	const na, nb = 8, 17
	endpoint, bytesA, bytesB := fillBucket(t, na, nb)
	src := build(t, s3Config(endpoint, 0), s3Env...)
	src.(*s3Source).pageKeys = 3 // nine pages, the last one short
	ms, err := storagetest.Collect(t, src)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []s3Figures{
		{"", na + nb, bytesA + bytesB, false},
		{"a/", na, bytesA, false},
		{"b/", nb, bytesB, false},
		{"z/", 0, 0, false},
	} {
		tc.check(t, ms)
	}
	if got := storagetest.Value(t, ms, "periscope.storage.listed", "{object}", "aws.s3.bucket", "usage"); got != na+nb {
		t.Errorf("listed %d, want %d", got, na+nb)
	}
}

// TestS3BoundedListingIsMarkedPartial cuts the listing below the bucket's
// size: the bucket's figures are partial with the listed count; a prefix the
// listing went past is still exact.
func TestS3BoundedListingIsMarkedPartial(t *testing.T) {
	const na, nb, limit = 8, 17, 10
	endpoint, bytesA, _ := fillBucket(t, na, nb)
	src := build(t, s3Config(endpoint, limit), s3Env...)
	src.(*s3Source).pageKeys = 4 // pages of 4, 4 and the 2 left of the bound
	ms, err := storagetest.Collect(t, src)
	if err != nil {
		t.Fatal(err)
	}
	listed := storagetest.Points(t, ms, "periscope.storage.listed", "{object}", "aws.s3.bucket", "usage")
	if len(listed) != 1 || listed[0].IntValue() != limit || !storagetest.Partial(listed[0]) {
		t.Fatalf("listed %v, want %d marked partial", listed, limit)
	}
	// Keys a/00…a/07 then b/00, b/01: sizes 1, 8, … 50 then 1, 8.
	for _, tc := range []s3Figures{
		{"", limit, bytesA + 1 + 8, true},
		{"a/", na, bytesA, false},
		{"b/", limit - na, 1 + 8, true},
		{"z/", 0, 0, true},
	} {
		tc.check(t, ms)
	}
}

// s3Figures is what the source should say of the bucket (prefix "") or of one
// prefix.
type s3Figures struct {
	prefix         string
	objects, bytes int64
	partial        bool
}

func (f s3Figures) check(t *testing.T, ms pmetric.MetricSlice) {
	t.Helper()
	kv := []string{"aws.s3.bucket", "usage", storage.AttrSource, "s3/usage"}
	if f.prefix != "" {
		kv = append(kv, "periscope.storage.prefix", f.prefix)
	}
	o := storagetest.Points(t, ms, "periscope.storage.objects", "{object}", kv...)
	b := storagetest.Points(t, ms, "periscope.storage.size", "By", kv...)
	if f.prefix == "" {
		o, b = withoutPrefix(o), withoutPrefix(b)
	}
	if len(o) != 1 || len(b) != 1 {
		t.Fatalf("prefix %q: %d object and %d size points", f.prefix, len(o), len(b))
	}
	if o[0].IntValue() != f.objects || b[0].IntValue() != f.bytes || storagetest.Partial(o[0]) != f.partial || storagetest.Partial(b[0]) != f.partial {
		t.Errorf("prefix %q: %d objects, %d bytes, partial %v; want %d, %d, %v",
			f.prefix, o[0].IntValue(), b[0].IntValue(), storagetest.Partial(o[0]), f.objects, f.bytes, f.partial)
	}
}

// withoutPrefix keeps the bucket's own points, those with no prefix attribute.
func withoutPrefix(pts []pmetric.NumberDataPoint) []pmetric.NumberDataPoint {
	var out []pmetric.NumberDataPoint
	for _, p := range pts {
		if _, ok := p.Attributes().Get("periscope.storage.prefix"); !ok {
			out = append(out, p)
		}
	}
	return out
}

func TestS3UnreachableFails(t *testing.T) {
	storagetest.Unreachable(t, build(t, storage.Config{Kind: storage.KindS3, Name: "exports", URL: "http://" + testenv.ClosedAddr(t), Bucket: "b", PathStyle: true}))
}

func TestNewTakesOnlyS3(t *testing.T) {
	if _, err := New(storage.Config{Kind: storage.KindRedis, Name: "x", URL: "redis://h:1"}, nil); err == nil {
		t.Error("New accepted a redis config")
	}
}

// TestS3ListingFailingPartWaySendsWhatItSaw puts a proxy in front of the store
// that fails the second page: the first page's figures are sent, marked
// partial, and the error names the source.
func TestS3ListingFailingPartWaySendsWhatItSaw(t *testing.T) {
	endpoint, _, _ := fillBucket(t, 8, 17)
	target, err := url.Parse(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	proxy.Transport = tr
	var lists atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("list-type") && lists.Add(1) == 2 {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprint(w, `<Error><Code>InternalError</Code><Message>disk on fire</Message></Error>`)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { srv.Close(); tr.CloseIdleConnections() })

	src := build(t, s3Config(srv.URL, 0), s3Env...)
	src.(*s3Source).pageKeys = 4
	ms, err := storagetest.Collect(t, src)
	if err == nil || !strings.Contains(err.Error(), "storage source s3/usage:") || !strings.Contains(err.Error(), "InternalError") {
		t.Fatalf("Collect: %v, want the store's error naming the source", err)
	}
	for _, f := range []s3Figures{
		{"", 4, 1 + 8 + 15 + 22, true},
		{"a/", 4, 1 + 8 + 15 + 22, true},
		{"b/", 0, 0, true},
	} {
		f.check(t, ms)
	}
	listed := storagetest.Points(t, ms, "periscope.storage.listed", "{object}")
	if len(listed) != 1 || listed[0].IntValue() != 4 || !storagetest.Partial(listed[0]) {
		t.Errorf("listed %v, want 4 marked partial", listed)
	}
}
