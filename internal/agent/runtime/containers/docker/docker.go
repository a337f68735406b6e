// Package docker watches the containers of a Docker-compatible engine (Docker,
// Podman's compatible service) through the engine's REST API on its unix
// socket, with net/http alone: no engine client library enters the agent.
// Each round it lists the containers carrying the configured labels
// (GET /containers/json?all=1&filters=…), inspects each one
// (GET /containers/{id}/json: state, health, restart count, exit code, error,
// finish time) and, for a container that is not healthy, reads its last log
// lines (GET /containers/{id}/logs?tail=N, the multiplexed stream demultiplexed
// by its 8-byte frame headers), redacted like the supervisor's stderr. Every
// answer is read within a bound.
//
// Its metrics are listed in docs/signals.md ("Containers"); each container is
// the component "container NAME".
//
// # Testing
//
// Against a real engine: Podman's Docker-compatible service (podman system
// service), which runs here with runc (crun refuses this machine's hybrid
// cgroups) and an image of a static busybox imported without a registry; the
// test skips, or fails under PERISCOPE_REQUIRE_INTEGRATION=1, where podman is
// not installed. No Docker engine can run here, so Docker's own answers are
// tested as recorded: an HTTP server on a unix socket answers with Docker
// Engine API v1.45 responses in the shapes of Docker's API reference
// (testdata/).
package docker

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/periscope-dev/periscope/internal/agent/runtime"
	"github.com/periscope-dev/periscope/internal/agent/runtime/containers"
	"github.com/periscope-dev/periscope/internal/config"
)

// Attributes from the OpenTelemetry semantic conventions' container namespace.
const (
	AttrID    = "container.id"
	AttrName  = "container.name"
	AttrImage = "container.image.name"
)

// Bounds on what the engine's answers may cost the agent.
const (
	// MaxListBytes bounds the answer of the container list.
	MaxListBytes = 4 << 20
	// MaxInspectBytes bounds one container's inspect answer (its environment
	// and mounts are in it too).
	MaxInspectBytes = 1 << 20
	// MaxLogBytes bounds the log answer read for one container; TailLines
	// lines of MaxLineBytes fit it with their frame headers.
	MaxLogBytes = 64 << 10
	// MaxErrorBody bounds an error answer's body.
	MaxErrorBody = 4 << 10
)

// apiVersion is the version the requests name: Docker 20.10's, which every
// engine since (and Podman's compatible service) still serves, and which has
// every field read here.
const apiVersion = "v1.41"

// Settings carries what a Source borrows from the agent.
type Settings struct {
	// Redact applies the agent's effective redaction policy to each kept log
	// line before it is stored or reported: a container's log may quote
	// personal data or secrets, and its last error reaches the manager. New
	// refuses nil.
	Redact func(line string) string
}

// Source is one engine's containers selected by label: a runtime.Watcher.
type Source struct {
	name    string
	socket  string
	filters string // the filters parameter, JSON
	redact  func(string) string
	client  *http.Client

	mu   sync.Mutex
	last []runtime.Component
}

var _ runtime.Watcher = (*Source)(nil)

// New validates c and builds its Source; it connects to nothing.
func New(c config.ContainerSource, s Settings) (*Source, error) {
	if c.Kind != config.ContainersDocker {
		return nil, fmt.Errorf("docker source: kind %q", c.Kind)
	}
	if err := c.Validate("runtime.containers"); err != nil {
		return nil, err
	}
	if s.Redact == nil {
		return nil, errors.New("docker source: no redaction for containers' logs")
	}
	filters := "{}"
	if labels := c.LabelFilters(); len(labels) > 0 {
		b, _ := json.Marshal(map[string][]string{"label": labels})
		filters = string(b)
	}
	socket := c.SocketPath()
	d := &net.Dialer{}
	return &Source{
		name: c.SourceName(), socket: socket, filters: filters, redact: s.Redact,
		client: &http.Client{Transport: &http.Transport{
			Proxy: nil,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return d.DialContext(ctx, "unix", socket)
			},
			MaxResponseHeaderBytes: 64 << 10,
			// One connection serves a round's requests in turn; none is kept
			// between rounds, so an engine restarted meanwhile is simply
			// dialled again.
			MaxIdleConnsPerHost: 1,
			IdleConnTimeout:     time.Second,
		}},
	}, nil
}

// Name is the source's name, "docker/<name>".
func (s *Source) Name() string { return s.name }

// Kind is "docker".
func (s *Source) Kind() string { return config.ContainersDocker }

// Components returns each container's health as of the last Collect.
func (s *Source) Components() []runtime.Component {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.last)
}

