package cli

import (
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
)

// The release verbs: pin, unpin and rollback change which release deployments
// should run (all the selected ones or none; the manager refuses a change that
// overlaps one in progress), behind lists who is not on the latest release and
// why, pins shows the audit trail, and releases adoption counts who runs what.

// selection is the flags that pick deployments by what they are rather than by id.
type selection struct {
	all                                             bool
	customer, cloud, region, stack, running, status string
	labels                                          []string
}

func addSelectionFlags(cmd *cobra.Command) *selection {
	s := &selection{}
	f := cmd.Flags()
	f.BoolVar(&s.all, "all", false, "every deployment of the fleet")
	f.StringVar(&s.customer, "customer", "", "deployments of this customer")
	f.StringVar(&s.cloud, "cloud", "", "deployments on this cloud provider")
	f.StringVar(&s.region, "region", "", "deployments in this region")
	f.StringVar(&s.stack, "stack", "", "deployments of this stack")
	f.StringVar(&s.running, "running", "", "deployments running this release")
	f.StringVar(&s.status, "status", "", "deployments with this status (healthy, unhealthy, updating, failed, stale, pending)")
	f.StringArrayVar(&s.labels, "label", nil, "deployments with this label, key=value (repeatable; all must match)")
	return s
}

// parseLabels reads key=value flags.
func parseLabels(flag string, ls []string) (map[string]string, error) {
	if len(ls) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, l := range ls {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--%s %q: want key=value", flag, l)
		}
		out[k] = v
	}
	return out, nil
}

// selectInto sets which deployments req applies to: the ids named, the ones the
// selection flags match, or with --all the whole fleet; exactly one of those.
func (s *selection) selectInto(req *apitypes.PinRequest, verb string, ids []string) error {
	labels, err := parseLabels("label", s.labels)
	if err != nil {
		return err
	}
	f := apitypes.PinFilter{Customer: s.customer, Cloud: s.cloud, Region: s.region, Stack: s.stack, Release: s.running,
		Status: fleet.Status(s.status), Labels: labels}
	filtered := f.Customer != "" || f.Cloud != "" || f.Region != "" || f.Stack != "" || f.Release != "" || f.Status != "" || len(f.Labels) > 0
	switch {
	case len(ids) > 0 && (filtered || s.all):
		return fmt.Errorf("%s: name deployments or select them with flags, not both", verb)
	case s.all && filtered:
		return fmt.Errorf("%s: --all is the whole fleet; leave it out to select with --customer, --stack and the like", verb)
	case len(ids) > 0:
		req.Deployments = ids
	case s.all:
		req.All = true
	case filtered:
		req.Filter = &f
	default:
		return fmt.Errorf("%s: say which deployments: name them (periscope %s DEPLOYMENT), select them with --customer, --cloud, --region, "+
			"--stack, --running, --status or --label, or use --all for the whole fleet", verb, verb)
	}
	return nil
}

// changePins sends req to the deployments selected and prints what changed. One
// named deployment goes to its own route, anything else to the bulk route.
// Every problem with the command line is reported at once, the selection first:
// fixing one only to be told of the next wastes a newcomer's time.
func (o *opts) changePins(cmd *cobra.Command, ids []string, sel *selection, req apitypes.PinRequest, required ...string) error {
	var problems []error
	if err := sel.selectInto(&req, cmd.Name(), ids); err != nil {
		problems = append(problems, err)
	}
	for _, name := range required {
		if v, _ := cmd.Flags().GetString(name); strings.TrimSpace(v) == "" {
			problems = append(problems, fmt.Errorf("%s: --%s is required: %s", cmd.Name(), name, cmd.Flags().Lookup(name).Usage))
		}
	}
	if len(problems) > 0 {
		return errors.Join(problems...)
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	var res apitypes.PinResult
	switch {
	case len(ids) != 1:
		res, err = c.ChangePins(ctx, req)
	case req.Action == fleet.ActionPin:
		res, err = c.PinDeployment(ctx, ids[0], req.Release, req.Reason)
	case req.Action == fleet.ActionUnpin:
		res, err = c.UnpinDeployment(ctx, ids[0], req.Reason)
	default:
		res, err = c.RollbackDeployment(ctx, ids[0], req.Reason)
	}
	if err != nil {
		return err
	}
	return o.print(cmd.OutOrStdout(), res, func(tw *tabwriter.Writer) { pinResultTable(tw, res) })
}

func pinResultTable(tw *tabwriter.Writer, res apitypes.PinResult) {
	if len(res.Changed) == 0 {
		fmt.Fprintf(tw, "Nothing changed: %d already as asked.\n", res.Unchanged)
		return
	}
	fmt.Fprintln(tw, "DEPLOYMENT\tFROM\tTO\tRUNNING")
	for _, c := range res.Changed {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.DeploymentID, dash(c.From), dash(c.To), dash(c.Running))
	}
	fmt.Fprintf(tw, "\n%d changed, %d already as asked (change %s).\n", len(res.Changed), res.Unchanged, res.ChangeID)
}

