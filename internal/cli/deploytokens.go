package cli

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
)

// The deployment credential verbs: rotate-token, revoke-token, delete and
// history. Each change is audited with the CLI's token name and --reason.

func deploymentTokenCmds(o *opts) []*cobra.Command {
	var rot apitypes.TokenRotation
	rotate := &cobra.Command{
		Use:   "rotate-token ID",
		Short: "Issue a deployment a new agent token (shown once); the old one works until the agent uses the new one",
		Long: `Issue a deployment a new agent token, printed only now. The manager hands it to the
agent over OpAMP (at once over a push connection, in the reply to the next check-in
when polling); the agent keeps it in its data directory and reconnects with it, with
no restart. The old token stays valid until the agent checks in with the new one, or
until --overlap ends. If the token leaked, revoke it instead: a rotation hands the
new token to whoever holds the old one.`,
		Example: `  periscope deployments rotate-token acme-prod --reason "quarterly rotation"
  periscope deployments rotate-token acme-prod --overlap 24h --reason "staff change"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			r, err := c.RotateToken(cmd.Context(), args[0], rot)
			if err != nil {
				return err
			}
			return o.print(cmd.OutOrStdout(), r, func(tw *tabwriter.Writer) {
				fmt.Fprintf(tw, "New agent token for %s (shown only now):\n\n    %s\n\n", r.DeploymentID, r.Token)
				switch r.Delivery {
				case apitypes.DeliveryPushed:
					fmt.Fprintln(tw, "The agent is connected and was offered it now.")
				case apitypes.DeliveryNextCheckin:
					fmt.Fprintln(tw, "The agent gets it in the reply to its next check-in.")
				default:
					fmt.Fprintln(tw, "The deployment had no valid token, so nothing can carry this one to the agent:\n"+
						"set it as the agent's PERISCOPE_AGENT_TOKEN (or --token) and restart the agent.")
				}
				if r.PreviousTokenValid {
					until := "until the agent checks in with the new one"
					if r.PreviousTokenValidUntil != nil {
						until += ", at the latest " + r.PreviousTokenValidUntil.Local().Format(time.RFC3339)
					}
					fmt.Fprintf(tw, "The old token stays valid %s.\n", until)
				}
			})
		},
	}
	rotate.Flags().StringVar(&rot.Reason, "reason", "", "why, for the audit trail")
	rotate.Flags().StringVar(&rot.Overlap, "overlap", "", "revoke the old token after this long even if the agent has not moved (e.g. 24h)")

	var rev apitypes.TokenRevocation
	revoke := &cobra.Command{
		Use:   "revoke-token ID --reason TEXT",
		Short: "Revoke a deployment's agent tokens at once; its agent is disconnected and refused",
		Long: `Revoke a deployment's agent tokens at once: its push connection is closed and its
check-ins and telemetry are refused (401). Issue a new token with rotate-token and
install it on the agent by hand. With --previous only the old token of a rotation in
progress is revoked, ending its overlap.`,
		Example: `  periscope deployments revoke-token acme-prod --reason "token pasted in a public issue"`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			d, err := c.RevokeToken(cmd.Context(), args[0], rev)
			if err != nil {
				return err
			}
			return o.print(cmd.OutOrStdout(), d, func(tw *tabwriter.Writer) {
				if rev.PreviousOnly {
					fmt.Fprintf(tw, "The previous token of %s is revoked; the new one stays valid.\n", d.ID)
					return
				}
				fmt.Fprintf(tw, "Every agent token of %s is revoked. Issue a new one with:\n\n    periscope deployments rotate-token %s --reason ...\n", d.ID, d.ID)
			})
		},
	}
	revoke.Flags().StringVar(&rev.Reason, "reason", "", "why, for the audit trail (required)")
	revoke.Flags().BoolVar(&rev.PreviousOnly, "previous", false, "revoke only the old token of a rotation in progress")
	revoke.MarkFlagRequired("reason")

	var delReason string
	del := &cobra.Command{
		Use:   "delete ID --reason TEXT",
		Short: "Delete a deployment: its tokens stop working, its history and telemetry are kept",
		Long: `Delete a deployment. Its agent tokens stop working at once, its agent is
disconnected, and it leaves every list. Its status history, pin and token audit
trail stay (see 'periscope deployments history ID'), and its telemetry until
retention removes it.`,
		Example: `  periscope deployments delete acme-staging --reason "customer decommissioned staging"`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			if err := c.DeleteDeployment(cmd.Context(), args[0], delReason); err != nil {
				return err
			}
			return o.print(cmd.OutOrStdout(), map[string]string{"deleted": args[0]}, func(tw *tabwriter.Writer) {
				fmt.Fprintf(tw, "Deployment %s deleted; its tokens no longer work.\n", args[0])
			})
		},
	}
	del.Flags().StringVar(&delReason, "reason", "", "why, for the audit trail (required)")
	del.MarkFlagRequired("reason")

	var limit int
	history := &cobra.Command{
		Use:   "history ID",
		Short: "Show who rotated or revoked a deployment's tokens or deleted it, and why",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			chs, err := c.DeploymentHistory(cmd.Context(), args[0], limit)
			if err != nil {
				return err
			}
			return o.printList(cmd.OutOrStdout(), chs, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "TIME\tACTION\tBY\tREASON\tDETAIL")
				for _, ch := range chs {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", ch.At.Local().Format(time.RFC3339), ch.Action, ch.By, dash(ch.Reason), dash(ch.Detail))
				}
			})
		},
	}
	history.Flags().IntVar(&limit, "limit", 50, "at most this many entries, newest first")
	return []*cobra.Command{rotate, revoke, del, history}
}

// tokenCell says what the operator needs to know of a token that is not simply
// active.
func tokenCell(d apitypes.Deployment) string {
	switch {
	case d.TokenState == apitypes.TokenRevoked:
		return "revoked: the agent is refused until a new token is installed"
	case d.PreviousTokenValidUntil != nil:
		return "rotating: the old token works until the agent uses the new one, at the latest " + d.PreviousTokenValidUntil.Local().Format(time.RFC3339)
	}
	return "rotating: the old token works until the agent uses the new one"
}
