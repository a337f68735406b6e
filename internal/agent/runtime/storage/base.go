package storage

import (
	"fmt"

	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/periscope-dev/periscope/internal/config"
)

// Attribute names every storage source shares.
const (
	// AttrSource names the source on every point, so two sources of one kind
	// (two Redis servers) never merge into one series. The collector uses the
	// same name on its periscope.source.up points.
	AttrSource = "periscope.source.name"
	// AttrPartial marks a figure from a listing cut short.
	AttrPartial = "periscope.partial"
)

// Base is what every storage source has, embedded: its name and kind.
type Base struct{ kind, name string }

// NewBase is the Base of the source c describes.
func NewBase(c Config) Base { return Base{c.Kind, c.Name} }

// Name is kind/name, e.g. "s3/exports".
func (b Base) Name() string { return b.kind + "/" + b.name }

// Kind is s3, redis, postgres or filesystem.
func (b Base) Kind() string { return b.kind }

// Errorf wraps an error with the source's name, so the collector's report and
// the agent's health say which source failed.
func (b Base) Errorf(format string, args ...any) error {
	return fmt.Errorf("storage source %s: %w", b.Name(), fmt.Errorf(format, args...))
}

// Clip cuts s to at most n bytes without splitting a UTF-8 sequence, so a long
// key, table name or path cannot blow up an attribute.
func Clip(s string, n int) string { return config.Clip(s, n) }

// DropEmpty removes the metrics from index from on that got no point, so a
// source that failed half-way, or found no table, sends no empty metric.
func DropEmpty(ms pmetric.MetricSlice, from int) {
	i := 0
	ms.RemoveIf(func(m pmetric.Metric) bool {
		i++
		if i <= from {
			return false
		}
		switch m.Type() {
		case pmetric.MetricTypeGauge:
			return m.Gauge().DataPoints().Len() == 0
		case pmetric.MetricTypeSum:
			return m.Sum().DataPoints().Len() == 0
		}
		return false
	})
}