const selectionHelp = `Name deployments, or select them with --customer, --cloud, --region, --stack,
--running (the release they run now), --status and --label key=value, which
combine; --all is the whole fleet. The change applies to every selected
deployment or to none: the manager refuses it, naming the deployments, when it
cannot apply to one of them, and answers 409 when another change is still
being applied to one of them (retry once it is done). FROM and TO are the
release each deployment should run before and after; RUNNING is what it runs.`

func pinCmd(o *opts) *cobra.Command {
	var req apitypes.PinRequest
	var sel *selection
	cmd := &cobra.Command{
		Use:   "pin [DEPLOYMENT...] --release V --reason TEXT",
		Short: "Hold deployments on a release instead of following the latest",
		Long: `Pin deployments to a published release of their stack. They are offered that
release instead of the latest until unpinned; who pinned them, when and why are
kept in the audit trail (periscope pins).

` + selectionHelp,
		Example: `  periscope pin acme-prod --release 1.7.2 --reason "1.8.0 breaks checkout (INC-42)"
  periscope pin --customer acme --stack shop --release 1.7.2 --reason "change freeze"
  periscope pin --all --release 1.7.2 --reason "stop the 1.8.0 rollout"`,
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Action = fleet.ActionPin
			return o.changePins(cmd, args, sel, req, "release", "reason")
		},
	}
	sel = addSelectionFlags(cmd)
	cmd.Flags().StringVar(&req.Release, "release", "", "the release to pin to (required)")
	cmd.Flags().StringVar(&req.Reason, "reason", "", "why, for the audit trail (required)")
	return cmd
}

func unpinCmd(o *opts) *cobra.Command {
	var req apitypes.PinRequest
	var sel *selection
	cmd := &cobra.Command{
		Use:   "unpin [DEPLOYMENT...]",
		Short: "Let pinned deployments follow their stack's latest release again",
		Long:  "Remove the pins of deployments, so they are offered their stack's latest release.\n\n" + selectionHelp,
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Action = fleet.ActionUnpin
			return o.changePins(cmd, args, sel, req)
		},
	}
	sel = addSelectionFlags(cmd)
	cmd.Flags().StringVar(&req.Reason, "reason", "", "why, for the audit trail")
	return cmd
}

func rollbackCmd(o *opts) *cobra.Command {
	var req apitypes.PinRequest
	var sel *selection
	cmd := &cobra.Command{
		Use:   "rollback [DEPLOYMENT...] --reason TEXT",
		Short: "Pin deployments to the release they ran before their current one",
		Long: `Roll deployments back: pin each to the older release it ran before its current
one. A deployment that ran no earlier release makes the whole change refused.

` + selectionHelp,
		Example: `  periscope rollback globex-prod --reason "error rate 8% on 1.8.0"
  periscope rollback --running 1.8.0 --reason "1.8.0 regressed"`,
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Action = fleet.ActionRollback
			return o.changePins(cmd, args, sel, req, "reason")
		},
	}
	sel = addSelectionFlags(cmd)
	cmd.Flags().StringVar(&req.Reason, "reason", "", "why, for the audit trail (required)")
	return cmd
}

func pinsCmd(o *opts) *cobra.Command {
	var deployment string
	var limit int
	cmd := &cobra.Command{
		Use: "pins", Short: "The pin audit trail: who pinned, unpinned or rolled back what, when and why, newest first", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 1 {
				return fmt.Errorf("--limit %d: want 1 or more", limit)
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			hist, err := c.PinHistory(cmd.Context(), deployment, limit)
			if err != nil {
				return err
			}
			return o.printList(cmd.OutOrStdout(), hist, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "AT\tCHANGE\tACTION\tDEPLOYMENT\tFROM\tTO\tRUNNING\tBY\tREASON")
				for _, h := range hist {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.At.Local().Format(time.RFC3339), h.ChangeID, h.Action, h.DeploymentID,
						dash(h.From), dash(h.To), dash(h.Running), dash(h.By), dash(h.Reason))
				}
			})
		},
	}
	cmd.Flags().StringVar(&deployment, "deployment", "", "only this deployment")
	cmd.Flags().IntVar(&limit, "limit", 50, "at most this many entries")
	return cmd
}

func adoptionCmd(o *opts) *cobra.Command {
	var stack string
	cmd := &cobra.Command{
		Use: "adoption", Short: "Per stack: how many deployments run, should run and are pinned to each release", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			ads, err := c.Adoption(cmd.Context(), stack)
			if err != nil {
				return err
			}
			return o.printList(cmd.OutOrStdout(), ads, func(tw *tabwriter.Writer) { adoptionTable(tw, ads) })
		},
	}
	cmd.Flags().StringVar(&stack, "stack", "", "only this stack")
	return cmd
}

