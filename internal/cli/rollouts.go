package cli

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
)

func rolloutsCmd(o *opts) *cobra.Command {
	cmd := &cobra.Command{Use: "rollouts", Aliases: []string{"rollout"}, Short: "Follow and steer progressive rollouts of releases through their waves"}
	var (
		stack      string
		unfinished bool
		limit      int
	)
	list := &cobra.Command{
		Use: "list", Short: "List rollouts, newest first, with their phase and open wave", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			rs, err := c.Rollouts(cmd.Context(), stack, unfinished, limit)
			if err != nil {
				return err
			}
			return o.print(cmd.OutOrStdout(), apitypes.RolloutList{Rollouts: nonNil(rs)}, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "ID\tSTACK\tRELEASE\tPHASE\tWAVE\tSTARTED\tBY")
				for _, r := range rs {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Stack, r.Release, r.Phase, waveCell(r), r.StartedAt.Local().Format(time.RFC3339), r.StartedBy)
				}
			})
		},
	}
	lf := list.Flags()
	lf.StringVar(&stack, "stack", "", "only this stack's rollouts")
	lf.BoolVar(&unfinished, "unfinished", false, "only rollouts still under way (running, halted, superseded, aborted with pins pending)")
	lf.IntVar(&limit, "limit", 0, "at most this many (the server's default page when 0)")

	show := &cobra.Command{
		Use: "show ID", Short: "Show a rollout: waves, their deployments and figures, halt, timeline", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			r, err := c.Rollout(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return o.print(cmd.OutOrStdout(), r, func(tw *tabwriter.Writer) { showRollout(tw, r) })
		},
	}

	action := func(verb, use, short, long string, args cobra.PositionalArgs) *cobra.Command {
		var reason string
		c := &cobra.Command{
			Use: use, Short: short, Long: long, Args: args,
			RunE: func(cmd *cobra.Command, args []string) error {
				if strings.TrimSpace(reason) == "" {
					return errors.New("say why with --reason (it goes into the audit log)")
				}
				c, err := o.client()
				if err != nil {
					return err
				}
				dep := ""
				if verb == "skip" {
					dep = args[1]
				}
				r, err := c.RolloutAction(cmd.Context(), args[0], verb, dep, reason)
				if err != nil {
					return err
				}
				return o.print(cmd.OutOrStdout(), r, func(tw *tabwriter.Writer) { showRollout(tw, r) })
			},
		}
		c.Flags().StringVar(&reason, "reason", "", "why (required; it goes into the audit log)")
		return c
	}
	resume := action("resume", "resume ID --reason TEXT", "Let a halted rollout go on",
		"The open wave bakes again from now; its gates no longer count the deployments pinned back.", cobra.ExactArgs(1))
	abort := action("abort", "abort ID --reason TEXT", "Stop a rollout for good and pin back every deployment it moved",
		"Every deployment the rollout moved is pinned back to the release it ran before; those it never reached stay where they are.", cobra.ExactArgs(1))
	skip := action("skip", "skip ID DEPLOYMENT --reason TEXT", "Leave a deployment out of a rollout",
		"Its wave's gates stop counting it and nothing waits for it; it keeps its release until the rollout completes.", cobra.ExactArgs(2))
	cmd.AddCommand(list, show, resume, abort, skip)
	return cmd
}

