// Package cli is the periscope command: manager, agent, demo and the operator
// verbs that talk to a manager's REST API.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/periscope-dev/periscope/internal/cli/agentcmd"
	"github.com/periscope-dev/periscope/internal/clock"
	remote "github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/config"
	"github.com/periscope-dev/periscope/internal/demo"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/manager"
	"github.com/periscope-dev/periscope/internal/manager/api/apiclient"
	"github.com/periscope-dev/periscope/internal/manager/api/apitypes"
)

// NewRoot returns the periscope command tree.
func NewRoot() *cobra.Command { return newRoot(clock.Real{}) }

// newRoot builds the tree reading the time from c, so tests can fix what "1h ago" means.
func newRoot(c clock.Clock) *cobra.Command {
	root := &cobra.Command{
		Use:           "periscope",
		Short:         "One operational view of every customer deployment",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       versionString(),
	}
	// --version prints the same line as the version verb.
	root.SetVersionTemplate("{{.Version}}\n")
	o := &opts{clock: c}
	pf := root.PersistentFlags()
	pf.StringVar(&o.manager, "manager", "", "manager URL for operator verbs (PERISCOPE_MANAGER, or 'manager' in the CLI config file)")
	pf.StringVar(&o.token, "token", "", "API token for operator verbs (PERISCOPE_TOKEN, or 'token' in the CLI config file)")
	pf.StringVarP(&o.output, "output", "o", "table", "output format: table or json")
	pf.StringVar(&o.ca, "ca", "", "PEM file of the CA that signed the manager's certificate, when not a public one (PERISCOPE_CA, or 'ca' in the CLI config file)")
	root.AddCommand(versionCmd(), tokensCmd(o), managerCmd(), agentcmd.New(), demoCmd(), deploymentsCmd(o), releasesCmd(o), statusCmd(o),
		logsCmd(o), tracesCmd(o), traceCmd(o), redCmd(o), compareCmd(o), metricsCmd(o),
		pinCmd(o), unpinCmd(o), rollbackCmd(o), pinsCmd(o), behindCmd(o), notificationsCmd(o), auditCmd(o), execCmd(o), commandsCmd(o), runtimeCmd(o), rolloutsCmd(o), windowsCmd(o))
	return root
}

// Execute runs the command tree and reports errors on stderr.
func Execute() int {
	if err := NewRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		return 1
	}
	return 0
}

