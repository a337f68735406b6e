package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
	"github.com/periscope-dev/periscope/internal/otlp"
)

// poisonLogs is one log record whose body and service.name hold invalid UTF-8, as
// an application logging a file name or user input sends it.
func poisonLogs(name string) plog.Logs {
	l := plog.NewLogs()
	rl := l.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "uploads\xff")
	rl.ScopeLogs().AppendEmpty().LogRecords().AppendEmpty().Body().SetStr(name + " /tmp/r\xe9sum\xe9.pdf")
	return l
}

func goodLogs(bodies ...string) plog.Logs {
	l := plog.NewLogs()
	rl := l.ResourceLogs().AppendEmpty()
	rl.Resource().Attributes().PutStr("service.name", "uploads")
	lrs := rl.ScopeLogs().AppendEmpty().LogRecords()
	for _, b := range bodies {
		lrs.AppendEmpty().Body().SetStr(b)
	}
	return l
}

// fileBodies counts the log bodies in a file exporter's JSON Lines, by body.
func fileBodies(t *testing.T, path string) map[string]int {
	t.Helper()
	out := map[string]int{}
	f, err := os.Open(path)
	if err != nil {
		return out
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Buffer(nil, 16<<20)
	for s.Scan() {
		l, err := (&plog.JSONUnmarshaler{}).UnmarshalLogs(s.Bytes())
		if err != nil {
			t.Fatalf("file exporter line %q: %v", s.Text(), err)
		}
		for _, r := range flattenLogs(l) {
			out[r.name]++
		}
	}
	return out
}

// TestPoisonRecordsHoldUpNothing sends a log record with invalid UTF-8 in its body
// and its service.name through a real agent process, over OTLP/HTTP protobuf,
// OTLP/JSON and gRPC, each followed by good records. Before, the manager's store
// refused the poison (NOT NULL constraint) with 503 on every retry, the agent
// resent it forever, every later record waited behind it, and each retry put
// another copy in the file exporter. Now the records behind it are stored, the
// poison is stored with U+FFFD in place of its invalid bytes, and the file
// exporter holds every record exactly once.
func TestPoisonRecordsHoldUpNothing(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "export.jsonl")
	m := startTelemetryManager(t, "127.0.0.1:0", filepath.Join(dir, "manager"),
		[]config.Exporter{{Name: "file", Type: "file", Path: path}})
	defer m.Shutdown(ctx)
	token := createAcme(t, m)
	ag := startAgentProc(t, m.URL(), token, filepath.Join(dir, "agent"), freePort(t), freePort(t))
	since := time.Now().Add(-time.Minute)

	post := func(contentType string, body []byte) int {
		t.Helper()
		resp, err := http.Post("http://"+ag.http+"/v1/logs", contentType, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	proto := func(l plog.Logs) []byte {
		b, err := plogotlp.NewExportRequestFromLogs(l).MarshalProto()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// OTLP/HTTP protobuf carries the invalid bytes as they are.
	if got := post(otlp.ContentTypeProto, proto(poisonLogs("poison-http"))); got != 200 {
		t.Fatalf("poison over OTLP/HTTP: %d, want 200", got)
	}
	if got := post(otlp.ContentTypeProto, proto(goodLogs("good-http-1", "good-http-2"))); got != 200 {
		t.Fatalf("good records over OTLP/HTTP: %d", got)
	}
	// JSON cannot carry invalid UTF-8 as such: a lone surrogate escape (\udc80) is
	// what a sender's JSON encoder makes of such bytes, and a raw 0xff byte is what a
	// careless one writes.
	poisonJSON := `{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"uploads\udc80"}}]},` +
		`"scopeLogs":[{"logRecords":[{"body":{"stringValue":"poison-json-escape /tmp/r\udce9sum\udce9.pdf"}}]}]}]}`
	if got := post(otlp.ContentTypeJSON, []byte(poisonJSON)); got != 200 {
		t.Fatalf("poison over OTLP/JSON (escapes): %d, want 200", got)
	}
	rawJSON := strings.ReplaceAll(strings.ReplaceAll(poisonJSON, `\udc80`, "\xff"), `\udce9`, "\xe9")
	rawJSON = strings.ReplaceAll(rawJSON, "poison-json-escape", "poison-json-raw")
	if got := post(otlp.ContentTypeJSON, []byte(rawJSON)); got != 200 {
		t.Fatalf("poison over OTLP/JSON (raw bytes): %d, want 200", got)
	}
	if got := post(otlp.ContentTypeJSON, []byte(`{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"uploads"}}]},`+
		`"scopeLogs":[{"logRecords":[{"body":{"stringValue":"good-json"}}]}]}]}`)); got != 200 {
		t.Fatalf("good record over OTLP/JSON: %d", got)
	}
	conn, err := grpc.NewClient(ag.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := plogotlp.NewGRPCClient(conn)
	for _, l := range []plog.Logs{poisonLogs("poison-grpc"), goodLogs("good-grpc")} {
		if _, err := client.Export(ctx, plogotlp.NewExportRequestFromLogs(l)); err != nil {
			t.Fatalf("over gRPC: %v", err)
		}
	}

	// Every record reaches the store: the good ones as sent, the poison with U+FFFD.
	want := map[string]string{
		"good-http-1": "uploads", "good-http-2": "uploads", "good-json": "uploads", "good-grpc": "uploads",
		"poison-http /tmp/r\uFFFDsum\uFFFD.pdf":        "uploads\uFFFD",
		"poison-grpc /tmp/r\uFFFDsum\uFFFD.pdf":        "uploads\uFFFD",
		"poison-json-escape /tmp/r\uFFFDsum\uFFFD.pdf": "uploads\uFFFD",
		"poison-json-raw /tmp/r\uFFFDsum\uFFFD.pdf":    "uploads\uFFFD",
	}
	api := apiclient.New(m.URL(), adminToken)
	eventually(t, 20*time.Second, "every record in the manager's store", func() error {
		page, err := api.Logs(ctx, telquery.LogQuery{Filter: telquery.Filter{Deployment: "acme-prod", Since: since}, Limit: 100})
		if err != nil {
			return err
		}
		got := map[string]string{}
		for _, l := range page.Logs {
			got[l.Body] = l.Context.Service
		}
		for body, service := range want {
			if s, ok := got[body]; !ok || s != service {
				return fmt.Errorf("%q: service %q (stored %v: %q)", body, service, ok, s)
			}
		}
		if len(page.Logs) != len(want) {
			return fmt.Errorf("%d records stored, want %d: %q", len(page.Logs), len(want), got)
		}
		return nil
	})
	// The agent's JSON decoding already turns the escapes into U+FFFD; the other
	// three reach the store with their invalid bytes, and are counted there.
	if n := counter(t, m.URL()+"/metrics", "periscope_telstore_invalid_utf8_rows_total", `table="logs"`); n != 3 {
		t.Errorf("manager counted %v log rows with invalid UTF-8, want 3", n)
	}

	// The file exporter holds each record exactly once. Records are exported as
	// received; the poison bodies are matched by their valid prefix.
	eventually(t, 20*time.Second, "every record in the file exporter", func() error {
		got := fileBodies(t, path)
		copies := map[string]int{}
		for body, n := range got {
			key, _, _ := strings.Cut(body, " ")
			copies[key] += n
		}
		for _, k := range []string{"good-http-1", "good-http-2", "good-json", "good-grpc", "poison-http", "poison-grpc",
			"poison-json-escape", "poison-json-raw"} {
			if copies[k] != 1 {
				return fmt.Errorf("%s: %d copies in the file exporter, want 1 (file holds %v)", k, copies[k], got)
			}
		}
		return nil
	})
}