// releaseRolloutCmd is `periscope releases rollout VERSION --stack S`: it
// rolls a published release out through its stack's plan, as publishing it
// does, through POST /api/v1/rollouts; again as urgent, it supersedes the
// rollout that respects update windows.
func releaseRolloutCmd(o *opts) *cobra.Command {
	var nr apitypes.NewRollout
	c := &cobra.Command{
		Use: "rollout VERSION --stack STACK [--urgent --reason TEXT]", Short: "Roll a published release out through its stack's waves",
		Long: "Starts (or, with --urgent, starts again) the rollout of a published release through its stack's rollout plan: " +
			"the first wave opens at once and each next one once the wave before has baked with its gates green. " +
			"An urgent rollout ignores customers' update windows; it needs --reason, which goes into the audit log with your token's name.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if nr.Urgent && strings.TrimSpace(nr.Reason) == "" {
				return errors.New("say why the release is urgent with --reason (it ignores customers' update windows; the reason goes into the audit log)")
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			nr.Release = args[0]
			r, err := c.StartRollout(cmd.Context(), nr)
			var ae *apiclient.Error
			if errors.As(err, &ae) && ae.Code == "no_plan" {
				return fmt.Errorf("stack %s has no rollout plan, so its releases go to every deployment at once when published: "+
					"set one (rollouts.plans in the manager's config, or PUT /api/v1/rollout-plans/%s) to roll releases out in waves", nr.Stack, nr.Stack)
			}
			if err != nil {
				return err
			}
			return o.print(cmd.OutOrStdout(), r, func(tw *tabwriter.Writer) {
				fmt.Fprintf(tw, "Rollout %s of %s to %s started through %d waves; follow it with: periscope rollouts show %s\n", r.ID, r.Release, r.Stack, len(r.Waves), r.ID)
				showRollout(tw, r)
			})
		},
	}
	f := c.Flags()
	f.StringVar(&nr.Stack, "stack", "", "the release's stack (required)")
	f.BoolVar(&nr.Urgent, "urgent", false, "ignore customers' update windows (needs --reason)")
	f.StringVar(&nr.Reason, "reason", "", "why (required with --urgent; it goes into the audit log)")
	f.StringVar(&nr.Baseline, "baseline", "", "what deployments no wave reached yet keep running (default: the stack's newest release older than VERSION)")
	c.MarkFlagRequired("stack")
	return c
}

// waveCell names the open wave, or says the rollout is past its waves.
func waveCell(r apitypes.Rollout) string {
	if r.Wave < len(r.Waves) {
		return fmt.Sprintf("%d/%d %s", r.Wave+1, len(r.Waves), r.Waves[r.Wave].Name)
	}
	return "-"
}

func showRollout(tw *tabwriter.Writer, r apitypes.Rollout) {
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	row("Rollout", r.ID)
	row("Release", fmt.Sprintf("%s of %s (from %s)", r.Release, r.Stack, dash(r.Baseline)))
	phase := string(r.Phase)
	if r.Urgent {
		phase += " (urgent: ignores update windows)"
	}
	if r.SupersededBy != "" {
		phase += ", superseded by " + r.SupersededBy
	}
	row("Phase", phase)
	row("Started", fmt.Sprintf("%s by %s%s", r.StartedAt.Local().Format(time.RFC3339), r.StartedBy, reasonSuffix(r.Reason)))
	if r.Halt != nil {
		row("Halted", fmt.Sprintf("%s in wave %s: %s", r.Halt.At.Local().Format(time.RFC3339), r.Halt.Wave, r.Halt.Reason))
	}
	if len(r.Skipped) > 0 {
		row("Skipped", strings.Join(r.Skipped, ", "))
	}
	fmt.Fprintln(tw, "\nWAVE\tSTATE\tDEPLOYMENTS\tFIGURES\t")
	for i, w := range r.Waves {
		state := "waiting"
		switch {
		case !w.PassedAt.IsZero():
			state = "passed " + w.PassedAt.Local().Format(time.RFC3339)
		case !w.BakeStart.IsZero():
			state = "baking since " + w.BakeStart.Local().Format(time.RFC3339)
		case !w.OpenedAt.IsZero():
			state = "updating since " + w.OpenedAt.Local().Format(time.RFC3339)
		}
		ids := make([]string, 0, len(w.Members))
		for id := range w.Members {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		members := strings.Join(ids, ", ")
		if len(ids) > 8 {
			members = fmt.Sprintf("%s and %d more", strings.Join(ids[:8], ", "), len(ids)-8)
		}
		f := w.Figures
		figures := fmt.Sprintf("%d/%d updated, %d regressed, %d failed, %d down, %d stale", f.Updated, f.Size, f.Regressed, f.FailedUpdates, f.ComponentsDown, f.Stale)
		if w.OpenedAt.IsZero() {
			figures = "-"
		}
		fmt.Fprintf(tw, "%d %s\t%s\t%s\t%s\t\n", i+1, w.Name, state, dash(members), figures)
	}
	fmt.Fprintln(tw, "\nTIMELINE\t")
	for _, e := range r.Timeline {
		fmt.Fprintf(tw, "%s\t%s\n", e.At.Local().Format(time.RFC3339), e.Text)
	}
}

func reasonSuffix(reason string) string {
	if reason == "" {
		return ""
	}
	return ": " + reason
}