// Collect lists and inspects the selected containers, appends their figures
// and keeps their health for Components. When the engine cannot be reached
// the components of the last round are kept: the source's own failure is what
// the Collector reports, and a container it cannot see is not known to be down.
func (s *Source) Collect(ctx context.Context, now time.Time, ms pmetric.MetricSlice) error {
	list, err := s.list(ctx)
	if err != nil {
		return err
	}
	var cut error
	if len(list) > containers.MaxContainers {
		cut = fmt.Errorf("%d containers match, watching the first %d by name", len(list), containers.MaxContainers)
		list = list[:containers.MaxContainers]
	}
	var states []State
	var errs []error
	for _, c := range list {
		st, err := s.inspect(ctx, c.ID)
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			// Removed between the list and the inspect: gone, not down.
			if errors.Is(err, errNotFound) {
				continue
			}
			errs = append(errs, err)
			continue
		}
		if !st.Healthy() {
			lines, err := s.logs(ctx, c.ID, st.Tty)
			if err != nil && ctx.Err() != nil {
				return err
			}
			// A log that cannot be read leaves the last error without its
			// lines; the state alone still says what is wrong.
			st.Lines = lines
		}
		states = append(states, st)
	}
	write(ms, now, states)
	comps := make([]runtime.Component, len(states))
	for i, st := range states {
		comps[i] = st.Component(now)
	}
	s.mu.Lock()
	s.last = comps
	s.mu.Unlock()
	return errors.Join(append(errs, cut)...)
}

var errNotFound = errors.New("no such container")

// get asks the engine for path (under the API version) and returns the body,
// at most limit bytes; more is an error, never a silent cut of JSON.
func (s *Source) get(ctx context.Context, path string, query url.Values, limit int64) ([]byte, error) {
	u := url.URL{Scheme: "http", Host: "docker", Path: "/" + apiVersion + path, RawQuery: query.Encode()}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("docker engine at %s: %w", s.socket, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, MaxErrorBody))
		var e struct {
			Message string `json:"message"`
		}
		msg := strings.TrimSpace(string(body))
		if json.Unmarshal(body, &e) == nil && e.Message != "" {
			msg = e.Message
		}
		err := fmt.Errorf("docker engine: GET %s: %s: %s", path, resp.Status, runtime.Bounded(msg, 200))
		if resp.StatusCode == http.StatusNotFound {
			err = fmt.Errorf("%w: %w", errNotFound, err)
		}
		return nil, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("docker engine: GET %s: %w", path, err)
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("docker engine: GET %s: answer over %d bytes", path, limit)
	}
	return body, nil
}

// listed is one container of the list answer, the fields used.
type listed struct {
	ID    string   `json:"Id"`
	Names []string `json:"Names"`
}

func (s *Source) list(ctx context.Context) ([]listed, error) {
	body, err := s.get(ctx, "/containers/json", url.Values{"all": {"1"}, "filters": {s.filters}}, MaxListBytes)
	if err != nil {
		return nil, err
	}
	return decodeList(body)
}

// decodeList decodes the engine's container list, sorted by name so a cut
// at MaxContainers keeps the same containers every round.
func decodeList(body []byte) ([]listed, error) {
	var list []listed
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, fmt.Errorf("docker engine: container list: %w", err)
	}
	list = slices.DeleteFunc(list, func(c listed) bool { return !validID(c.ID) })
	slices.SortFunc(list, func(a, b listed) int { return strings.Compare(firstName(a.Names), firstName(b.Names)) })
	return list, nil
}

func firstName(names []string) string {
	if len(names) == 0 {
		return ""
	}
	return strings.TrimPrefix(names[0], "/")
}

// validID accepts an engine's container id (hex) and nothing that could
// change the request's path.
func validID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, r := range id {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f' || 'A' <= r && r <= 'F') {
			return false
		}
	}
	return true
}

func (s *Source) inspect(ctx context.Context, id string) (State, error) {
	body, err := s.get(ctx, "/containers/"+id+"/json", nil, MaxInspectBytes)
	if err != nil {
		return State{}, err
	}
	return decodeInspect(body)
}

func (s *Source) logs(ctx context.Context, id string, tty bool) ([]string, error) {
	q := url.Values{"stdout": {"1"}, "stderr": {"1"}, "tail": {strconv.Itoa(runtime.TailLines)}}
	body, err := s.get(ctx, "/containers/"+id+"/logs", q, MaxLogBytes)
	if err != nil {
		return nil, err
	}
	var t runtime.Tail
	if tty {
		// A container with a terminal has one raw stream, no frames.
		_, _ = t.Write(body)
	} else if err := Demux(bytes.NewReader(body), &t); err != nil {
		return nil, fmt.Errorf("docker engine: logs of %s: %w", id, err)
	}
	t.Flush()
	lines := t.Lines()
	for i, l := range lines {
		lines[i] = runtime.Bounded(s.redact(l), runtime.MaxLineBytes)
	}
	return lines, nil
}

// Demux copies the payloads of the engine's multiplexed log stream to w:
// frames of an 8-byte header (stream type 0, 1 or 2; three zero bytes; the
// payload's length, big-endian) and the payload. stdout and stderr are kept
// in their order, as the container wrote them. A stream that ends inside a
// frame keeps what arrived; a malformed header is an error.
func Demux(r io.Reader, w io.Writer) error {
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return nil
			}
			return err
		}
		if hdr[0] > 2 || hdr[1] != 0 || hdr[2] != 0 || hdr[3] != 0 {
			return fmt.Errorf("log stream: malformed frame header % x", hdr)
		}
		n := int64(binary.BigEndian.Uint32(hdr[4:]))
		if _, err := io.CopyN(w, r, n); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}
