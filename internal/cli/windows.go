package cli

import (
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
	"github.com/periscope-dev/periscope/internal/rolloutplan"
)

// windowsCmd is `periscope windows list|set|clear`: customers' and
// deployments' update windows through /api/v1/update-windows.
func windowsCmd(o *opts) *cobra.Command {
	cmd := &cobra.Command{Use: "windows", Short: "Customers' and deployments' update windows: when offers of new releases may reach them",
		Long: "An offer of a new release reaches a deployment only inside its update windows (its own, else its customer's); outside them it shows behind: outside-window. " +
			"Windows set here replace the manager configuration file's for that customer or deployment; clearing them brings the file's back. Urgent releases ignore windows."}
	list := &cobra.Command{
		Use: "list", Short: "List the update windows in force, with where each comes from", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			ws, err := c.UpdateWindows(cmd.Context())
			if err != nil {
				return err
			}
			return o.print(cmd.OutOrStdout(), ws, func(tw *tabwriter.Writer) {
				if len(ws) == 0 {
					fmt.Fprintln(tw, "No update windows: every deployment takes its offers at any time.")
					return
				}
				fmt.Fprintln(tw, "KIND\tOWNER\tWINDOWS\tSOURCE\tSET")
				for _, w := range ws {
					texts := make([]string, len(w.Windows))
					for i, x := range w.Windows {
						texts[i] = x.String()
					}
					set := "-"
					if w.Source == "api" {
						set = w.UpdatedAt.Local().Format(time.RFC3339) + " by " + w.UpdatedBy
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", w.Kind, w.Owner, strings.Join(texts, "; "), w.Source, set)
				}
			})
		},
	}

	var customer, deployment, reason string
	var windows []string
	owner := func() (string, string, error) {
		switch {
		case customer != "" && deployment != "":
			return "", "", errors.New("name a customer or a deployment, not both")
		case customer != "":
			return "customer", customer, nil
		case deployment != "":
			return "deployment", deployment, nil
		}
		return "", "", errors.New("name whose windows with --customer or --deployment")
	}
	needReason := func() error {
		if strings.TrimSpace(reason) == "" {
			return errors.New("say why with --reason (it goes into the audit log)")
		}
		return nil
	}
	set := &cobra.Command{
		Use: "set (--customer NAME | --deployment ID) --window \"Sat 02:00-06:00 Europe/Berlin\" [--window ...] --reason TEXT", Args: cobra.NoArgs,
		Short: "Set a customer's or deployment's update windows (replacing the config file's for it)",
		Long: "Each --window is days, local times and a time zone: \"Sat 02:00-06:00 Europe/Berlin\", \"Mon-Fri 22:00-04:00 America/New_York\", \"Daily 01:00-03:00 UTC\". " +
			"The change applies at once: a deployment whose window just closed is held, one whose window opened receives its offer.",
		RunE: func(cmd *cobra.Command, _ []string) error {
			kind, name, err := owner()
			if err != nil {
				return err
			}
			if len(windows) == 0 {
				return errors.New("give at least one --window (clear removes them)")
			}
			if err := needReason(); err != nil {
				return err
			}
			var ws rolloutplan.Windows
			for _, s := range windows {
				w, err := rolloutplan.ParseWindow(s)
				if err != nil {
					return err
				}
				ws = append(ws, w)
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			got, err := c.SetUpdateWindows(cmd.Context(), kind, name, apitypes.NewUpdateWindows{Windows: ws, Reason: reason})
			if err != nil {
				return err
			}
			return o.print(cmd.OutOrStdout(), got, func(tw *tabwriter.Writer) {
				fmt.Fprintf(tw, "Update windows of %s %s set: %d window(s); they replace the configuration file's for it.\n", kind, name, len(got.Windows))
			})
		},
	}
	clear := &cobra.Command{
		Use: "clear (--customer NAME | --deployment ID) --reason TEXT", Args: cobra.NoArgs,
		Short: "Remove the update windows set through the API for a customer or deployment (the config file's apply again)",
		RunE: func(cmd *cobra.Command, _ []string) error {
			kind, name, err := owner()
			if err != nil {
				return err
			}
			if err := needReason(); err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			if err := c.ClearUpdateWindows(cmd.Context(), kind, name, reason); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Update windows of %s %s set through the API removed; the configuration file's, if any, apply again.\n", kind, name)
			return nil
		},
	}
	for _, c := range []*cobra.Command{set, clear} {
		c.Flags().StringVar(&customer, "customer", "", "the customer whose windows")
		c.Flags().StringVar(&deployment, "deployment", "", "the deployment whose windows (they replace its customer's for it)")
		c.Flags().StringVar(&reason, "reason", "", "why (required; it goes into the audit log)")
	}
	set.Flags().StringArrayVar(&windows, "window", nil, "an update window, such as \"Sat 02:00-06:00 Europe/Berlin\" (repeat for more)")
	cmd.AddCommand(list, set, clear)
	return cmd
}
