package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/websocket"
	"github.com/open-telemetry/opamp-go/protobufs"
	"google.golang.org/protobuf/proto"

	"github.com/periscope-dev/periscope/bench/internal/lines"
	"github.com/periscope-dev/periscope/bench/internal/nofile"
	"github.com/periscope-dev/periscope/bench/internal/procstat"
	"github.com/periscope-dev/periscope/internal/desired"
)

// The agents process speaks to the benchmark over stdout, one line per event:
//
//	R <index> <release> <unix ns>  agent index received an offer of release
//	X <index> <error>              something went wrong for agent index
//	P <connected> <failed>         progress while connecting
//	C <connected> <ms>             every agent of the process tried; how many are connected, how long it took
//	M <RSS KiB> <peak RSS KiB>     answer to "stats" on stdin
//
// and reads commands on stdin: "stats", and "stop" (or end of input), which exits.

// agentSet is the agents process: one minimal OpAMP WebSocket client per token.
type agentSet struct {
	endpoint string
	hb       time.Duration
	sources  []net.IP
	out      chan string
	dialer   websocket.Dialer
	mu       sync.Mutex
	agents   []*agent
}

// agent is one simulated push agent: a WebSocket speaking OpAMP's protobuf
// (each message a zero varint header, then AgentToServer), the way opamp-go's
// client does, with none of its per-connection machinery.
type agent struct {
	i     int
	token string
	uid   []byte
	conn  *websocket.Conn
	wmu   sync.Mutex // one writer at a time: the reader's answers and the heartbeats
	seq   uint64
}

// bufferPool lends the write buffer to a connection only while it writes, so
// idle agents hold none (gorilla/websocket's WriteBufferPool).
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() any  { return b.p.Get() }
func (b *bufferPool) Put(x any) { b.p.Put(x) }

func runAgents(managerURL, tokensFile string, first int, sources []net.IP, concurrency int, hb time.Duration) error {
	if _, err := nofile.Raise(); err != nil {
		return err
	}
	b, err := os.ReadFile(tokensFile)
	if err != nil {
		return err
	}
	tokens := strings.Fields(string(b))
	s := &agentSet{endpoint: "ws" + strings.TrimPrefix(managerURL, "http") + "/v1/opamp", hb: hb, sources: sources}
	s.dialer = websocket.Dialer{HandshakeTimeout: 30 * time.Second, ReadBufferSize: 1024, WriteBufferSize: 1024, WriteBufferPool: &bufferPool{}}
	var flushed func()
	s.out, flushed = lines.Start(os.Stdout)
	var connected, failed atomic.Int64
	start := time.Now()
	stopProgress := lines.Progress(s.out, &connected, &failed)
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	for k, tok := range tokens {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			a := &agent{i: first + k, token: tok}
			u := uuid.New()
			a.uid = u[:]
			// A few tries: under load the manager's accept queue can overflow.
			var err error
			for try := range 5 {
				if err = s.connect(a, k); err == nil {
					break
				}
				failed.Add(1)
				time.Sleep(time.Duration(try+1) * 200 * time.Millisecond)
			}
			if err != nil {
				s.out <- fmt.Sprintf("X %d connect: %v", a.i, err)
				return
			}
			connected.Add(1)
			s.mu.Lock()
			s.agents = append(s.agents, a)
			s.mu.Unlock()
			go s.read(a)
		}()
	}
	wg.Wait()
	stopProgress()
	s.out <- fmt.Sprintf("C %d %d", connected.Load(), time.Since(start).Milliseconds())
	stopHB := make(chan struct{})
	go s.heartbeats(stopHB)

	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() && sc.Text() != "stop" {
		if sc.Text() == "stats" {
			s.out <- fmt.Sprintf("M %d %d", procstat.RSS(os.Getpid()), procstat.PeakRSS(os.Getpid()))
		}
	}
	close(stopHB)
	s.mu.Lock()
	for _, a := range s.agents {
		a.conn.Close()
	}
	s.mu.Unlock()
	close(s.out)
	flushed()
	return nil
}

// connect opens agent a's WebSocket from one of the source addresses (k picks
// it) and sends its full state: description, capabilities, health.
func (s *agentSet) connect(a *agent, k int) error {
	d := s.dialer
	if len(s.sources) > 0 {
		nd := &net.Dialer{LocalAddr: &net.TCPAddr{IP: s.sources[k%len(s.sources)]}, Timeout: 30 * time.Second}
		d.NetDialContext = nd.DialContext
	}
	c, resp, err := d.DialContext(context.Background(), s.endpoint, http.Header{"Authorization": {"Bearer " + a.token}})
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		return err
	}
	a.conn = c
	return a.send(a.fullState())
}