func managerCmd() *cobra.Command {
	var cfgFile string
	var hb, stale time.Duration
	d := config.DefaultManager()
	cmd := &cobra.Command{
		Use:   "manager",
		Short: "Run the control plane: API, check-in (OpAMP) and fleet state on one port",
		Long: `Run the manager. Configuration comes from defaults, then the YAML file given by
--config, then PERISCOPE_* variables (PERISCOPE_LISTEN, PERISCOPE_DATA_DIR,
PERISCOPE_HEARTBEAT_INTERVAL, PERISCOPE_STALE_AFTER, PERISCOPE_ADMIN_TOKEN,
PERISCOPE_LOG_LEVEL), then flags.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := config.DefaultManager()
			loadErr := config.Load(&cfg, cfgFile, os.Environ())
			f := cmd.Flags()
			for name, dst := range map[string]*string{"listen": &cfg.Listen, "data-dir": &cfg.DataDir, "log-level": &cfg.LogLevel} {
				if f.Changed(name) {
					*dst, _ = f.GetString(name)
				}
			}
			if f.Changed("heartbeat-interval") {
				cfg.HeartbeatInterval = config.Duration(hb)
			}
			if f.Changed("stale-after") {
				cfg.StaleAfter = config.Duration(stale)
			}
			if err := config.Finish(loadErr, cfgFile, &cfg); err != nil {
				return err
			}
			m, err := manager.New(cfg, manager.Settings{Logger: agentcmd.NewLogger(cfg.LogLevel), Console: os.Stderr})
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if err := m.Start(ctx); err != nil {
				return err
			}
			werr := m.Wait(ctx)
			sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			return errors.Join(werr, m.Shutdown(sctx))
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfgFile, "config", "", "YAML config file")
	f.String("listen", d.Listen, "HTTP listen address")
	f.String("data-dir", d.DataDir, "data directory (embedded database)")
	f.DurationVar(&hb, "heartbeat-interval", time.Duration(d.HeartbeatInterval), "expected agent check-in interval")
	f.DurationVar(&stale, "stale-after", 0, "no check-in for this long makes a deployment stale (default 3 heartbeats)")
	f.String("log-level", d.LogLevel, "debug, info, warn or error")
	return cmd
}

func demoCmd() *cobra.Command {
	var listen, dataDir, scenario string
	var deployments int
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a manager and a simulated fleet while a release rolls out and regresses",
		Long: `Run a manager and a fleet of simulated customer deployments (a dozen by default,
--deployments for more), each a real agent with an update hook, checking in
over OpAMP, with services sending logs, traces and metrics (half an hour of
history, then live). A scenario unfolds on its own: release 1.8.0 is published
and rolls out wave by wave; on globex-prod it breaks checkout, which turns the
deployment unhealthy (regressed-after-release). Pin it back and its agent
rolls it back. With --scenario halt the rollout halts and pins it back by
itself. The fleet also shows a polling deployment lagging behind, one going
stale, one pinned, a crash-looping worker and a growing queue backlog.
The manager listens on --listen, or the next free port when that one is taken.
The data directory is temporary unless --data-dir is given. docs/tutorial.md
walks through the investigation. Stop with Ctrl-C.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return demo.Run(ctx, demo.Options{Listen: listen, DataDir: dataDir, Deployments: deployments, Scenario: scenario,
				Out: cmd.OutOrStdout(), Logger: agentcmd.NewLogger("warn")})
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:7070", "manager listen address (the next free port is used when it is taken)")
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "data directory, kept after the demo (a temporary one, removed on exit, when empty)")
	cmd.Flags().IntVar(&deployments, "deployments", 12, fmt.Sprintf("deployments in the fleet: the dozen of the story, then generated ones (up to %d)", demo.MaxDeployments))
	cmd.Flags().StringVar(&scenario, "scenario", demo.ScenarioNames()[0], "the story: "+strings.Join(demo.ScenarioNames(), " or "))
	return cmd
}

type opts struct {
	manager, token, output string
	// ca is the PEM file of the CA that signed the manager's certificate (ca.go).
	ca string
	// clock is what relative flags such as --since 1h count back from.
	clock clock.Clock
}

// cliConfig is the optional file in the user's config directory.
type cliConfig struct {
	Manager string `yaml:"manager"`
	Token   string `yaml:"token"`
	CA      string `yaml:"ca"`
}

// ConfigPath is where the CLI looks for its defaults.
func ConfigPath() string {
	dir, err := os.UserConfigDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "periscope", "cli.yaml")
}

// client resolves the manager URL and token: flag, then environment, then the
// CLI config file, then the local default manager.
func (o *opts) client() (*apiclient.Client, error) {
	var file cliConfig
	if p := ConfigPath(); p != "" {
		if b, err := os.ReadFile(p); err == nil {
			if err := yaml.Unmarshal(b, &file); err != nil {
				return nil, fmt.Errorf("CLI config %s: %w", p, err)
			}
		}
	}
	pick := func(vals ...string) string {
		for _, v := range vals {
			if v != "" {
				return v
			}
		}
		return ""
	}
	url := pick(o.manager, os.Getenv("PERISCOPE_MANAGER"), file.Manager, "http://127.0.0.1:7070")
	token := pick(o.token, os.Getenv("PERISCOPE_TOKEN"), file.Token)
	if token == "" {
		return nil, fmt.Errorf("no API token: pass --token, set PERISCOPE_TOKEN, or put 'token:' in %s", ConfigPath())
	}
	if o.output != "table" && o.output != "json" {
		return nil, fmt.Errorf("--output %q: want table or json", o.output)
	}
	c := apiclient.New(url, token)
	if err := trustCA(c, pick(o.ca, os.Getenv("PERISCOPE_CA"), file.CA)); err != nil {
		return nil, err
	}
	return c, nil
}

