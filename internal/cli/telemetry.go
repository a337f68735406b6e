package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/telstore/telquery"
)

// The telemetry verbs turn their flags into the URL parameters of the matching API
// endpoint and read them with telquery's parsers, the same ones the manager uses,
// so a flag means exactly what the parameter means and bad values fail before any
// request is sent.

// timeFormat shows sub-second times, since log records and spans of one request
// fall within the same second.
const timeFormat = "2006-01-02T15:04:05.000Z07:00"

// filterFlags are the deployment-context and time flags every telemetry verb
// shares, by name: each flag has the name of its URL parameter.
type filterFlags map[string]*string

// addFilterFlags registers the shared filter flags on cmd; times adds --since
// (default 1h) and --until, which compare does not take.
func addFilterFlags(cmd *cobra.Command, times bool) filterFlags {
	flags := [][3]string{
		{"deployment", "", "only this deployment (id)"},
		{"customer", "", "only this customer"},
		{"cloud", "", "only this cloud provider"},
		{"region", "", "only this region"},
		{"release", "", "only this release"},
		{"stack", "", "only this stack"},
		{"service", "", "only this service (service.name)"},
		{"function", "", "only this function (faas.name)"},
	}
	if times {
		flags = append(flags,
			[3]string{"since", "", "start: a duration before now (15m, 2h) or an RFC 3339 time (default 1h before --until, or none with --cursor)"},
			[3]string{"until", "", "end: a duration before now or an RFC 3339 time (default now)"})
	}
	ff := filterFlags{}
	for _, fl := range flags {
		ff[fl[0]] = cmd.Flags().String(fl[0], fl[1], fl[2])
	}
	return ff
}

// params starts a query's URL parameters with the filter. Without --since and
// --until the window is the last hour; with --until alone the manager takes the
// hour before it, and a cursor already bounds a page, so neither gets a default
// computed from now (which would move under a paging user).
func (ff filterFlags) params() params {
	p := params{}
	for k, v := range ff {
		p.set(k, *v)
	}
	if s, ok := ff["since"]; ok && *s == "" && *ff["until"] == "" {
		p.set("since", "1h")
	}
	return p
}

// withCursor continues a page: the cursor replaces the default window.
func (p params) withCursor(cursor string, ff filterFlags) {
	if cursor == "" {
		return
	}
	p.set("cursor", cursor)
	if *ff["since"] == "" {
		delete(p, "since")
	}
}

// params are URL parameters that leave out what a flag left empty, so the
// parser applies its own defaults.
type params url.Values

func (p params) set(k, v string) {
	if v != "" {
		p[k] = []string{v}
	}
}

func (p params) flag(k string, on bool) {
	if on {
		p[k] = []string{"true"}
	}
}

func (p params) num(k string, n int) {
	if n != 0 {
		p[k] = []string{strconv.Itoa(n)}
	}
}

// parse reads p with a telquery parser, naming the verb in the error.
func parse[Q any](cmd *cobra.Command, o *opts, p params, fn func(url.Values, time.Time) (Q, error)) (Q, error) {
	q, err := fn(url.Values(p), o.clock.Now())
	if err != nil {
		return q, fmt.Errorf("%s: %w", cmd.Name(), err)
	}
	return q, nil
}

// ask runs a query verb: it parses the flags' parameters, sends the query and
// prints the answer as a table or JSON, returning the answer for what follows
// (a paging hint).
func ask[Q, R any](cmd *cobra.Command, o *opts, p params, parser func(url.Values, time.Time) (Q, error),
	call func(*apiclient.Client, context.Context, Q) (R, error), table func(*tabwriter.Writer, R)) (R, error) {
	var r R
	q, err := parse(cmd, o, p, parser)
	if err != nil {
		return r, err
	}
	c, err := o.client()
	if err != nil {
		return r, err
	}
	if r, err = call(c, cmd.Context(), q); err != nil {
		return r, err
	}
	return r, o.print(cmd.OutOrStdout(), r, func(tw *tabwriter.Writer) { table(tw, r) })
}

