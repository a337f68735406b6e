package cli

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
	"github.com/periscope-dev/periscope/internal/thresholds"
)

// thresholdsFlags are the flags of "deployments thresholds", each VALUE or
// SOURCE=VALUE (a bare VALUE is for every source of its kind, "*").
type thresholdsFlags struct {
	lag, age, disk, inodes []string
	clear                  bool
	reason                 string
}

func (f *thresholdsFlags) any() bool {
	return f.clear || len(f.lag)+len(f.age)+len(f.disk)+len(f.inodes) > 0
}

// set builds the whole set the flags describe.
func (f *thresholdsFlags) set() (thresholds.Set, error) {
	var s thresholds.Set
	if f.clear {
		if len(f.lag)+len(f.age)+len(f.disk)+len(f.inodes) > 0 {
			return s, errors.New("--clear removes every threshold; give it alone")
		}
		return s, nil
	}
	queues, fss := map[string]*thresholds.QueueRule{}, map[string]*thresholds.FilesystemRule{}
	queue := func(src string) *thresholds.QueueRule {
		if queues[src] == nil {
			queues[src] = &thresholds.QueueRule{Source: src}
		}
		return queues[src]
	}
	fs := func(src string) *thresholds.FilesystemRule {
		if fss[src] == nil {
			fss[src] = &thresholds.FilesystemRule{Source: src}
		}
		return fss[src]
	}
	var errs []error
	for _, v := range f.lag {
		src, val := splitSource(v)
		n, err := strconv.ParseInt(val, 10, 64)
		if err != nil || n <= 0 {
			errs = append(errs, fmt.Errorf("--queue-lag %q: want a number of messages above 0, optionally after SOURCE=", v))
			continue
		}
		queue(src).MaxLag = n
	}
	for _, v := range f.age {
		src, val := splitSource(v)
		d, err := time.ParseDuration(val)
		if err != nil || d < time.Second {
			errs = append(errs, fmt.Errorf("--queue-age %q: want a duration of a second or more (10m), optionally after SOURCE=", v))
			continue
		}
		queue(src).MaxOldestAgeSeconds = int64(d / time.Second)
	}
	for _, v := range f.disk {
		src, val := splitSource(v)
		if p, ok := strings.CutSuffix(val, "%"); ok {
			pct, err := strconv.ParseFloat(p, 64)
			if err != nil || pct <= 0 {
				errs = append(errs, fmt.Errorf("--disk-free %q: want a percentage above 0 (10%%) or a size (5GiB)", v))
				continue
			}
			fs(src).MinFreePercent = pct
			continue
		}
		n, err := parseBytes(val)
		if err != nil {
			errs = append(errs, fmt.Errorf("--disk-free %q: %w", v, err))
			continue
		}
		fs(src).MinFreeBytes = n
	}
	for _, v := range f.inodes {
		src, val := splitSource(v)
		pct, err := strconv.ParseFloat(strings.TrimSuffix(val, "%"), 64)
		if err != nil || pct <= 0 {
			errs = append(errs, fmt.Errorf("--inodes-free %q: want a percentage above 0 (5%%)", v))
			continue
		}
		fs(src).MinFreeInodesPercent = pct
	}
	for _, k := range slices.Sorted(maps.Keys(queues)) {
		s.Queues = append(s.Queues, *queues[k])
	}
	for _, k := range slices.Sorted(maps.Keys(fss)) {
		s.Filesystems = append(s.Filesystems, *fss[k])
	}
	if len(errs) == 0 {
		errs = append(errs, s.Validate())
	}
	return s, errors.Join(errs...)
}

// splitSource splits "SOURCE=VALUE"; a bare VALUE is for every source.
func splitSource(v string) (source, value string) {
	if s, val, ok := strings.Cut(v, "="); ok {
		return s, val
	}
	return thresholds.AllSources, v
}

