package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"

	"github.com/periscope-dev/periscope/bench/internal/procstat"
)

// The receive floor: what it costs merely to receive the load and answer it, with
// nothing done with the records. Two receivers run, each on one CPU like the agent:
// grpc-go with a raw codec (the library the Collector receives with), and a minimal
// HTTP/2 responder on one goroutine per connection that answers every export with an
// empty success and every PING with its ACK, the fewest reads, writes and wake-ups an
// OTLP/gRPC server can get away with. The Collector's CPU for the whole job divided by
// a floor's is the highest ratio any pipeline built on that receiver could reach.

// floorEnv makes this program, re-executed, serve as a floor receiver: "MODE ADDR".
const floorEnv = "PERISCOPE_BENCH_FLOOR"

// floors are the receive floors measured with -floor.
var floors = []string{"grpc-go", "http2-min"}

// runFloor starts a floor receiver, puts the load through it and returns its figures;
// records are the requests it answered times the records telemetrygen puts in each.
func (b *bench) runFloor(mode, sig string) (result, error) {
	self, err := os.Executable()
	if err != nil {
		return result{}, err
	}
	addr := freeAddr()
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), floorEnv+"="+mode+" "+addr)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	pid := cmd.Process.Pid
	cpu, err := b.loadCPU(pid, sig, addr, "", func() {}, func() time.Duration {
		time.Sleep(time.Second) // answers are synchronous: nothing is left to settle
		return time.Second
	})
	if err != nil {
		return result{}, err
	}
	r := result{cpu: cpu, rssKiB: procstat.PeakRSS(pid)}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	var requests int64
	if _, err := fmt.Sscanf(stdout.String(), "requests %d", &requests); err != nil {
		return result{}, fmt.Errorf("%s floor: no request count (%v)\n%s", mode, err, tail(stderr.String()))
	}
	r.delivered = requests * int64(batchSize)
	return r, nil
}

// serveFloor is the re-executed floor receiver; it prints how many requests it
// answered when told to stop.
func serveFloor(spec string) error {
	var mode, addr string
	if _, err := fmt.Sscan(spec, &mode, &addr); err != nil {
		return fmt.Errorf("%s=%q: %w", floorEnv, spec, err)
	}
	runtime.GOMAXPROCS(1)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	var requests atomic.Int64
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, os.Interrupt)
	go func() {
		<-stop
		fmt.Printf("requests %d\n", requests.Load())
		os.Exit(0)
	}()
	switch mode {
	case "grpc-go":
		srv := grpc.NewServer(grpc.ForceServerCodec(discardCodec{}), grpc.NumStreamWorkers(1))
		for _, name := range []string{"opentelemetry.proto.collector.logs.v1.LogsService", "opentelemetry.proto.collector.trace.v1.TraceService"} {
			srv.RegisterService(&grpc.ServiceDesc{ServiceName: name, HandlerType: (*any)(nil),
				Methods: []grpc.MethodDesc{{MethodName: "Export", Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
					var body []byte
					if err := dec(&body); err != nil {
						return nil, err
					}
					requests.Add(1)
					empty := []byte{}
					return &empty, nil
				}}}}, struct{}{})
		}
		return srv.Serve(ln)
	case "http2-min":
		for {
			c, err := ln.Accept()
			if err != nil {
				return err
			}
			go serveMinimalHTTP2(c, &requests)
		}
	}
	return fmt.Errorf("unknown floor %q", mode)
}

// discardCodec copies a request out (as the agent's raw codec does) and sends responses
// as they are.
type discardCodec struct{}

func (discardCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (discardCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = append([]byte(nil), data...)
	return nil
}
func (discardCodec) Name() string { return "proto" }

// serveMinimalHTTP2 answers gRPC unary calls on one connection without a goroutine per
// stream, a writer goroutine or flow control beyond the connection window, flushing
// only when nothing more is buffered to read. It is a measuring stick, not a server.
func serveMinimalHTTP2(c net.Conn, requests *atomic.Int64) {
	defer c.Close()
	br := bufio.NewReaderSize(c, 32<<10)
	if _, err := io.ReadFull(br, make([]byte, len(http2.ClientPreface))); err != nil {
		return
	}
	bw := bufio.NewWriterSize(c, 16<<10)
	fr := http2.NewFramer(bw, br)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	var hbuf bytes.Buffer
	henc := hpack.NewEncoder(&hbuf)
	fr.WriteSettings()
	bw.Flush()
	bodies := map[uint32][]byte{}
	var unacked uint32
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.MetaHeadersFrame:
			bodies[f.StreamID] = nil
		case *http2.DataFrame:
			bodies[f.StreamID] = append(bodies[f.StreamID], f.Data()...)
			if unacked += f.Length; unacked > 16<<10 {
				fr.WriteWindowUpdate(0, unacked)
				unacked = 0
			}
			if f.StreamEnded() {
				delete(bodies, f.StreamID)
				requests.Add(1)
				hbuf.Reset()
				henc.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
				henc.WriteField(hpack.HeaderField{Name: "content-type", Value: "application/grpc"})
				fr.WriteHeaders(http2.HeadersFrameParam{StreamID: f.StreamID, BlockFragment: hbuf.Bytes(), EndHeaders: true})
				fr.WriteData(f.StreamID, false, []byte{0, 0, 0, 0, 0}) // an empty message
				hbuf.Reset()
				henc.WriteField(hpack.HeaderField{Name: "grpc-status", Value: "0"})
				fr.WriteHeaders(http2.HeadersFrameParam{StreamID: f.StreamID, BlockFragment: hbuf.Bytes(), EndHeaders: true, EndStream: true})
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				fr.WritePing(true, f.Data)
			}
		case *http2.GoAwayFrame:
			return
		}
		if br.Buffered() == 0 {
			if err := bw.Flush(); err != nil {
				return
			}
		}
	}
}