// ms shows milliseconds as a duration ("12.5ms", "1.234s").
func ms(v float64) string {
	d := time.Duration(v * float64(time.Millisecond))
	if d == 0 {
		return "0ms"
	}
	if d >= time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Microsecond).String()
}

func localTime(t time.Time) string { return t.Local().Format(timeFormat) }

// moreHint tells on stderr how to get the next page; stdout stays the page alone.
func moreHint(cmd *cobra.Command, next string) {
	if next != "" {
		fmt.Fprintf(cmd.ErrOrStderr(), "more: repeat with --cursor %s\n", next)
	}
}

func logCells(l telquery.Log) []string {
	sev := l.SeverityText
	if sev == "" {
		sev = telquery.SeverityName(l.Severity)
	}
	// One record, one line: a multi-line body would break the table.
	body := strings.NewReplacer("\r", `\r`, "\n", `\n`).Replace(l.Body)
	c := l.Context
	return []string{localTime(l.Time), dash(c.Deployment), dash(c.Release), dash(c.Service), dash(c.Function), sev, body}
}

func logHeader() []string {
	return []string{"TIME", "DEPLOYMENT", "RELEASE", "SERVICE", "FUNCTION", "SEVERITY", "BODY"}
}

func tableRow(tw io.Writer, cells []string) {
	fmt.Fprintln(tw, strings.Join(cells, "\t"))
}

func logsCmd(o *opts) *cobra.Command {
	var severity, contains, traceID, cursor string
	var attrs []string
	var limit int
	var follow bool
	cmd := &cobra.Command{
		Use:   "logs",
		Short: "Search the log records of deployments, newest first; --follow streams new ones",
		Long: `Search the log records the manager stores, newest first, one page at a time.
When there is more, a line on stderr says which --cursor continues.

With --follow, the newest page (up to --limit) is printed oldest first, then
records are printed as they are stored until Ctrl-C; a record stored in the
instant between the two requests may be missed. With -o json, --follow prints
one JSON record per line (NDJSON) instead of one JSON page.`,
		Example: `  periscope logs --deployment acme-prod --release 1.8.0 --severity error --since 30m
  periscope logs --attr http.route=/pay --contains timeout
  periscope logs --deployment acme-prod -f`,
		Args: cobra.NoArgs,
	}
	ff := addFilterFlags(cmd, true)
	f := cmd.Flags()
	f.StringVar(&severity, "severity", "", "minimum severity: trace, debug, info, warn, error, fatal or a number 0-24")
	f.StringVar(&contains, "contains", "", "text in the body (case-insensitive)")
	f.StringArrayVar(&attrs, "attr", nil, "key=value: the record's or its resource's attribute (repeatable, all must match)")
	f.StringVar(&traceID, "trace-id", "", "only the records of this trace")
	f.IntVar(&limit, "limit", 0, "records per page (default 100, at most 1000)")
	f.StringVar(&cursor, "cursor", "", "continue after a previous page")
	f.BoolVarP(&follow, "follow", "f", false, "after the newest page, print records as they are stored until Ctrl-C")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		p := ff.params()
		p.set("min_severity", severity)
		p.set("contains", contains)
		p["attr"] = attrs
		p.set("trace_id", traceID)
		p.num("limit", limit)
		p.withCursor(cursor, ff)
		if follow {
			return followLogs(cmd, o, p)
		}
		page, err := ask(cmd, o, p, telquery.ParseLogQuery, (*apiclient.Client).Logs, func(tw *tabwriter.Writer, page telquery.LogPage) {
			tableRow(tw, logHeader())
			for _, l := range page.Logs {
				tableRow(tw, logCells(l))
			}
		})
		moreHint(cmd, page.Next)
		return err
	}
	return cmd
}

// followLogs prints the newest page oldest first, then records as they are
// stored, until Ctrl-C.
func followLogs(cmd *cobra.Command, o *opts, p params) error {
	q, err := parse(cmd, o, p, telquery.ParseLogQuery)
	if err != nil {
		return err
	}
	if q.Cursor != "" || !q.Until.IsZero() {
		return errors.New("logs: --follow prints what comes from now on; it takes no --cursor or --until")
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	page, err := c.Logs(cmd.Context(), q)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	emit := o.logStream(cmd.OutOrStdout(), page.Logs)
	for _, l := range slices.Backward(page.Logs) {
		if err := emit(l); err != nil {
			return err
		}
	}
	err = c.TailLogs(ctx, q, emit)
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return nil
	}
	return err
}

