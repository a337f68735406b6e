package main

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"go.opentelemetry.io/collector/pdata/plog/plogotlp"
	"go.opentelemetry.io/collector/pdata/pmetric/pmetricotlp"
	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
	"google.golang.org/grpc"

	"github.com/periscope-dev/periscope/internal/otlp/consumer"
	"github.com/periscope-dev/periscope/internal/otlp/grpcserver"
)

// Outcome is what h2spec concluded about one case.
type Outcome string

// The outcomes h2spec reports.
const (
	Passed  Outcome = "pass"
	Failed  Outcome = "FAIL"
	Skipped Outcome = "skip"
)

// Case is one h2spec test case's result against one server.
type Case struct {
	ID      string // h2spec's section and number within it, e.g. "http2/6.5.3/1"
	Desc    string
	Outcome Outcome
	Detail  string // h2spec's expected/actual text when the case failed
}

// target is a server under test: Start serves on ln until Stop.
type target struct {
	name  string
	serve func(ln net.Listener) error
	stop  func()
}

// ours is the agent's and manager's own gRPC server with the OTLP export services,
// handing every request to a consumer that accepts it.
func ours() target {
	srv := grpcserver.New(consumer.ConsumerFunc(func(context.Context, consumer.Request) error { return nil }), grpcserver.Settings{})
	return target{name: "periscope", serve: srv.Serve, stop: func() { srv.Shutdown(canceled()) }}
}

// grpcGo is grpc-go serving the same three OTLP export services.
func grpcGo() target {
	srv := grpc.NewServer()
	plogotlp.RegisterGRPCServer(srv, &logsService{})
	ptraceotlp.RegisterGRPCServer(srv, &traceService{})
	pmetricotlp.RegisterGRPCServer(srv, &metricsService{})
	return target{name: "grpc-go", serve: srv.Serve, stop: srv.Stop}
}

type logsService struct {
	plogotlp.UnimplementedGRPCServer
}

func (*logsService) Export(context.Context, plogotlp.ExportRequest) (plogotlp.ExportResponse, error) {
	return plogotlp.NewExportResponse(), nil
}

type traceService struct {
	ptraceotlp.UnimplementedGRPCServer
}

func (*traceService) Export(context.Context, ptraceotlp.ExportRequest) (ptraceotlp.ExportResponse, error) {
	return ptraceotlp.NewExportResponse(), nil
}

type metricsService struct {
	pmetricotlp.UnimplementedGRPCServer
}

func (*metricsService) Export(context.Context, pmetricotlp.ExportRequest) (pmetricotlp.ExportResponse, error) {
	return pmetricotlp.NewExportResponse(), nil
}