func (o *opts) print(w io.Writer, v any, table func(*tabwriter.Writer)) error {
	if o.output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	table(tw)
	return tw.Flush()
}

func ago(t *time.Time) string {
	if t == nil {
		return "never"
	}
	d := time.Since(*t).Round(time.Second)
	if d < time.Second {
		return "just now"
	}
	return d.String() + " ago"
}

func statusCell(d apitypes.Deployment) string {
	s := string(d.Status)
	if d.Pinned && d.Pin != nil {
		s += fmt.Sprintf(" (pinned to %s, latest %s)", d.Pin.Release, d.LatestRelease)
	}
	if d.Behind != "" {
		s += " (behind: " + string(d.Behind) + ")"
	}
	if d.Loss != "" && d.TelemetryLoss != nil {
		s += fmt.Sprintf(" (%s: %s)", d.Loss, plural(int(d.TelemetryLoss.Records), "record"))
	}
	return s
}

func deploymentsCmd(o *opts) *cobra.Command {
	cmd := &cobra.Command{Use: "deployments", Aliases: []string{"deployment", "dep"}, Short: "Register and inspect deployments"}
	var f apiclient.Filter
	var listLabels []string
	list := &cobra.Command{
		Use: "list", Short: "List deployments with status, release and last check-in", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if f.Labels, err = parseLabels("label", listLabels); err != nil {
				return err
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			ds, err := c.Deployments(cmd.Context(), f)
			if err != nil {
				return err
			}
			return o.print(cmd.OutOrStdout(), apitypes.DeploymentList{Items: nonNil(ds), Total: len(ds)}, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "ID\tCUSTOMER\tCLOUD\tREGION\tRELEASE\tSTATUS\tMODE\tLAST CHECK-IN")
				for _, d := range ds {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, d.Customer, d.Cloud, d.Region, dash(d.Release), statusCell(d), dash(string(d.Mode)), ago(d.LastCheckin))
				}
			})
		},
	}
	lf := list.Flags()
	lf.StringVar(&f.Status, "status", "", "only this status (healthy, unhealthy, updating, failed, stale, pending)")
	lf.StringVar(&f.Customer, "customer", "", "only this customer")
	lf.StringVar(&f.Cloud, "cloud", "", "only this cloud provider")
	lf.StringVar(&f.Region, "region", "", "only this region")
	lf.StringVar(&f.Release, "release", "", "only deployments running this release")
	lf.StringVar(&f.Stack, "stack", "", "only this stack")
	lf.StringVar(&f.Text, "text", "", "text in id, name or customer")
	lf.StringVar(&f.Behind, "behind", "", "only deployments behind: any (their desired release), latest (their stack's latest), or a reason")
	lf.StringVar(&f.Pinned, "pinned", "", "only pinned (true) or unpinned (false) deployments")
	lf.StringArrayVar(&listLabels, "label", nil, "only deployments with this label, key=value (repeatable)")

	var nd apitypes.NewDeployment
	var labels []string
	create := &cobra.Command{
		Use: "create [ID]", Short: "Register a deployment and print its agent token (shown once)", Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			if len(args) == 1 {
				nd.ID = args[0]
			}
			nd.Labels = map[string]string{}
			for _, l := range labels {
				k, v, ok := strings.Cut(l, "=")
				if !ok {
					return fmt.Errorf("--label %q: want key=value", l)
				}
				nd.Labels[k] = v
			}
			d, err := c.CreateDeployment(cmd.Context(), nd)
			if err != nil {
				return err
			}
			// On stderr, so -o json stays one JSON value and a script still sees them.
			for _, w := range d.Warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning:", w)
			}
			return o.print(cmd.OutOrStdout(), d, func(tw *tabwriter.Writer) {
				fmt.Fprintf(tw, "Deployment %s created for customer %s.\n\nAgent token (shown only now):\n\n    %s\n\nRun the agent with:\n\n    periscope agent --manager %s --token %s --release <version>\n",
					d.ID, d.Customer, d.Token, c.Base, d.Token)
			})
		},
	}
	cf := create.Flags()
	cf.StringVar(&nd.Name, "name", "", "display name")
	cf.StringVar(&nd.Customer, "customer", "", "customer label")
	cf.StringVar(&nd.Stack, "stack", "", "stack (product) name")
	cf.StringVar(&nd.Cloud, "cloud", "", "cloud provider, if known before the agent reports it")
	cf.StringVar(&nd.Region, "region", "", "region, if known before the agent reports it")
	cf.StringVar(&nd.Platform, "platform", "", "platform, if known before the agent reports it")
	cf.StringArrayVar(&labels, "label", nil, "label key=value (repeatable)")

	show := &cobra.Command{
		Use: "show ID", Short: "Show one deployment and its recent status history", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			d, err := c.Deployment(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			evs, err := c.Events(cmd.Context(), args[0], 10)
			if err != nil {
				return err
			}
			out := struct {
				apitypes.Deployment
				History []apitypes.Event `json:"history"`
			}{d, evs}
			return o.print(cmd.OutOrStdout(), out, func(tw *tabwriter.Writer) {
				row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
				row("ID", d.ID)
				row("Name", d.Name)
				row("Customer", d.Customer)
				row("Stack", dash(d.Stack))
				row("Where", fmt.Sprintf("%s / %s / %s", dash(d.Cloud), dash(d.Region), dash(d.Platform)))
				row("Status", statusCell(d))
				if d.StatusReason != "" {
					row("Reason", d.StatusReason)
				}
				row("Release", fmt.Sprintf("%s (desired %s, latest %s)", dash(d.Release), dash(d.DesiredRelease), dash(d.LatestRelease)))
				if d.PreviousRelease != "" {
					row("Previous release", d.PreviousRelease)
				}
				if d.Pin != nil {
					row("Pin", fmt.Sprintf("%s by %s at %s: %s", d.Pin.Release, dash(d.Pin.By), d.Pin.At.Local().Format(time.RFC3339), dash(d.Pin.Reason)))
				}
				if d.VersionsBehind > 0 && d.SupersededAt != nil {
					row("Behind latest", fmt.Sprintf("%s, the first published %s", plural(d.VersionsBehind, "newer release"), d.SupersededAt.Local().Format(time.RFC3339)))
				}
				if d.Regression != nil {
					row("Regression", d.Regression.Summary())
				}
				switch {
				case d.LossReason != "":
					row("Telemetry loss", d.LossReason)
				case d.TelemetryLoss != nil:
					row("Telemetry loss", fmt.Sprintf("%s dropped in all, the last at %s", plural(int(d.TelemetryLoss.Records), "record"),
						d.TelemetryLoss.LastAt.Local().Format(time.RFC3339)))
				}
				if d.NextPollExpected != nil {
					row("Next poll", d.NextPollExpected.Local().Format(time.RFC3339))
				}
				row("Mode", fmt.Sprintf("%s (connected: %v)", dash(string(d.Mode)), d.Connected))
				row("Last check-in", ago(d.LastCheckin))
				row("Agent", fmt.Sprintf("%s, instance %s", dash(d.AgentVersion), dash(d.AgentInstanceUID)))
				row("Config hash", dash(d.ConfigHash))
				if d.TokenState != apitypes.TokenActive {
					row("Agent token", tokenCell(d))
				}
				names := make([]string, 0, len(d.Health.Components))
				for n := range d.Health.Components {
					names = append(names, n)
				}
				sort.Strings(names)
				for _, n := range names {
					ch := d.Health.Components[n]
					state := "up"
					if !ch.Healthy {
						state = "DOWN " + ch.LastError
					}
					row("  component "+n, state)
				}
				fmt.Fprintln(tw, "\nHISTORY\t")
				for _, e := range evs {
					fmt.Fprintf(tw, "%s\t%s → %s %s\n", e.At.Local().Format(time.RFC3339), dash(string(e.From)), e.To, e.Reason)
				}
			})
		},
	}
	cmd.AddCommand(list, create, show)
	cmd.AddCommand(deploymentTokenCmds(o)...)
	cmd.AddCommand(thresholdsCmd(o))
	return cmd
}