// logStream returns a printer of single records for --follow: NDJSON, or table
// rows aligned as well as a stream allows (widths from the first page, widened
// when a later cell needs it).
func (o *opts) logStream(w io.Writer, first []telquery.Log) func(telquery.Log) error {
	if o.output == "json" {
		enc := json.NewEncoder(w)
		return func(l telquery.Log) error { return enc.Encode(l) }
	}
	rw := &rowWriter{w: w}
	rw.fit(logHeader())
	for _, l := range first {
		rw.fit(logCells(l))
	}
	header := true
	return func(l telquery.Log) error {
		if header {
			header = false
			if err := rw.row(logHeader()); err != nil {
				return err
			}
		}
		return rw.row(logCells(l))
	}
}

// rowWriter writes table rows one at a time: a stream cannot be aligned after
// the fact as tabwriter does, so columns keep the widest cell seen so far.
type rowWriter struct {
	w      io.Writer
	widths []int
}

func (rw *rowWriter) fit(cells []string) {
	for i, c := range cells {
		if i == len(rw.widths) {
			rw.widths = append(rw.widths, 0)
		}
		rw.widths[i] = max(rw.widths[i], utf8.RuneCountInString(c))
	}
}

func (rw *rowWriter) row(cells []string) error {
	rw.fit(cells)
	var b strings.Builder
	for i, c := range cells {
		b.WriteString(c)
		if i < len(cells)-1 {
			b.WriteString(strings.Repeat(" ", rw.widths[i]-utf8.RuneCountInString(c)+2))
		}
	}
	b.WriteByte('\n')
	_, err := io.WriteString(rw.w, b.String())
	return err
}

func tracesCmd(o *opts) *cobra.Command {
	var name, minDuration, cursor string
	var errorsOnly, roots bool
	var limit int
	cmd := &cobra.Command{
		Use:   "traces",
		Short: "Search spans of deployments, newest first",
		Long: `Search the spans the manager stores, newest first, one page at a time. --roots
keeps one span per request (server or consumer spans and spans without a
parent). When there is more, a line on stderr says which --cursor continues.
Show a whole trace with: periscope trace ID.`,
		Example: `  periscope traces --deployment acme-prod --release 1.8.0 --errors --roots
  periscope traces --function charge_card --min-duration 500ms --since 3h`,
		Args: cobra.NoArgs,
	}
	ff := addFilterFlags(cmd, true)
	f := cmd.Flags()
	f.StringVar(&name, "name", "", "only spans with exactly this name")
	f.BoolVar(&errorsOnly, "errors", false, "only spans whose status is error")
	f.StringVar(&minDuration, "min-duration", "", "only spans at least this long (250ms, 2s)")
	f.BoolVar(&roots, "roots", false, "only entry spans: one per request")
	f.IntVar(&limit, "limit", 0, "spans per page (default 100, at most 1000)")
	f.StringVar(&cursor, "cursor", "", "continue after a previous page")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		p := ff.params()
		p.set("name", name)
		p.flag("errors", errorsOnly)
		p.set("min_duration", minDuration)
		p.flag("roots", roots)
		p.num("limit", limit)
		p.withCursor(cursor, ff)
		page, err := ask(cmd, o, p, telquery.ParseSpanQuery, (*apiclient.Client).Spans, func(tw *tabwriter.Writer, page telquery.SpanPage) {
			tableRow(tw, []string{"TIME", "TRACE", "SPAN NAME", "FUNCTION", "SERVICE", "DEPLOYMENT", "RELEASE", "DURATION", "STATUS"})
			for _, s := range page.Spans {
				c := s.Context
				tableRow(tw, []string{localTime(s.Start), s.TraceID, s.Name, dash(c.Function), dash(c.Service), dash(c.Deployment), dash(c.Release),
					ms(s.DurationMS), spanStatus(s)})
			}
		})
		moreHint(cmd, page.Next)
		return err
	}
	return cmd
}

