package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	remote "github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
)

// The remote-command verbs: exec runs a command a release declares on one
// deployment or a selection and waits for the results; commands lists, shows
// and cancels invocations.

// errNotSucceeded is returned, wrapped, when a command ran but did not succeed
// everywhere, so the CLI exits non-zero after printing the results.
var errNotSucceeded = errors.New("the command did not succeed")

// readCommands reads a release's declarations file for --commands.
func readCommands(path string) ([]remote.Spec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--commands: %w", err)
	}
	specs, err := remote.ParseSpecs(b)
	if err != nil {
		return nil, fmt.Errorf("--commands %s: %w", path, err)
	}
	return specs, nil
}

// parseParams reads --param name=value flags; the manager reads each value as
// the type the command declares.
func parseParams(ps []string) (map[string]any, error) {
	if len(ps) == 0 {
		return nil, nil
	}
	out := make(map[string]any, len(ps))
	for _, p := range ps {
		k, v, ok := strings.Cut(p, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--param %q: want name=value", p)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("--param %s given twice", k)
		}
		out[k] = v
	}
	return out, nil
}

func execCmd(o *opts) *cobra.Command {
	var (
		params                           []string
		reason, timeout                  string
		customer, stack, release, status string
		labels                           []string
	)
	cmd := &cobra.Command{
		Use:   "exec [DEPLOYMENT] COMMAND --reason TEXT [--param NAME=VALUE...]",
		Short: "Run a command a release declares on a deployment, or on a selection, and wait for the result",
		Long: `Run a remote command on one deployment, or with --customer, --stack, --release,
--status and --label (which combine) on every deployment they select, and wait
for each result. The command must be declared by the deployment's desired
release and allowed by its customer's rule, and its parameters must pass the
declared schema; otherwise the manager refuses it, and the reason is shown.
A push deployment runs it at once; a polling one at its next check-in.

The exit status is non-zero unless the command succeeded everywhere.`,
		Example: `  periscope exec acme-prod row-count --param table=orders --reason "ticket 4411: missing orders"
  periscope exec flush-cache --customer acme --reason "stale prices after 2.3.1"`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			lbls, err := parseLabels("label", labels)
			if err != nil {
				return err
			}
			sel := &apitypes.CommandSelection{Customer: customer, Stack: stack, Release: release, Status: fleet.Status(status), Labels: lbls}
			selected := customer != "" || stack != "" || release != "" || status != "" || len(lbls) > 0
			switch {
			case selected && len(args) == 2:
				return fmt.Errorf("exec: name a deployment or select them with flags, not both")
			case !selected && len(args) == 1:
				return fmt.Errorf("exec: say where: periscope exec DEPLOYMENT COMMAND, or select deployments with --customer, --stack, --release, --status or --label")
			}
			if reason == "" {
				return fmt.Errorf("exec: --reason is required: it goes to the audit trail and to the customer's record")
			}
			ps, err := parseParams(params)
			if err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			req := apitypes.NewInvocation{Command: args[len(args)-1], Params: ps, Reason: reason, Timeout: timeout}
			ctx := cmd.Context()
			if !selected {
				inv, err := c.RunCommand(ctx, args[0], req)
				if err != nil {
					return err
				}
				return o.waitAndPrint(ctx, cmd, c, []apitypes.Invocation{inv})
			}
			req.Selection = sel
			invs, err := c.RunCommands(ctx, req)
			if err != nil {
				return err
			}
			return o.waitAndPrint(ctx, cmd, c, invs)
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&params, "param", nil, "parameter name=value (repeatable)")
	f.StringVar(&reason, "reason", "", "why this runs on a customer's deployment (required)")
	f.StringVar(&timeout, "timeout", "", "how long it may wait for the agent on top of the command's own timeout (default 10m)")
	f.StringVar(&customer, "customer", "", "deployments of this customer")
	f.StringVar(&stack, "stack", "", "deployments of this stack")
	f.StringVar(&release, "release", "", "deployments running this release")
	f.StringVar(&status, "status", "", "deployments with this status")
	f.StringArrayVar(&labels, "label", nil, "deployments with this label, key=value (repeatable; all must match)")
	return cmd
}