func releasesCmd(o *opts) *cobra.Command {
	cmd := &cobra.Command{Use: "releases", Aliases: []string{"release"}, Short: "Publish and list releases"}
	var stack string
	list := &cobra.Command{
		Use: "list", Short: "List releases with how many deployments run each", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			rs, err := c.Releases(cmd.Context(), stack)
			if err != nil {
				return err
			}
			return o.printList(cmd.OutOrStdout(), rs, func(tw *tabwriter.Writer) {
				fmt.Fprintln(tw, "STACK\tVERSION\tLATEST\tDEPLOYMENTS\tCREATED\tNOTES")
				for _, r := range rs {
					latest := ""
					if r.Latest {
						latest = "yes"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", r.Stack, r.Version, latest, r.Deployments, r.CreatedAt.Local().Format(time.RFC3339), r.Notes)
				}
			})
		},
	}
	list.Flags().StringVar(&stack, "stack", "", "only this stack")
	var nr apitypes.NewRelease
	var commandsFile string
	create := &cobra.Command{
		Use: "create VERSION", Short: "Publish a release of a stack", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if commandsFile != "" {
				specs, err := readCommands(commandsFile)
				if err != nil {
					return err
				}
				nr.Commands = specs
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			nr.Version = args[0]
			r, err := c.CreateRelease(cmd.Context(), nr)
			if err != nil {
				return err
			}
			return o.print(cmd.OutOrStdout(), r, func(tw *tabwriter.Writer) {
				fmt.Fprintf(tw, "Release %s of %s published (latest: %v).\n", r.Version, r.Stack, r.Latest)
				if nr.Urgent {
					fmt.Fprintln(tw, "Urgent: it ignores customers' update windows; the audit log has why.")
				}
				if len(r.Commands) > 0 {
					fmt.Fprintf(tw, "Declares %s: %s.\n", plural(len(r.Commands), "command"), strings.Join(remote.Names(r.Commands), ", "))
				}
			})
		},
	}
	create.Flags().StringVar(&nr.Stack, "stack", "", "stack (product) name (required)")
	create.Flags().StringVar(&nr.Notes, "notes", "", "release notes")
	create.Flags().StringVar(&commandsFile, "commands", "", "YAML or JSON file of the remote commands the release declares")
	create.Flags().BoolVar(&nr.Urgent, "urgent", false, "ignore customers' update windows, with or without a rollout plan (needs --reason)")
	create.Flags().StringVar(&nr.Reason, "reason", "", "why the release is urgent (required with --urgent; it goes into the audit log)")
	create.MarkFlagRequired("stack")
	cmd.AddCommand(list, create, releaseRolloutCmd(o), adoptionCmd(o))
	return cmd
}

