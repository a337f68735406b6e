package runtime

import (
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/periscope-dev/periscope/internal/thresholds"
)

// The figures thresholds apply to, by the names their sources write them under
// (queues and storage import this package, so the names cannot come from
// there; docs/signals.md lists them).
const (
	metricConsumerPending = "periscope.queue.consumer.pending"
	metricOldestAge       = "periscope.queue.oldest_age"
	metricFSUsage         = "system.filesystem.usage"
	metricInodesUsage     = "periscope.filesystem.inodes.usage"
)

// SetThresholds replaces the thresholds checked at each round; the zero Set
// checks nothing, and breaches of thresholds no longer set clear at the next
// round. Safe for concurrent use with Round.
func (c *Collector) SetThresholds(s thresholds.Set) {
	c.thrMu.Lock()
	c.thr = s
	c.thrMu.Unlock()
}

// checkThresholds reports a breach of the thresholds in force as an unhealthy
// component, and one that ended as healthy again. A source that failed this
// round keeps the breaches it had: its figures are unknown, not back under.
func (c *Collector) checkThresholds(figs thresholds.Figures, failed map[string]bool) {
	c.thrMu.Lock()
	set := c.thr
	c.thrMu.Unlock()
	breaches := set.Check(figs)
	now := make(map[string]bool, len(breaches))
	for _, b := range breaches {
		now[b.Component] = true
	}
	for comp, src := range c.breached {
		if _, still := now[comp]; !still && !failed[src] {
			delete(c.breached, comp)
			c.report(comp, true, "")
		}
	}
	for _, b := range breaches {
		c.breached[b.Component] = b.Source
		c.report(b.Component, false, Bounded(b.Error, MaxErrorBytes))
	}
}

// addFigures reads from ms, collected by source, the figures thresholds apply to.
func addFigures(f *thresholds.Figures, source string, ms pmetric.MetricSlice) {
	volumes := map[string]*thresholds.Volume{}
	var paths []string
	volume := func(p pmetric.NumberDataPoint) *thresholds.Volume {
		path := str(p.Attributes(), "periscope.filesystem.path")
		v := volumes[path]
		if v == nil {
			v = &thresholds.Volume{Source: source, Path: path}
			volumes[path] = v
			paths = append(paths, path)
		}
		return v
	}
	for i := range ms.Len() {
		m := ms.At(i)
		switch m.Name() {
		case metricConsumerPending:
			pts := m.Gauge().DataPoints()
			for j := range pts.Len() {
				p := pts.At(j)
				f.Lags = append(f.Lags, thresholds.Lag{Source: source, Destination: str(p.Attributes(), "messaging.destination.name"),
					Group: str(p.Attributes(), "messaging.consumer.group.name"), Pending: p.IntValue()})
			}
		case metricOldestAge:
			pts := m.Gauge().DataPoints()
			for j := range pts.Len() {
				p := pts.At(j)
				f.Ages = append(f.Ages, thresholds.Age{Source: source, Destination: str(p.Attributes(), "messaging.destination.name"), Seconds: p.DoubleValue()})
			}
		case metricFSUsage, metricInodesUsage:
			pts := m.Sum().DataPoints()
			for j := range pts.Len() {
				p := pts.At(j)
				v := volume(p)
				switch st := str(p.Attributes(), "system.filesystem.state"); {
				case m.Name() == metricFSUsage && st == "free":
					v.Free = p.IntValue()
				case m.Name() == metricFSUsage && st == "used":
					v.Used = p.IntValue()
				case st == "free":
					v.InodesFree = p.IntValue()
				case st == "used":
					v.InodesUsed = p.IntValue()
				}
			}
		}
	}
	for _, p := range paths {
		f.Volumes = append(f.Volumes, *volumes[p])
	}
}

func str(attrs pcommon.Map, key string) string {
	if v, ok := attrs.Get(key); ok {
		return v.Str()
	}
	return ""
}
