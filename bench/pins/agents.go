package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/open-telemetry/opamp-go/client"
	"github.com/open-telemetry/opamp-go/client/types"
	"github.com/open-telemetry/opamp-go/protobufs"

	"github.com/periscope-dev/periscope/bench/internal/lines"
	"github.com/periscope-dev/periscope/bench/internal/nofile"
	"github.com/periscope-dev/periscope/bench/internal/procstat"
	"github.com/periscope-dev/periscope/internal/desired"
)

// The agents process speaks to the benchmark over stdout, one line per event:
//
//	R <index> <release> <unix ns>  agent index received an offer of release
//	X <index> <error>              agent index received a remote config it could not read
//	P <connected> <failed attempts> progress while connecting
//	C <connected> <ms>             all agents started; how many connected, how long it took
//	M <peak RSS KiB> <CPU s>       answer to "stats" on stdin
//
// and reads commands on stdin: "stats", and "stop" (or end of input), which exits.

// runAgents is the child process: one real opamp-go WebSocket client per token.
func runAgents(managerURL, tokensFile string, concurrency int, heartbeat time.Duration) error {
	if _, err := nofile.Raise(); err != nil {
		return err
	}
	b, err := os.ReadFile(tokensFile)
	if err != nil {
		return err
	}
	tokens := strings.Fields(string(b))
	endpoint := "ws" + strings.TrimPrefix(managerURL, "http") + "/v1/opamp"

	out, flushed := lines.Start(os.Stdout)
	var connected, failed atomic.Int64
	start := time.Now()
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	stopProgress := lines.Progress(out, &connected, &failed)
	for i, tok := range tokens {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			up, err := startAgent(i, tok, endpoint, heartbeat, out, &connected, &failed)
			if err != nil {
				out <- fmt.Sprintf("X %d start: %v", i, err)
				return
			}
			// Hold the slot until the handshake is done, so at most concurrency
			// connections are being set up at once; a client that has not connected
			// in time keeps retrying on its own.
			select {
			case <-up:
			case <-time.After(30 * time.Second):
			}
		}()
	}
	wg.Wait()
	stopProgress()
	out <- fmt.Sprintf("C %d %d", connected.Load(), time.Since(start).Milliseconds())

	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		switch sc.Text() {
		case "stats":
			cpu, _ := procstat.CPU(os.Getpid())
			out <- fmt.Sprintf("M %d %.2f", procstat.PeakRSS(os.Getpid()), cpu)
		case "stop":
			close(out)
			flushed()
			return nil
		}
	}
	close(out)
	flushed()
	return nil
}

// startAgent starts one agent: a WebSocket OpAMP client that accepts release
// offers and reports each one applied at once (no hook runs). The returned
// channel closes when it first connects.
func startAgent(i int, token, endpoint string, heartbeat time.Duration, out chan<- string, connected, failed *atomic.Int64) (<-chan struct{}, error) {
	str := func(k, v string) *protobufs.KeyValue {
		return &protobufs.KeyValue{Key: k, Value: &protobufs.AnyValue{Value: &protobufs.AnyValue_StringValue{StringValue: v}}}
	}
	c := client.NewWebSocket(nopLogger{})
	if err := c.SetAgentDescription(&protobufs.AgentDescription{
		IdentifyingAttributes:    []*protobufs.KeyValue{str("service.name", "periscope-agent"), str("service.version", "bench")},
		NonIdentifyingAttributes: []*protobufs.KeyValue{str("periscope.release.version", "2.0")},
	}); err != nil {
		return nil, err
	}
	caps := protobufs.AgentCapabilities_AgentCapabilities_ReportsStatus |
		protobufs.AgentCapabilities_AgentCapabilities_AcceptsRemoteConfig |
		protobufs.AgentCapabilities_AgentCapabilities_ReportsRemoteConfig |
		protobufs.AgentCapabilities_AgentCapabilities_ReportsHeartbeat
	if err := c.SetCapabilities(&caps); err != nil {
		return nil, err
	}
	up := make(chan struct{})
	var once sync.Once
	uid := uuid.New()
	err := c.Start(context.Background(), types.StartSettings{
		OpAMPServerURL:    endpoint,
		Header:            map[string][]string{"Authorization": {"Bearer " + token}},
		InstanceUid:       types.InstanceUid(uid),
		HeartbeatInterval: &heartbeat,
		Callbacks: types.Callbacks{
			OnConnect: func(context.Context) {
				once.Do(func() {
					connected.Add(1)
					close(up)
				})
			},
			OnConnectFailed: func(context.Context, error) { failed.Add(1) },
			OnMessage: func(_ context.Context, msg *types.MessageData) {
				rc := msg.RemoteConfig
				if rc == nil {
					return
				}
				at := time.Now().UnixNano()
				o, err := desired.Decode(rc)
				if err != nil {
					out <- fmt.Sprintf("X %d %v", i, err)
					return
				}
				out <- fmt.Sprintf("R %d %s %d", i, o.Release, at)
				// What a real agent says once its hook succeeded; it lets the
				// manager count the deployment as up to date.
				if err := c.SetRemoteConfigStatus(&protobufs.RemoteConfigStatus{LastRemoteConfigHash: rc.ConfigHash,
					Status: protobufs.RemoteConfigStatuses_RemoteConfigStatuses_APPLIED}); err != nil {
					out <- fmt.Sprintf("X %d status: %v", i, err)
				}
			},
		},
	})
	if err != nil {
		return nil, err
	}
	return up, nil
}

type nopLogger struct{}

func (nopLogger) Debugf(context.Context, string, ...any) {}
func (nopLogger) Errorf(context.Context, string, ...any) {}