func spanStatus(s telquery.Span) string {
	if s.StatusMessage != "" {
		return s.Status + ": " + s.StatusMessage
	}
	return s.Status
}

func traceCmd(o *opts) *cobra.Command {
	return &cobra.Command{
		Use:   "trace ID",
		Short: "Show one trace as a tree of spans",
		Long: `Show every stored span of a trace as a tree: each span's name, function,
service, start offset from the trace's first span, duration and status.`,
		Example: "  periscope trace 4bf92f3577b34da6a3ce929d0e0e4736",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p := params{}
			p.set("id", args[0])
			_, err := ask(cmd, o, p, traceParam, (*apiclient.Client).Trace, func(tw *tabwriter.Writer, tr telquery.Trace) {
				fmt.Fprintf(tw, "Trace %s: %s, %d with errors, %s from %s; services %s\n\n", tr.TraceID, plural(tr.SpanCount, "span"), tr.Errors,
					ms(tr.DurationMS), localTime(tr.Start), dash(strings.Join(tr.Services, ", ")))
				tableRow(tw, []string{"SPAN", "FUNCTION", "SERVICE", "OFFSET", "DURATION", "STATUS"})
				var walk func(s *telquery.Span, depth int)
				walk = func(s *telquery.Span, depth int) {
					tableRow(tw, []string{strings.Repeat("  ", depth) + s.Name, dash(s.Context.Function), dash(s.Context.Service),
						"+" + ms(s.OffsetMS), ms(s.DurationMS), spanStatus(*s)})
					for _, ch := range s.Children {
						walk(ch, depth+1)
					}
				}
				for _, r := range tr.Roots {
					walk(r, 0)
				}
			})
			return err
		},
	}
}

// traceParam reads the id the trace verb puts in its parameters, refusing a
// malformed one before any request.
func traceParam(v url.Values, _ time.Time) (string, error) {
	return telquery.CheckTraceID(v.Get("id"))
}

// statsColumns heads the columns of statsCells after the given leading ones.
func statsColumns(lead ...string) []string {
	return append(lead, "REQUESTS", "ERRORS", "ERROR%", "RATE", "P50", "P95", "P99")
}

func statsCells(s telquery.Stats) []string {
	return []string{strconv.FormatInt(s.Requests, 10), strconv.FormatInt(s.Errors, 10), fmt.Sprintf("%.2f%%", 100*s.ErrorRate),
		fmt.Sprintf("%.2f/s", s.Rate), ms(s.P50), ms(s.P95), ms(s.P99)}
}

// seriesFlags are what RED and metric series add to the filter.
type seriesFlags struct {
	groupBy, step string
}

func addSeriesFlags(cmd *cobra.Command, groupBy string) *seriesFlags {
	sf := &seriesFlags{}
	cmd.Flags().StringVar(&sf.groupBy, "group-by", "", groupBy)
	cmd.Flags().StringVar(&sf.step, "step", "", "width of each point (default about 60 points over the range, at least 1m)")
	return sf
}

func (sf *seriesFlags) params(ff filterFlags) params {
	p := ff.params()
	p.set("group_by", sf.groupBy)
	p.set("step", sf.step)
	return p
}

func redCmd(o *opts) *cobra.Command {
	var raw bool
	cmd := &cobra.Command{
		Use:   "red",
		Short: "Rate, errors and duration of requests over time",
		Long: `Print requests, errors, error rate, rate and latency percentiles per step, for
the whole selection or one series per --group-by value, then each series'
total. Percentiles come from per-minute rollups (within about 10%); --raw
computes them from the stored spans instead.`,
		Example: `  periscope red --deployment acme-prod --group-by release --since 6h
  periscope red --release 1.8.0 --group-by deployment --step 5m`,
		Args: cobra.NoArgs,
	}
	ff := addFilterFlags(cmd, true)
	sf := addSeriesFlags(cmd, "one series per release, deployment, function, service or customer")
	cmd.Flags().BoolVar(&raw, "raw", false, "from the stored spans instead of the rollups (slower)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		p := sf.params(ff)
		p.flag("raw", raw)
		_, err := ask(cmd, o, p, telquery.ParseREDQuery, (*apiclient.Client).RED, func(tw *tabwriter.Writer, red telquery.RED) {
			tableRow(tw, statsColumns("TIME", "GROUP"))
			for _, s := range red.Series {
				for _, pt := range s.Points {
					tableRow(tw, append([]string{localTime(pt.Time), dash(s.Group)}, statsCells(pt.Stats)...))
				}
			}
			for _, s := range red.Series {
				tableRow(tw, append([]string{"total", dash(s.Group)}, statsCells(s.Total)...))
			}
		})
		return err
	}
	return cmd
}