func statusCmd(o *opts) *cobra.Command {
	return &cobra.Command{
		Use: "status", Short: "Fleet summary: deployments by status and by release", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			s, err := c.Summary(cmd.Context(), apiclient.Filter{})
			if err != nil {
				return err
			}
			return o.print(cmd.OutOrStdout(), s, func(tw *tabwriter.Writer) {
				fmt.Fprintf(tw, "%s\t\n\nSTATUS\tCOUNT\n", plural(s.Total, "deployment"))
				for _, st := range []string{"healthy", "unhealthy", "updating", "failed", "stale", "pending"} {
					fmt.Fprintf(tw, "%s\t%d\n", st, s.ByStatus[fleet.Status(st)])
				}
				fmt.Fprintln(tw, "\nRELEASE\tCOUNT")
				rels := make([]string, 0, len(s.ByRelease))
				for r := range s.ByRelease {
					rels = append(rels, r)
				}
				sort.Strings(rels)
				for _, r := range rels {
					fmt.Fprintf(tw, "%s\t%d\n", dash(r), s.ByRelease[r])
				}
				if len(s.Behind) > 0 || s.Pinned > 0 {
					fmt.Fprintln(tw, "\nBEHIND\tCOUNT")
					for r, n := range s.Behind {
						fmt.Fprintf(tw, "%s\t%d\n", r, n)
					}
					if s.Pinned > 0 {
						fmt.Fprintf(tw, "pinned\t%d\n", s.Pinned)
					}
				}
			})
		},
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
