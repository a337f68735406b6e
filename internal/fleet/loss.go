package fleet

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ReasonTelemetryDropped is the code shown beside the status of a deployment whose
// agent dropped telemetry it had accepted within Params.LossQuietWindow.
const ReasonTelemetryDropped = "telemetry-dropped"

// LossComponent is the component health an agent reports its telemetry loss in.
// Its status is "ok" until a record is dropped, then FormatLossStatus of the
// counts since the agent started; its status time is when the last record was
// dropped. It stays healthy: loss is shown beside the status, not instead of it.
const LossComponent = "telemetry"

// lossPrefix starts a loss component status that carries counts.
const lossPrefix = "dropped "

// TelemetryLoss is what a deployment's agent dropped of the telemetry it accepted
// (log records, spans and metric data points), as the manager has added it up
// across the agent's restarts.
type TelemetryLoss struct {
	// Records counts the records dropped.
	Records int64 `json:"records"`
	// Counts splits Records by "<signal>/<reason>", such as "logs/queue_full".
	Counts map[string]int64 `json:"counts,omitempty"`
	// Last is when the last record was dropped.
	Last time.Time `json:"last_at"`
	// RunStart and RunCounts are the agent run the last report came from and its
	// counts, so that a repeated report adds nothing and a restart starts over.
	RunStart  time.Time        `json:"run_start,omitzero"`
	RunCounts map[string]int64 `json:"run_counts,omitempty"`
}

// Observe adds what an agent reported: counts since it started at runStart, the
// last one dropped at last. Reports are cumulative, so only what grew since the
// previous report of the same run is added; it reports whether anything was.
func (l *TelemetryLoss) Observe(runStart time.Time, counts map[string]int64, last time.Time) bool {
	if !runStart.Equal(l.RunStart) {
		l.RunStart, l.RunCounts = runStart, nil
	}
	grew := false
	for k, v := range counts {
		if d := v - l.RunCounts[k]; d > 0 {
			if l.Counts == nil {
				l.Counts = map[string]int64{}
			}
			l.Counts[k] += d
			l.Records += d
			grew = true
		}
	}
	l.RunCounts = maps.Clone(counts)
	if grew && last.After(l.Last) {
		l.Last = last
	}
	return grew
}

// Clone returns a copy that shares no maps with l.
func (l *TelemetryLoss) Clone() *TelemetryLoss {
	if l == nil {
		return nil
	}
	c := *l
	c.Counts, c.RunCounts = maps.Clone(l.Counts), maps.Clone(l.RunCounts)
	return &c
}

// Summary says how much was dropped, of what and when, for a reason beside the status.
func (l *TelemetryLoss) Summary() string {
	keys := slices.Sorted(maps.Keys(l.Counts))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, l.Counts[k])
	}
	return fmt.Sprintf("agent dropped %d telemetry records (%s), last at %s", l.Records, strings.Join(parts, ", "),
		l.Last.UTC().Format(time.RFC3339))
}

// FormatLossStatus writes counts by "<signal>/<reason>" as a loss component status:
// "dropped logs/queue_full=560 traces/refused=3", keys in order; "ok" when empty.
func FormatLossStatus(counts map[string]int64) string {
	if len(counts) == 0 {
		return "ok"
	}
	var b strings.Builder
	b.WriteString(lossPrefix)
	for i, k := range slices.Sorted(maps.Keys(counts)) {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(strconv.FormatInt(counts[k], 10))
	}
	return b.String()
}

// maxLossKeys bounds how many counts a status may carry: a handful of signals times
// a handful of reasons, so a hostile agent cannot make the manager keep a big map.
const maxLossKeys = 64

// ParseLossStatus reads a loss component status written by FormatLossStatus; "ok"
// is no loss. It refuses anything else, as it comes from the agent.
func ParseLossStatus(s string) (map[string]int64, error) {
	if s == "ok" {
		return nil, nil
	}
	rest, ok := strings.CutPrefix(s, lossPrefix)
	if !ok {
		return nil, errors.New("telemetry loss status: want \"ok\" or \"dropped <signal>/<reason>=<n> ...\"")
	}
	counts := map[string]int64{}
	for f := range strings.FieldsSeq(rest) {
		k, v, ok := strings.Cut(f, "=")
		sig, reason, ok2 := strings.Cut(k, "/")
		if !ok || !ok2 || !lossName(sig) || !lossName(reason) {
			return nil, fmt.Errorf("telemetry loss status: bad count %q", f)
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("telemetry loss status: bad count %q", f)
		}
		if _, dup := counts[k]; dup {
			return nil, fmt.Errorf("telemetry loss status: %s counted twice", k)
		}
		if len(counts) == maxLossKeys {
			return nil, fmt.Errorf("telemetry loss status: more than %d counts", maxLossKeys)
		}
		counts[k] = n
	}
	if len(counts) == 0 {
		return nil, errors.New("telemetry loss status: no counts")
	}
	return counts, nil
}

// lossName reports whether s is a short lower-case name with digits and _ or -.
func lossName(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for _, c := range s {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' && c != '-' {
			return false
		}
	}
	return true
}
