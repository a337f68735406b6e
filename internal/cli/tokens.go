package cli

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
)

// The operator API token verbs: list, create (the secret is printed once) and
// revoke. They need an admin token; agent tokens are under deployments.

func tokensCmd(o *opts) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "tokens",
		Aliases: []string{"token"},
		Short:   "List, create and revoke operator API tokens (admin only)",
		Long: `Operator API tokens authenticate the CLI, scripts and the dashboard sign-in.
Each has a name (shown in the audit trail) and a role: viewer reads, operator
also pins, rolls back, runs commands and registers deployments, admin also
manages tokens. The manager keeps only a hash: a new token's secret is printed
once. Agent tokens are per deployment: see periscope deployments rotate-token.`,
	}
	list := &cobra.Command{
		Use: "list", Short: "List API tokens with their names and roles (never their secrets)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			ts, err := c.APITokens(cmd.Context())
			if err != nil {
				return err
			}
			return o.printList(cmd.OutOrStdout(), ts, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "ID\tNAME\tROLE")
				for _, t := range ts {
					fmt.Fprintf(tw, "%s\t%s\t%s\n", t.ID, t.Name, t.Role)
				}
			})
		},
	}
	var nt apitypes.NewToken
	create := &cobra.Command{
		Use:   "create NAME --role viewer|operator|admin",
		Short: "Issue an API token and print its secret (shown only now)",
		Example: `  periscope tokens create release-bot --role operator
  periscope tokens create grafana --role viewer -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch nt.Role {
			case "viewer", "operator", "admin":
			case "":
				return fmt.Errorf("tokens create: --role is required: viewer, operator or admin")
			default:
				return fmt.Errorf("tokens create: --role %q: want viewer, operator or admin", nt.Role)
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			nt.Name = args[0]
			t, err := c.CreateAPIToken(cmd.Context(), nt)
			if err != nil {
				return err
			}
			return o.print(cmd.OutOrStdout(), t, func(tw *tabwriter.Writer) {
				fmt.Fprintf(tw, "API token %s (%s, role %s) created. Its secret, shown only now:\n\n    %s\n\n"+
					"Use it with --token, PERISCOPE_TOKEN, or 'token:' in %s.\n", t.Name, t.ID, t.Role, t.Secret, ConfigPath())
			})
		},
	}
	create.Flags().StringVar(&nt.Role, "role", "", "viewer, operator or admin (required)")
	revoke := &cobra.Command{
		Use: "revoke ID", Short: "Revoke an API token at once (its holder gets 401 from then on)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			if err := c.RevokeAPIToken(cmd.Context(), args[0]); err != nil {
				return err
			}
			return o.print(cmd.OutOrStdout(), map[string]string{"revoked": args[0]}, func(tw *tabwriter.Writer) {
				fmt.Fprintf(tw, "API token %s revoked.\n", args[0])
			})
		},
	}
	cmd.AddCommand(list, create, revoke)
	return cmd
}
