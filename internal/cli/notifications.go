package cli

import (
	"fmt"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
)

func notificationsCmd(o *opts) *cobra.Command {
	var f apiclient.NotificationFilter
	cmd := &cobra.Command{
		Use:     "notifications",
		Aliases: []string{"notification"},
		Short:   "Status changes sent to the notification webhooks, newest first",
		Long: `List what the manager sent to its notification webhooks, newest first: one row
per webhook a notification went to, with the delivery's state, its attempts
and the last error. --state pending, delivered or failed keeps notifications
with a delivery in that state; entered or resolved keeps those of that state.`,
		Example: `  periscope notifications --state failed
  periscope notifications --deployment acme-prod -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch f.State {
			case "", "pending", "delivered", "failed", "entered", "resolved":
			default:
				return fmt.Errorf("--state %q: want pending, delivered, failed, entered or resolved", f.State)
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			ns, err := c.Notifications(cmd.Context(), f)
			if err != nil {
				return err
			}
			if ns == nil {
				ns = []apitypes.Notification{}
			}
			return o.printList(cmd.OutOrStdout(), ns, func(tw *tabwriter.Writer) {
				tableRow(tw, []string{"AT", "DEPLOYMENT", "KIND", "STATE", "STATUS", "WEBHOOK", "DELIVERY", "ATTEMPTS", "LAST ERROR"})
				for _, n := range ns {
					lead := []string{localTime(n.At), n.Deployment.ID, n.Kind, n.State, string(n.Status)}
					if len(n.Deliveries) == 0 {
						tableRow(tw, append(lead, "-", "-", "-", "-"))
					}
					for _, d := range n.Deliveries {
						tableRow(tw, append(lead, d.Webhook, deliveryCell(d), strconv.Itoa(d.Attempts), dash(d.LastError)))
					}
				}
			})
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.Deployment, "deployment", "", "only this deployment (id)")
	fl.StringVar(&f.State, "state", "", "only deliveries pending, delivered or failed, or notifications entered or resolved")
	fl.IntVar(&f.Limit, "limit", 0, "at most this many notifications (default 100, at most 1000)")
	return cmd
}

// deliveryCell says where a delivery stands, with when a pending one is retried.
func deliveryCell(d apitypes.NotificationDelivery) string {
	if d.State == "pending" && d.NextAttempt != nil {
		return "pending, next " + localTime(*d.NextAttempt)
	}
	return d.State
}
