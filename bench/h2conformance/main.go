// Command h2conformance runs the h2spec HTTP/2 conformance suite (RFC 9113 and RFC
// 7541 cases, github.com/summerwind/h2spec) against the agent's and manager's own
// gRPC server (internal/otlp/grpcserver) and against grpc-go serving the same OTLP
// export services, and prints the results case by case.
//
//	scripts/install-peers h2spec
//	go run ./bench/h2conformance            # cases either server fails
//	go run ./bench/h2conformance -all       # every case
//
// Both servers speak plaintext HTTP/2 with prior knowledge (h2c), as the OTLP/gRPC
// ports do. It exits 1 when our server fails a case grpc-go passes; the test in this
// directory holds the same line in CI.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/periscope-dev/periscope/internal/testenv"
)

func main() {
	bin := flag.String("h2spec", filepath.Join(testenv.PeersDir(), "h2spec"), "the h2spec binary (scripts/install-peers h2spec)")
	timeout := flag.Int("timeout", 2, "seconds h2spec waits for each answer")
	all := flag.Bool("all", false, "print every case, not only those either server fails")
	serve := flag.String("serve", "", "only serve our server on this address, to run h2spec by hand (h2spec -v http2/6.5)")
	flag.Parse()
	if *serve != "" {
		ln, err := net.Listen("tcp", *serve)
		if err == nil {
			err = ours().serve(ln)
		}
		fmt.Fprintln(os.Stderr, "h2conformance:", err)
		os.Exit(2)
	}
	rows, err := runBoth(context.Background(), *bin, *timeout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "h2conformance:", err)
		os.Exit(2)
	}
	writeTable(os.Stdout, rows, !*all)
	if _, _, reg := summary(rows); len(reg) > 0 {
		os.Exit(1)
	}
}