// parseBytes reads a size: a number of bytes with an optional unit (KB, MB,
// GB, TB in powers of 1000; KiB, MiB, GiB, TiB in powers of 1024).
func parseBytes(v string) (int64, error) {
	units := []struct {
		suffix string
		mult   float64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}}
	num, mult := v, 1.0
	for _, u := range units {
		if n, ok := strings.CutSuffix(v, u.suffix); ok {
			num, mult = n, u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || f <= 0 || f*mult >= 1<<62 {
		return 0, errors.New("want a percentage (10%) or a size above 0 (5GiB, 500MB)")
	}
	return int64(f * mult), nil
}

func thresholdsCmd(o *opts) *cobra.Command {
	var f thresholdsFlags
	cmd := &cobra.Command{
		Use:   "thresholds ID [--queue-lag N] [--queue-age D] [--disk-free 10%|SIZE] [--inodes-free P%] --reason TEXT",
		Short: "Show or set the runtime thresholds past which a deployment is unhealthy",
		Long: `Without flags, show a deployment's runtime thresholds and whether its agent holds
them. With flags, replace the whole set (flags not given are removed) and say why in
--reason, which goes into the audit log; without a set of its own (--clear) the
customer's or the fleet's default from the manager's configuration applies. Each flag takes VALUE, for every source of
its kind, or SOURCE=VALUE for one source (as named in the agent's runtime config,
e.g. nats/orders or filesystem/data), and may be repeated. The agent gets the set at
its next check-in (at once over a push connection); a crossed threshold makes the
deployment unhealthy with the reason threshold-exceeded.`,
		Example: `  periscope deployments thresholds acme-prod
  periscope deployments thresholds acme-prod --queue-lag 1000 --disk-free 10% --reason "page before customers notice"
  periscope deployments thresholds acme-prod --queue-lag nats/orders=5000 --queue-age 10m --disk-free filesystem/data=20GiB --reason "sale"
  periscope deployments thresholds acme-prod --clear --reason "quiet"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			var t apitypes.Thresholds
			if f.any() {
				set, err := f.set()
				if err != nil {
					return err
				}
				if strings.TrimSpace(f.reason) == "" {
					return errors.New("say why with --reason (it goes into the audit log)")
				}
				t, err = c.SetThresholds(cmd.Context(), args[0], set, f.reason)
				if err != nil {
					return err
				}
			} else if t, err = c.Thresholds(cmd.Context(), args[0]); err != nil {
				return err
			}
			return o.print(cmd.OutOrStdout(), t, func(tw *tabwriter.Writer) {
				fmt.Fprintf(tw, "Thresholds of %s:\t%s\n", t.DeploymentID, t.Thresholds.Summary())
				if t.EffectiveFrom != "" && t.EffectiveFrom != thresholds.FromDeployment {
					fmt.Fprintf(tw, "In force (%s default):\t%s\n", t.EffectiveFrom, t.Effective.Summary())
				}
				switch {
				case t.AgentHash == nil:
					fmt.Fprintln(tw, "Agent:\tnot heard since the manager started")
				case t.InSync:
					fmt.Fprintln(tw, "Agent:\tholds them")
				case t.AgentError != "":
					fmt.Fprintf(tw, "Agent:\trefused the last set: %s\n", t.AgentError)
				default:
					fmt.Fprintln(tw, "Agent:\tgets them at its next check-in")
				}
			})
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVar(&f.lag, "queue-lag", nil, "most messages a consumer may have pending: N or SOURCE=N")
	fl.StringArrayVar(&f.age, "queue-age", nil, "oldest a queued message may be: 10m or SOURCE=10m")
	fl.StringArrayVar(&f.disk, "disk-free", nil, "least free space: 10%, 5GiB, or SOURCE=…")
	fl.StringArrayVar(&f.inodes, "inodes-free", nil, "least free inodes: 5% or SOURCE=5%")
	fl.BoolVar(&f.clear, "clear", false, "remove every threshold")
	fl.StringVar(&f.reason, "reason", "", "why, for the audit log (required to set)")
	return cmd
}