func adoptionTable(tw *tabwriter.Writer, ads []apitypes.Adoption) {
	fmt.Fprintln(tw, "STACK\tRELEASE\tRUNNING\tDESIRED\tPINNED\tNOTE")
	for _, a := range ads {
		for _, r := range a.Releases {
			note := ""
			switch {
			case r.Version == a.Latest:
				note = "latest"
			case !r.Published:
				note = "not published"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\n", a.Stack, r.Version, r.Running, r.Desired, r.Pinned, note)
		}
	}
	fmt.Fprintln(tw)
	for _, a := range ads {
		onLatest := 0
		for _, r := range a.Releases {
			if r.Version == a.Latest {
				onLatest = r.Running
			}
		}
		verb := "run"
		if a.Total == 1 {
			verb = "runs"
		}
		fmt.Fprintf(tw, "%s: %d of %s %s the latest release %s.\n", a.Stack, onLatest, plural(a.Total, "deployment"), verb, dash(a.Latest))
	}
}

// behindAdvice says what to do about each reason a deployment is behind.
var behindAdvice = map[fleet.BehindReason]string{
	fleet.BehindPullPending:   "it polls and has not polled since its release changed; it gets the release at its next poll (NEXT POLL)",
	fleet.BehindUnreachable:   "its agent's connection is lost; check the agent and its network path to the manager",
	fleet.BehindConfigDrift:   "it runs another configuration than expected; redeploy its configuration",
	fleet.BehindUpdateFailed:  "applying the release failed; see the update error (periscope deployments show), fix it and retry, or roll back",
	fleet.BehindAwaitingApply: "it was offered the release and has not started applying it; check its agent's update hook",
	fleet.BehindManualApply:   "its agent cannot apply releases itself; redeploy it on the desired release, or give the agent an update hook",
	fleet.BehindPinned:        "a pin holds it; unpin it once the pin's reason no longer holds (periscope unpin DEPLOYMENT)",
}

func behindCmd(o *opts) *cobra.Command {
	var f apiclient.Filter
	var labels []string
	cmd := &cobra.Command{
		Use:   "behind",
		Short: "Deployments not on their stack's latest release, with why, longest behind first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if f.Labels, err = parseLabels("label", labels); err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			bs, err := c.Behind(cmd.Context(), f)
			if err != nil {
				return err
			}
			return o.printList(cmd.OutOrStdout(), bs, func(tw *tabwriter.Writer) { behindTable(tw, bs) })
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.Behind, "reason", "", "only this reason (pull-pending, unreachable, config-drift, update-failed, awaiting-apply, manual-apply, waiting-for-wave, outside-window, pinned)")
	fl.StringVar(&f.Status, "status", "", "only this status")
	fl.StringVar(&f.Customer, "customer", "", "only this customer")
	fl.StringVar(&f.Cloud, "cloud", "", "only this cloud provider")
	fl.StringVar(&f.Region, "region", "", "only this region")
	fl.StringVar(&f.Release, "release", "", "only deployments running this release")
	fl.StringVar(&f.Stack, "stack", "", "only this stack")
	fl.StringVar(&f.Pinned, "pinned", "", "only pinned (true) or unpinned (false) deployments")
	fl.StringVar(&f.Text, "text", "", "text in id, name or customer")
	fl.StringArrayVar(&labels, "label", nil, "only deployments with this label, key=value (repeatable)")
	return cmd
}

func behindTable(tw *tabwriter.Writer, bs []apitypes.BehindDeployment) {
	if len(bs) == 0 {
		fmt.Fprintln(tw, "Every deployment runs its stack's latest release.")
		return
	}
	fmt.Fprintln(tw, "DEPLOYMENT\tCUSTOMER\tSTACK\tRUNNING\tDESIRED\tLATEST\tBEHIND\tDAYS\tREASON\tNEXT POLL")
	seen := map[fleet.BehindReason]bool{}
	var reasons []fleet.BehindReason
	for _, b := range bs {
		next := "-"
		if b.NextPollExpected != nil {
			next = b.NextPollExpected.Local().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%.1f\t%s\t%s\n", b.ID, b.Customer, b.Stack, dash(b.Release), dash(b.DesiredRelease),
			dash(b.LatestRelease), b.VersionsBehind, b.DaysSinceSuperseded, b.Reason, next)
		if !seen[b.Reason] {
			seen[b.Reason] = true
			reasons = append(reasons, b.Reason)
		}
	}
	fmt.Fprintln(tw, "\nBEHIND counts newer releases; DAYS is since the running release stopped being the latest.")
	for _, r := range reasons {
		if advice, ok := behindAdvice[r]; ok {
			fmt.Fprintf(tw, "%s: %s\n", r, advice)
		}
	}
}