// waitAndPrint waits for every invocation to end and prints the results: one
// in full, several as a table. It returns errNotSucceeded unless all succeeded.
func (o *opts) waitAndPrint(ctx context.Context, cmd *cobra.Command, c *apiclient.Client, invs []apitypes.Invocation) error {
	for i, inv := range invs {
		if inv.State.Final() {
			continue
		}
		done, err := c.WaitCommand(ctx, inv.ID)
		if err != nil {
			return fmt.Errorf("waiting for invocation %s on %s: %w", inv.ID, inv.DeploymentID, err)
		}
		invs[i] = done
	}
	var err error
	if len(invs) == 1 {
		err = o.print(cmd.OutOrStdout(), invs[0], func(tw *tabwriter.Writer) { invocationDetail(tw, invs[0]) })
	} else {
		err = o.print(cmd.OutOrStdout(), apitypes.InvocationList{Items: invs}, func(tw *tabwriter.Writer) { invocationTable(tw, invs, true) })
	}
	if err != nil {
		return err
	}
	failed := 0
	for _, inv := range invs {
		if inv.State != remote.StateSucceeded {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("%w on %d of %s", errNotSucceeded, failed, plural(len(invs), "deployment"))
	}
	return nil
}

// outcome is an invocation's exit or HTTP status, "-" when it has none.
func outcome(inv apitypes.Invocation) string {
	switch {
	case inv.ExitCode != nil && inv.Signal != "":
		return fmt.Sprintf("exit %d (%s)", *inv.ExitCode, inv.Signal)
	case inv.ExitCode != nil:
		return fmt.Sprintf("exit %d", *inv.ExitCode)
	case inv.HTTPStatus != 0:
		return fmt.Sprintf("HTTP %d", inv.HTTPStatus)
	}
	return "-"
}

func duration(inv apitypes.Invocation) string {
	if inv.Duration <= 0 {
		return "-"
	}
	return inv.Duration.Round(time.Millisecond).String()
}

// outputNotes says what the output is not: cut at the limit, redacted.
func outputNotes(inv apitypes.Invocation) []string {
	var notes []string
	if inv.Truncated {
		notes = append(notes, fmt.Sprintf("output truncated: %d of %s shown", len(inv.Output), plural(int(inv.OutputBytes), "byte")))
	}
	if len(inv.Redacted) > 0 {
		kinds := make([]string, 0, len(inv.Redacted))
		n := 0
		for k, c := range inv.Redacted {
			kinds = append(kinds, k)
			n += c
		}
		sort.Strings(kinds)
		notes = append(notes, fmt.Sprintf("%s redacted by the customer's policy (%s)", plural(n, "value"), strings.Join(kinds, ", ")))
	}
	return notes
}

func invocationDetail(tw *tabwriter.Writer, inv apitypes.Invocation) {
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	at := func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.Local().Format(time.RFC3339)
	}
	row("Invocation", inv.ID)
	row("Deployment", fmt.Sprintf("%s (customer %s)", inv.DeploymentID, dash(inv.Customer)))
	row("Command", inv.Command)
	if len(inv.Params) > 0 {
		keys := make([]string, 0, len(inv.Params))
		for k := range inv.Params {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			row("  param "+k, remote.String(inv.Params[k]))
		}
	}
	row("By", fmt.Sprintf("%s (%s): %s", inv.Actor, dash(inv.ActorRole), inv.Reason))
	row("State", string(inv.State))
	if inv.StateReason != "" {
		row("Why", inv.StateReason)
	}
	row("Result", fmt.Sprintf("%s in %s", outcome(inv), duration(inv)))
	row("Queued", at(inv.QueuedAt))
	row("Delivered", at(inv.DeliveredAt))
	row("Started", at(inv.StartedAt))
	row("Finished", at(inv.FinishedAt))
	row("Deadline", at(inv.Deadline))
	if inv.OutputSHA256 != "" {
		row("Output sha256", inv.OutputSHA256)
	}
	for _, n := range outputNotes(inv) {
		row("Note", n)
	}
	if inv.Output != "" {
		fmt.Fprintf(tw, "\n%s", inv.Output)
		if !strings.HasSuffix(inv.Output, "\n") {
			fmt.Fprintln(tw)
		}
	}
}