func (a *agent) fullState() *protobufs.AgentToServer {
	str := func(k, v string) *protobufs.KeyValue {
		return &protobufs.KeyValue{Key: k, Value: &protobufs.AnyValue{Value: &protobufs.AnyValue_StringValue{StringValue: v}}}
	}
	return &protobufs.AgentToServer{
		AgentDescription: &protobufs.AgentDescription{
			IdentifyingAttributes:    []*protobufs.KeyValue{str("service.name", "periscope-agent"), str("service.version", "bench")},
			NonIdentifyingAttributes: []*protobufs.KeyValue{str("periscope.release.version", "2.0")},
		},
		Capabilities: uint64(protobufs.AgentCapabilities_AgentCapabilities_ReportsStatus |
			protobufs.AgentCapabilities_AgentCapabilities_AcceptsRemoteConfig |
			protobufs.AgentCapabilities_AgentCapabilities_ReportsRemoteConfig |
			protobufs.AgentCapabilities_AgentCapabilities_ReportsHeartbeat),
		Health: &protobufs.ComponentHealth{Healthy: true, Status: "running"},
	}
}

// send writes one message with OpAMP's WebSocket header (a zero varint).
func (a *agent) send(m *protobufs.AgentToServer) error {
	a.wmu.Lock()
	defer a.wmu.Unlock()
	m.InstanceUid, m.SequenceNum = a.uid, a.seq
	a.seq++
	body, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	return a.conn.WriteMessage(websocket.BinaryMessage, append([]byte{0}, body...))
}

// read handles what the manager sends: a release offer is stamped, reported
// to the benchmark and answered "applied" at once (no hook runs); a request
// for the full state is answered with it.
func (s *agentSet) read(a *agent) {
	for {
		_, b, err := a.conn.ReadMessage()
		if err != nil {
			return // closed by stop, or by the manager
		}
		at := time.Now().UnixNano()
		if len(b) == 0 || b[0] != 0 {
			s.out <- fmt.Sprintf("X %d message without the OpAMP header", a.i)
			continue
		}
		if h, n := binary.Uvarint(b); h != 0 || n != 1 {
			s.out <- fmt.Sprintf("X %d bad OpAMP header", a.i)
			continue
		}
		var m protobufs.ServerToAgent
		if err := proto.Unmarshal(b[1:], &m); err != nil {
			s.out <- fmt.Sprintf("X %d decode: %v", a.i, err)
			continue
		}
		if e := m.ErrorResponse; e != nil {
			s.out <- fmt.Sprintf("X %d manager: %s", a.i, e.ErrorMessage)
		}
		var reply *protobufs.AgentToServer
		if m.Flags&uint64(protobufs.ServerToAgentFlags_ServerToAgentFlags_ReportFullState) != 0 {
			reply = a.fullState()
		}
		if rc := m.RemoteConfig; rc != nil {
			o, err := desired.Decode(rc)
			if err != nil && !errors.Is(err, desired.ErrNoOffer) {
				s.out <- fmt.Sprintf("X %d offer: %v", a.i, err)
			} else if err == nil {
				s.out <- fmt.Sprintf("R %d %s %d", a.i, o.Release, at)
				if reply == nil {
					reply = &protobufs.AgentToServer{}
				}
				reply.RemoteConfigStatus = &protobufs.RemoteConfigStatus{LastRemoteConfigHash: rc.ConfigHash,
					Status: protobufs.RemoteConfigStatuses_RemoteConfigStatuses_APPLIED}
			}
		}
		if reply != nil {
			if err := a.send(reply); err != nil {
				s.out <- fmt.Sprintf("X %d reply: %v", a.i, err)
				return
			}
		}
	}
}

// heartbeats sends each agent's heartbeat once per interval, spread evenly
// over it, as a fleet of independent agents would.
func (s *agentSet) heartbeats(stop <-chan struct{}) {
	for {
		s.mu.Lock()
		agents := append([]*agent(nil), s.agents...)
		s.mu.Unlock()
		if len(agents) == 0 {
			return
		}
		gap := s.hb / time.Duration(len(agents))
		t := time.NewTicker(max(gap, time.Microsecond))
		for _, a := range agents {
			select {
			case <-stop:
				t.Stop()
				return
			case <-t.C:
			}
			if err := a.send(&protobufs.AgentToServer{}); err != nil {
				s.out <- fmt.Sprintf("X %d heartbeat: %v", a.i, err)
			}
		}
		t.Stop()
	}
}
