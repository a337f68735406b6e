package cli

import (
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
)

func runtimeCmd(o *opts) *cobra.Command {
	var since, until string
	cmd := &cobra.Command{
		Use:   "runtime DEPLOYMENT",
		Short: "A deployment's runtime state: components, sources, traffic, queues, storage",
		Long: `Print the newest runtime figures of a deployment in the window (the last
10 minutes by default): its components as its agent reports them (the ones down
first), its runtime sources, HTTP traffic per ingress route over the window,
queues and storage. The agent collects them as its 'runtime:' configuration says
(docs/signals.md).`,
		Example: `  periscope runtime acme-prod
  periscope runtime acme-prod --since 1h -o json`,
		Args: cobra.ExactArgs(1),
	}
	cmd.Flags().StringVar(&since, "since", "", "window start: RFC 3339 or a duration before now (default 10m)")
	cmd.Flags().StringVar(&until, "until", "", "window end: RFC 3339 or a duration before now (default now)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		p := params{}
		p.set("since", since)
		p.set("until", until)
		q, err := parse(cmd, o, p, func(v url.Values, now time.Time) (telquery.RuntimeQuery, error) {
			return telquery.ParseRuntimeQuery(args[0], v, now)
		})
		if err != nil {
			return err
		}
		c, err := o.client()
		if err != nil {
			return err
		}
		rt, err := c.Runtime(cmd.Context(), args[0], q)
		if err != nil {
			return err
		}
		return o.print(cmd.OutOrStdout(), rt, func(tw *tabwriter.Writer) { runtimeTables(tw, rt) })
	}
	return cmd
}

// num prints a figure without a needless fraction; an absent one is "-".
func num(v *float64) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatFloat(*v, 'f', -1, 64)
}

func runtimeTables(tw *tabwriter.Writer, rt apitypes.Runtime) {
	fmt.Fprintf(tw, "%s runtime, %s to %s\n", rt.Deployment, localTime(rt.Since), localTime(rt.Until))
	if rt.Truncated {
		fmt.Fprintln(tw, "(more series than one answer holds: figures are incomplete)")
	}
	if rt.Empty() {
		fmt.Fprintln(tw, "\nno runtime signals in the window: configure 'runtime:' in the agent (docs/signals.md)")
		return
	}
	section := func(title string, n int, header []string, rows func()) {
		fmt.Fprintf(tw, "\n%s\n", title)
		if n == 0 {
			fmt.Fprintln(tw, "none")
			return
		}
		tableRow(tw, header)
		rows()
	}
	section("COMPONENTS", len(rt.Components), []string{"NAME", "HEALTH", "STATUS", "RESTARTS", "SINCE", "LAST ERROR"}, func() {
		for _, c := range rt.Components {
			since := "-"
			if !c.Since.IsZero() {
				since = localTime(c.Since)
			}
			tableRow(tw, []string{c.Name, map[bool]string{true: "healthy", false: "down"}[c.Healthy], dash(c.Status),
				strconv.FormatInt(c.Restarts, 10), since, dash(c.LastError)})
		}
	})
	section("SOURCES", len(rt.Sources), []string{"SOURCE", "KIND", "UP", "ERROR"}, func() {
		for _, s := range rt.Sources {
			tableRow(tw, []string{s.Name, dash(s.Kind), map[bool]string{true: "up", false: "down"}[s.Up], dash(s.Error)})
		}
	})
	section("INGRESS (latency percentiles estimated from the histogram's buckets)", len(rt.Ingress),
		[]string{"INGRESS", "ROUTE", "REQUESTS", "CLASSES", "MEAN", "P50", "P95", "P99"}, func() {
			routes := rt.Ingress
			if rt.IngressTotal != nil && len(routes) > 1 {
				all := *rt.IngressTotal
				all.Ingress, all.Route = "(all)", "-"
				routes = append(slices.Clip(routes), all)
			}
			for _, r := range routes {
				classes := []string{}
				for _, k := range slices.Sorted(maps.Keys(r.Classes)) {
					classes = append(classes, fmt.Sprintf("%s %d", k, r.Classes[k]))
				}
				tableRow(tw, []string{r.Ingress, r.Route, strconv.FormatInt(r.Requests, 10), strings.Join(classes, ", "), ms(r.MeanMS),
					msOrDash(r.P50MS), msOrDash(r.P95MS), msOrDash(r.P99MS)})
			}
		})
	section("QUEUES", len(rt.Queues), []string{"SYSTEM", "DESTINATION", "GROUP", "DEPTH", "BYTES", "OLDEST S", "CONSUMERS", "UNACKED", "PENDING", "ACK PENDING"}, func() {
		for _, q := range rt.Queues {
			tableRow(tw, []string{q.System, q.Destination, dash(q.Group), num(q.Depth), num(q.Bytes), num(q.OldestAgeS),
				num(q.Consumers), num(q.Unacked), num(q.Pending), num(q.AckPending)})
		}
	})
	st := rt.Storage
	rows := len(st.Buckets) + len(st.Redis) + len(st.PostgreSQL) + len(st.Filesystems)
	section("STORAGE", rows, []string{"SOURCE", "WHAT", "USED", "DETAIL"}, func() {
		for _, b := range st.Buckets {
			what := "bucket " + b.Bucket + b.Prefix
			detail := fmt.Sprintf("%s objects", num(&b.Objects))
			if b.Partial {
				detail += " (at least: listing cut)"
			}
			tableRow(tw, []string{b.Source, what, num(&b.Bytes) + " B", detail})
		}
		for _, r := range st.Redis {
			keys := []string{}
			for _, db := range slices.Sorted(maps.Keys(r.Keys)) {
				v := r.Keys[db]
				keys = append(keys, fmt.Sprintf("db%s %s keys", db, num(&v)))
			}
			detail := strings.Join(keys, ", ")
			if r.MemoryLimit != nil {
				detail = "limit " + num(r.MemoryLimit) + " B; " + detail
			}
			tableRow(tw, []string{r.Source, "redis memory", num(&r.MemoryUsed) + " B", dash(detail)})
		}
		for _, d := range st.PostgreSQL {
			tables := []string{}
			for _, t := range d.Tables {
				tables = append(tables, fmt.Sprintf("%s %s B", t.Name, num(&t.Bytes)))
			}
			tableRow(tw, []string{d.Source, "database " + d.Database, num(&d.Bytes) + " B", dash(strings.Join(tables, ", "))})
		}
		for _, f := range st.Filesystems {
			tableRow(tw, []string{f.Source, f.Path + " on " + f.Mountpoint, num(&f.Used) + " B",
				fmt.Sprintf("free %s B of %s B, %.1f%% used", num(&f.Free), num(&f.Limit), f.Utilization*100)})
		}
	})
}

// msOrDash is ms for a percentile the answer may lack (no buckets stored).
func msOrDash(v *float64) string {
	if v == nil {
		return "-"
	}
	return ms(*v)
}