// firstLine is the start of an output for a table cell.
func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}

func invocationTable(tw *tabwriter.Writer, invs []apitypes.Invocation, results bool) {
	if results {
		fmt.Fprintln(tw, "DEPLOYMENT\tSTATE\tRESULT\tDURATION\tOUTPUT / WHY")
		for _, inv := range invs {
			detail := inv.StateReason
			if detail == "" {
				detail = firstLine(inv.Output)
				if inv.Truncated {
					detail += " (truncated)"
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", inv.DeploymentID, inv.State, outcome(inv), duration(inv), dash(detail))
		}
		return
	}
	fmt.Fprintln(tw, "ID\tQUEUED\tDEPLOYMENT\tCOMMAND\tBY\tSTATE\tRESULT\tREASON")
	for _, inv := range invs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", inv.ID, inv.QueuedAt.Local().Format(time.RFC3339), inv.DeploymentID, inv.Command,
			inv.Actor, inv.State, outcome(inv), inv.Reason)
	}
}

func commandsCmd(o *opts) *cobra.Command {
	cmd := &cobra.Command{Use: "commands", Aliases: []string{"command"}, Short: "List, show and cancel remote-command invocations"}
	var f apiclient.CommandFilter
	var since string
	list := &cobra.Command{
		Use: "list", Short: "List invocations, newest first", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if since != "" {
				if d, err := time.ParseDuration(since); err == nil {
					f.Since = o.clock.Now().Add(-d)
				} else if f.Since, err = time.Parse(time.RFC3339, since); err != nil {
					return fmt.Errorf("--since %q: a duration before now (2h) or an RFC 3339 time", since)
				}
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			page, err := c.Commands(cmd.Context(), f)
			if err != nil {
				return err
			}
			return o.print(cmd.OutOrStdout(), page, func(tw *tabwriter.Writer) {
				invocationTable(tw, page.Items, false)
				if page.Next != "" {
					fmt.Fprintf(tw, "\nMore: --after %s\n", page.Next)
				}
			})
		},
	}
	lf := list.Flags()
	lf.StringVar(&f.Deployment, "deployment", "", "only this deployment")
	lf.StringVar(&f.Customer, "customer", "", "only this customer")
	lf.StringVar(&f.Command, "command", "", "only this command")
	lf.StringVar(&f.State, "state", "", "only this state (queued, delivered, running, succeeded, failed, expired, refused, cancelled)")
	lf.StringVar(&since, "since", "", "queued since: a duration before now (2h) or an RFC 3339 time")
	lf.IntVar(&f.Limit, "limit", 50, "at most this many")
	lf.StringVar(&f.After, "after", "", "the page after this cursor (from a previous list)")

	show := &cobra.Command{
		Use: "show ID", Short: "Show one invocation with its output", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			inv, err := c.Command(cmd.Context(), args[0], 0)
			if err != nil {
				return err
			}
			return o.print(cmd.OutOrStdout(), inv, func(tw *tabwriter.Writer) { invocationDetail(tw, inv) })
		},
	}
	var reason string
	cancel := &cobra.Command{
		Use: "cancel ID --reason TEXT", Short: "Cancel an invocation still queued (one already sent to its agent cannot be)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if reason == "" {
				return fmt.Errorf("cancel: --reason is required")
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			inv, err := c.CancelCommand(cmd.Context(), args[0], reason)
			if err != nil {
				return err
			}
			return o.print(cmd.OutOrStdout(), inv, func(tw *tabwriter.Writer) {
				fmt.Fprintf(tw, "Invocation %s of %s on %s cancelled.\n", inv.ID, inv.Command, inv.DeploymentID)
			})
		},
	}
	cancel.Flags().StringVar(&reason, "reason", "", "why (required)")
	cmd.AddCommand(list, show, cancel)
	return cmd
}
