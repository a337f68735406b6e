package thresholds

import (
	"fmt"
	"sort"
	"strings"
)

// ComponentPrefix starts the name of every component a breach makes unhealthy:
// "threshold nats/orders lag". The manager's status rollup tells threshold
// breaches from components that are down by it.
const ComponentPrefix = "threshold "

// The aspects of a source a threshold checks, the last word of its component.
const (
	AspectLag    = "lag"
	AspectAge    = "age"
	AspectDisk   = "disk"
	AspectInodes = "inodes"
)

// Component is the name of the component that reports source's aspect.
func Component(source, aspect string) string { return ComponentPrefix + source + " " + aspect }

// Figures are the measurements of one collection round that thresholds apply
// to, each naming the source that collected it.
type Figures struct {
	Lags    []Lag
	Ages    []Age
	Volumes []Volume
}

// Lag is one consumer's or group's pending messages.
type Lag struct {
	Source, Destination, Group string
	Pending                    int64
}

// Age is the age of the oldest message of one queue.
type Age struct {
	Source, Destination string
	Seconds             float64
}

// Volume is the space of one filesystem path.
type Volume struct {
	Source, Path string
	// Free is the bytes available to unprivileged users, Used the bytes used.
	Free, Used int64
	// InodesFree and InodesUsed are zero when the filesystem reports no inode
	// table.
	InodesFree, InodesUsed int64
}

// Breach is one component a threshold makes unhealthy, with what crossed it.
type Breach struct {
	// Component is Component(Source, aspect).
	Component, Source string
	// Error says which figure crossed which threshold:
	// "consumer workers lag 1200 > 1000".
	Error string
}

// Check compares f with s and returns the breaches, one per source and aspect
// (several consumers of one source over their lag make one breach naming them
// all), ordered by component.
func (s Set) Check(f Figures) []Breach {
	found := map[string][]string{}
	sources := map[string]string{}
	add := func(source, aspect, what string) {
		c := Component(source, aspect)
		found[c], sources[c] = append(found[c], what), source
	}
	for _, l := range f.Lags {
		if r, ok := ruleFor(s.Queues, l.Source); ok && r.MaxLag > 0 && l.Pending > r.MaxLag {
			who := "consumer " + l.Group
			if l.Destination != "" {
				who = l.Destination + " " + who
			}
			add(l.Source, AspectLag, fmt.Sprintf("%s lag %d > %d", who, l.Pending, r.MaxLag))
		}
	}
	for _, a := range f.Ages {
		if r, ok := ruleFor(s.Queues, a.Source); ok && r.MaxOldestAgeSeconds > 0 && a.Seconds > float64(r.MaxOldestAgeSeconds) {
			add(a.Source, AspectAge, fmt.Sprintf("%s oldest message %.0fs > %ds", a.Destination, a.Seconds, r.MaxOldestAgeSeconds))
		}
	}
	for _, v := range f.Volumes {
		r, ok := ruleFor(s.Filesystems, v.Source)
		if !ok {
			continue
		}
		if r.MinFreeBytes > 0 && v.Free < r.MinFreeBytes {
			add(v.Source, AspectDisk, fmt.Sprintf("%s free %d B < %d B", v.Path, v.Free, r.MinFreeBytes))
		}
		if total := v.Free + v.Used; r.MinFreePercent > 0 && total > 0 {
			if p := 100 * float64(v.Free) / float64(total); p < r.MinFreePercent {
				add(v.Source, AspectDisk, fmt.Sprintf("%s free %.1f%% < %s%%", v.Path, p, percent(r.MinFreePercent)))
			}
		}
		if total := v.InodesFree + v.InodesUsed; r.MinFreeInodesPercent > 0 && total > 0 {
			if p := 100 * float64(v.InodesFree) / float64(total); p < r.MinFreeInodesPercent {
				add(v.Source, AspectInodes, fmt.Sprintf("%s inodes free %.1f%% < %s%%", v.Path, p, percent(r.MinFreeInodesPercent)))
			}
		}
	}
	out := make([]Breach, 0, len(found))
	for c, whats := range found {
		out = append(out, Breach{Component: c, Source: sources[c], Error: strings.Join(whats, "; ")})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Component < out[j].Component })
	return out
}
