package ingest

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/otlp/consumer"
)

// DeadLetterDir is the directory, inside Settings.Dir, where batches a sink refused
// for good are set aside: one JSON file per batch (see DeadLetter), 0600 in a 0700
// directory, named so they sort oldest first.
const DeadLetterDir = "dead-letter"

// DefaultDeadLetterBytes bounds the dead-letter directory when Settings leave it 0.
const DefaultDeadLetterBytes = 64 << 20

// DeadLetter is one set-aside batch as its file holds it, for an operator to
// inspect (and, once the cause is fixed, replay: Data is an OTLP export request).
type DeadLetter struct {
	// Received is when the manager accepted the batch.
	Received time.Time `json:"received"`
	// Deployment sent the batch.
	Deployment string `json:"deployment"`
	// Signal is traces, metrics or logs.
	Signal string `json:"signal"`
	// Batch is the agent's batch id, "<queue id>:<first>-<last>", if it had one.
	Batch string `json:"batch,omitempty"`
	// Records counts the log records, spans or data points.
	Records int `json:"records"`
	// Sink refused the batch, with Error.
	Sink  string `json:"sink"`
	Error string `json:"error"`
	// Data is the tagged OTLP protobuf export request.
	Data []byte `json:"data"`
}

// deadLetter keeps set-aside batches within a byte bound, evicting the oldest.
type deadLetter struct {
	dir      string
	maxBytes int64
	clock    clock.Clock

	mu     sync.Mutex
	loaded bool
	files  []deadFile // oldest first
	bytes  int64
	seq    uint64 // tells apart files written in the same nanosecond

	written, evicted prometheus.Counter
	size             prometheus.GaugeFunc
}

type deadFile struct {
	name string
	size int64
}

func newDeadLetter(dir string, maxBytes int64, clk clock.Clock) *deadLetter {
	if maxBytes <= 0 {
		maxBytes = DefaultDeadLetterBytes
	}
	d := &deadLetter{dir: dir, maxBytes: maxBytes, clock: clk,
		written: prometheus.NewCounter(prometheus.CounterOpts{Name: "periscope_ingest_dead_letter_batches_total",
			Help: "Batches refused for good and set aside in the dead-letter directory."}),
		evicted: prometheus.NewCounter(prometheus.CounterOpts{Name: "periscope_ingest_dead_letter_evicted_batches_total",
			Help: "Set-aside batches deleted, oldest first, to keep the dead-letter directory within its bound."}),
	}
	d.size = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "periscope_ingest_dead_letter_bytes",
		Help: "Bytes of set-aside batches in the dead-letter directory."}, func() float64 {
		d.mu.Lock()
		defer d.mu.Unlock()
		return float64(d.bytes)
	})
	return d
}

func (d *deadLetter) collectors() []prometheus.Collector {
	return []prometheus.Collector{d.written, d.evicted, d.size}
}

// load reads what earlier runs set aside, the first time a batch is set aside, so
// the bound holds across restarts and a manager that never needs the directory
// never creates it.
func (d *deadLetter) load() error {
	if d.loaded {
		return nil
	}
	if err := os.MkdirAll(d.dir, 0o700); err != nil {
		return err
	}
	ents, err := os.ReadDir(d.dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // deleted meanwhile
		}
		d.files = append(d.files, deadFile{name: e.Name(), size: info.Size()})
		d.bytes += info.Size()
	}
	slices.SortFunc(d.files, func(a, b deadFile) int { return strings.Compare(a.name, b.name) })
	d.loaded = true
	return nil
}

// add writes a batch to its own file and evicts the oldest files past the bound.
// A batch larger than the whole bound is not kept.
func (d *deadLetter) add(b consumer.Batch, id, sink string, reason error) (string, error) {
	data, err := json.Marshal(DeadLetter{Received: b.Received, Deployment: b.DeploymentID, Signal: b.Signal.String(),
		Batch: id, Records: b.Records, Sink: sink, Error: reason.Error(), Data: b.Data})
	if err != nil {
		return "", err
	}
	if int64(len(data)) > d.maxBytes {
		return "", fmt.Errorf("the batch (%d bytes) is larger than the dead-letter bound (%d bytes)", len(data), d.maxBytes)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.load(); err != nil {
		return "", fmt.Errorf("dead-letter directory %s: %w", d.dir, err)
	}
	d.seq++
	// Zero-padded time first, so names sort oldest first; the deployment id is the
	// manager's own, but keep only safe characters in a file name all the same.
	name := fmt.Sprintf("%020d-%06d-%s-%s.json", d.clock.Now().UnixNano(), d.seq%1e6, b.Signal, safeName(b.DeploymentID))
	path := filepath.Join(d.dir, name)
	if err := writeFile0600(path, data); err != nil {
		return "", err
	}
	d.files = append(d.files, deadFile{name: name, size: int64(len(data))})
	d.bytes += int64(len(data))
	d.written.Inc()
	for d.bytes > d.maxBytes && len(d.files) > 1 {
		old := d.files[0]
		if err := os.Remove(filepath.Join(d.dir, old.name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			break // counted as still there; tried again next time
		}
		d.files = d.files[1:]
		d.bytes -= old.size
		d.evicted.Inc()
	}
	return path, nil
}

func writeFile0600(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	return f.Close()
}

// safeName keeps letters, digits, dot, dash and underscore of s.
func safeName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	if len(b) > 64 {
		b = b[:64]
	}
	return string(b)
}