func compareCmd(o *opts) *cobra.Command {
	var window string
	cmd := &cobra.Command{
		Use:   "compare",
		Short: "Compare a release's requests with the release before it",
		Long: `With --deployment, compare that deployment's current release with the one it
ran before, over equally long windows just after and just before the switch.
Without, compare the fleet's newest release (or --release) with the one before
it. The other filter flags narrow both sides.`,
		Example: `  periscope compare --deployment acme-prod
  periscope compare --release 1.8.0 --window 30m`,
		Args: cobra.NoArgs,
	}
	ff := addFilterFlags(cmd, false)
	cmd.Flags().StringVar(&window, "window", "", "how much of each release to compare (default 1h)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		p := ff.params()
		p.set("window", window)
		_, err := ask(cmd, o, p, telquery.ParseCompareQuery, (*apiclient.Client).CompareReleases, func(tw *tabwriter.Writer, cmp telquery.Comparison) {
			tableRow(tw, statsColumns("", "RELEASE", "FROM", "TO"))
			for _, side := range []struct {
				name string
				w    telquery.ReleaseWindow
			}{{"current", cmp.Current}, {"previous", cmp.Previous}} {
				tableRow(tw, append([]string{side.name, side.w.Release, localTime(side.w.From), localTime(side.w.To)}, statsCells(side.w.Stats)...))
			}
			ratio := ""
			if cmp.P95Ratio > 0 {
				ratio = fmt.Sprintf(" (x%.2f)", cmp.P95Ratio)
			}
			sign := "+"
			if cmp.P95Change < 0 {
				sign = "-"
			}
			fmt.Fprintf(tw, "\nerror rate %+.2f points, p95 %s%s%s\n", 100*cmp.ErrorRateChange, sign, ms(math.Abs(cmp.P95Change)), ratio)
		})
		return err
	}
	return cmd
}

func metricsCmd(o *opts) *cobra.Command {
	var agg string
	cmd := &cobra.Command{
		Use:   "metrics NAME",
		Short: "The series of one metric",
		Long: `Print a metric's value per step, for the whole selection or one series per
--group-by value (a context field such as deployment or release, or a data point
or resource attribute). --agg combines the points in a step; by default delta
sums add up, cumulative sums keep the last value, and the rest average.`,
		Example: `  periscope metrics queue.depth --group-by deployment --agg max
  periscope metrics http.server.request.duration --release 1.8.0 --group-by http.route --since 6h`,
		Args: cobra.ExactArgs(1),
	}
	ff := addFilterFlags(cmd, true)
	sf := addSeriesFlags(cmd, "one series per value of a context field (deployment, release, …) or attribute key")
	cmd.Flags().StringVar(&agg, "agg", "", "avg, sum, min, max or last")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		p := sf.params(ff)
		p.set("name", args[0])
		p.set("agg", agg)
		_, err := ask(cmd, o, p, telquery.ParseMetricQuery, (*apiclient.Client).Metric, func(tw *tabwriter.Writer, m telquery.Metric) {
			fmt.Fprintf(tw, "%s (%s, unit %s): %s per %s\n\n", m.Name, dash(m.Kind), dash(m.Unit), dash(m.Agg), time.Duration(m.StepSec*float64(time.Second)))
			tableRow(tw, []string{"TIME", "GROUP", "VALUE"})
			for _, s := range m.Series {
				for _, pt := range s.Points {
					tableRow(tw, []string{localTime(pt.Time), dash(s.Group), strconv.FormatFloat(pt.Value, 'g', -1, 64)})
				}
			}
		})
		return err
	}
	return cmd
}
