package cli

import (
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
)

func auditCmd(o *opts) *cobra.Command {
	var q apitypes.AuditQuery
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "The manager's audit log: who did what, newest first",
		Long: `List the manager's audit log, newest first: commands, pins and rollbacks,
deployment token changes and deletions, API token creation and revocation, and
dashboard sign-ins, each with who (token name and role), on what, why and the
outcome. Entries are append-only; the manager keeps them for audit.retention
(a year by default). --action takes an action (pin.rollback) or, ending in a
dot, a group (command., pin., deployment., token., session.). --since and
--until take RFC 3339 or a duration before now (24h). Needs an operator token.`,
		Example: `  periscope audit --since 24h
  periscope audit --action pin. --customer acme
  periscope audit --actor alice --outcome failed -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			page, err := c.Audit(cmd.Context(), q)
			if err != nil {
				return err
			}
			err = o.print(cmd.OutOrStdout(), page, func(tw *tabwriter.Writer) {
				tableRow(tw, []string{"AT", "ACTOR", "ROLE", "ACTION", "DEPLOYMENT", "CUSTOMER", "TARGET", "OUTCOME", "REASON"})
				for _, e := range page.Items {
					tableRow(tw, []string{localTime(e.At), dash(oneLine(e.Actor)), dash(e.ActorRole), oneLine(e.Action), dash(oneLine(e.DeploymentID)),
						dash(oneLine(e.Customer)), dash(oneLine(e.Target)), dash(oneLine(e.Outcome)), dash(oneLine(e.Reason))})
				}
			})
			moreHint(cmd, page.Next)
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&q.Actor, "actor", "", "only entries by this token name (periscope: the manager itself)")
	fl.StringVar(&q.Action, "action", "", "only this action, or a group ending in a dot (pin.)")
	fl.StringVar(&q.Deployment, "deployment", "", "only entries about this deployment (id)")
	fl.StringVar(&q.Customer, "customer", "", "only entries about this customer's deployments")
	fl.StringVar(&q.Outcome, "outcome", "", "only this outcome (succeeded, failed, or a command's final state)")
	fl.StringVar(&q.Since, "since", "", "from this time on: RFC 3339 or a duration before now (24h)")
	fl.StringVar(&q.Until, "until", "", "before this time: RFC 3339 or a duration before now")
	fl.IntVar(&q.Limit, "limit", 0, "at most this many entries (default 100, at most 1000)")
	fl.StringVar(&q.Cursor, "cursor", "", "continue after the previous page (printed on stderr as more:)")
	return cmd
}

// oneLine keeps a cell on one line and in its column: reasons and names are
// what people typed, tabs and newlines included.
func oneLine(s string) string {
	return strings.NewReplacer("\r", `\r`, "\n", `\n`, "\t", `\t`).Replace(s)
}