// canceled is a context that has ended: Shutdown with it closes what is left at once.
func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// runSuite serves tg on a free loopback port, runs h2spec (plaintext HTTP/2 with prior
// knowledge) against it and returns its cases in h2spec's order.
func runSuite(ctx context.Context, h2spec string, tg target, timeoutSec int) ([]Case, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for %s: %w", tg.name, err)
	}
	served := make(chan error, 1)
	go func() { served <- tg.serve(ln) }()
	defer func() {
		tg.stop()
		<-served
	}()
	dir, err := os.MkdirTemp("", "h2conformance")
	if err != nil {
		return nil, fmt.Errorf("report directory: %w", err)
	}
	defer os.RemoveAll(dir)
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	// Most of the suite's time is spent waiting out a server's silence; the sections
	// run side by side, each in an h2spec of its own.
	results := make([][]Case, len(sections))
	errs := make([]error, len(sections))
	var wg sync.WaitGroup
	for i, sec := range sections {
		wg.Go(func() {
			report := filepath.Join(dir, fmt.Sprintf("report-%d.xml", i))
			cmd := exec.CommandContext(ctx, h2spec, "-h", "127.0.0.1", "-p", port, "-o", strconv.Itoa(timeoutSec), "-j", report, sec)
			cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
			// h2spec exits non-zero when a case fails; only a missing report is an error.
			runErr := cmd.Run()
			f, err := os.Open(report)
			if err != nil {
				errs[i] = fmt.Errorf("h2spec %s against %s wrote no report (%v): %w", sec, tg.name, runErr, err)
				return
			}
			defer f.Close()
			results[i], errs[i] = parseJUnit(f)
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var all []Case
	for _, r := range results {
		all = append(all, r...)
	}
	return all, nil
}

// sections are h2spec's top-level groups of cases, 145 in all with h2spec 2.2.1.
var sections = []string{"generic", "hpack", "http2/3", "http2/4", "http2/5", "http2/6", "http2/7", "http2/8"}

// junit is the part of h2spec's JUnit report read here.
type junit struct {
	Suites []struct {
		Package string `xml:"package,attr"`
		Cases   []struct {
			Desc    string  `xml:"classname,attr"`
			Failure *string `xml:"failure"`
			Error   *string `xml:"error"`
			Skipped *string `xml:"skipped"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// parseJUnit reads h2spec's JUnit report. Cases are numbered within their section
// as h2spec numbers them (h2spec --dryrun lists them).
func parseJUnit(r io.Reader) ([]Case, error) {
	var rep junit
	if err := xml.NewDecoder(r).Decode(&rep); err != nil {
		return nil, fmt.Errorf("read h2spec report: %w", err)
	}
	var out []Case
	for _, s := range rep.Suites {
		for i, tc := range s.Cases {
			c := Case{ID: fmt.Sprintf("%s/%d", s.Package, i+1), Desc: tc.Desc, Outcome: Passed}
			switch {
			case tc.Failure != nil:
				c.Outcome, c.Detail = Failed, *tc.Failure
			case tc.Error != nil:
				c.Outcome, c.Detail = Failed, *tc.Error
			case tc.Skipped != nil:
				c.Outcome = Skipped
			}
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("h2spec report lists no cases")
	}
	return out, nil
}

// Row is one case's results against both servers.
type Row struct {
	ID, Desc    string
	Ours, Other Outcome
	OursDetail  string
}

// Regression reports whether our server fails a case grpc-go passes.
func (r Row) Regression() bool { return r.Ours == Failed && r.Other == Passed }

// compare pairs the two servers' results by case.
func compare(ours, other []Case) []Row {
	byID := map[string]Case{}
	for _, c := range other {
		byID[c.ID] = c
	}
	rows := make([]Row, 0, len(ours))
	for _, c := range ours {
		o, ok := byID[c.ID]
		if !ok {
			o.Outcome = "-"
		}
		rows = append(rows, Row{ID: c.ID, Desc: c.Desc, Ours: c.Outcome, Other: o.Outcome, OursDetail: c.Detail})
	}
	return rows
}

// runBoth runs h2spec against our server and grpc-go side by side and pairs the results.
func runBoth(ctx context.Context, h2spec string, timeoutSec int) ([]Row, error) {
	var (
		wg                sync.WaitGroup
		oursRes, otherRes []Case
		oursErr, otherErr error
	)
	wg.Go(func() { oursRes, oursErr = runSuite(ctx, h2spec, ours(), timeoutSec) })
	wg.Go(func() { otherRes, otherErr = runSuite(ctx, h2spec, grpcGo(), timeoutSec) })
	wg.Wait()
	if err := errors.Join(oursErr, otherErr); err != nil {
		return nil, err
	}
	return compare(oursRes, otherRes), nil
}

// summary counts failures on each side and the cases only ours fails.
func summary(rows []Row) (oursFailed, otherFailed int, regressions []Row) {
	for _, r := range rows {
		if r.Ours == Failed {
			oursFailed++
		}
		if r.Other == Failed {
			otherFailed++
		}
		if r.Regression() {
			regressions = append(regressions, r)
		}
	}
	return oursFailed, otherFailed, regressions
}

// writeTable prints every case, or with failedOnly the cases either server fails.
func writeTable(w io.Writer, rows []Row, failedOnly bool) {
	sorted := append([]Row(nil), rows...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Regression() && !sorted[j].Regression() })
	fmt.Fprintf(w, "%-22s %-9s %-9s %s\n", "case", "periscope", "grpc-go", "description")
	for _, r := range sorted {
		if failedOnly && r.Ours != Failed && r.Other != Failed {
			continue
		}
		mark := ""
		if r.Regression() {
			mark = "  <-- only periscope fails"
		}
		fmt.Fprintf(w, "%-22s %-9s %-9s %s%s\n", r.ID, r.Ours, r.Other, r.Desc, mark)
	}
	o, g, reg := summary(rows)
	fmt.Fprintf(w, "\n%d cases: periscope fails %d, grpc-go fails %d, periscope alone fails %d\n", len(rows), o, g, len(reg))
	for _, r := range reg {
		fmt.Fprintf(w, "\n%s %s\n%s\n", r.ID, r.Desc, strings.TrimSpace(r.OursDetail))
	}
}
