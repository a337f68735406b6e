// Package agentcmd is the "agent" command, shared by the periscope binary and the
// agent-only periscope-agent binary (which must not link the manager).
package agentcmd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/periscope-dev/periscope/internal/agent"
	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/config"
)

// New returns the agent command.
func New() *cobra.Command {
	var cfgFile string
	flags := config.DefaultAgent()
	var hb, updateTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the agent inside a customer deployment: check in and forward telemetry",
		Long: `Run the agent inside a customer deployment. It checks in with the manager over
OpAMP (WebSocket for push, HTTP polling for pull), reporting its release, cloud,
region, platform, health and effective configuration. It receives the local
application's OTLP logs, traces and metrics (gRPC 127.0.0.1:4317, HTTP
127.0.0.1:4318), tags them with the deployment context, queues them on disk and
forwards them to the manager.

When the manager offers another release, the agent applies it through the
vendor's hook: --update-command runs a shell command (a Go template with
{{.Release}}, {{.PreviousRelease}}, {{.Stack}} and {{.ConfigHash}}), or
--update-webhook POSTs the offer as JSON; --update-timeout bounds either. Without
a hook the deployment is shown as needing a manual redeploy. See docs/updates.md.

Every flag can also come from the config file (--config) or a PERISCOPE_*
variable (PERISCOPE_MANAGER, PERISCOPE_AGENT_TOKEN, PERISCOPE_RELEASE, ...). The
deployment token's variable is PERISCOPE_AGENT_TOKEN: PERISCOPE_TOKEN is the CLI's
operator token, which the agent never reads. A token the manager hands over when an
operator rotates it is kept in --data-dir and used from then on.

The agent keeps a record the customer can read of what it sent and what
redaction removed first (never the values), in --data-dir/record; "report"
summarises it for a time range.`,
		Example: "  periscope agent --manager https://periscope.vendor.example --token pdt_... --release 1.8.0",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := config.DefaultAgent()
			loadErr := config.Load(&cfg, cfgFile, os.Environ())
			f := cmd.Flags()
			for name, dst := range map[string]*string{"manager": &cfg.Manager, "token": &cfg.Token, "release": &cfg.Release,
				"cloud": &cfg.Cloud, "region": &cfg.Region, "platform": &cfg.Platform, "transport": &cfg.Transport,
				"data-dir": &cfg.DataDir, "log-level": &cfg.LogLevel, "otlp-grpc": &cfg.OTLPGRPC, "otlp-http": &cfg.OTLPHTTP,
				"compression": &cfg.Compression, "update-command": &cfg.Update.Command, "update-webhook": &cfg.Update.Webhook} {
				if f.Changed(name) {
					*dst, _ = f.GetString(name)
				}
			}
			if cfg.Token == "" {
				if err := misplacedToken(os.Environ()); err != nil {
					return err
				}
			}
			if f.Changed("heartbeat-interval") {
				cfg.HeartbeatInterval = config.Duration(hb)
			}
			if f.Changed("update-timeout") {
				cfg.Update.Timeout = config.Duration(updateTimeout)
			}
			if f.Changed("max-procs") {
				cfg.MaxProcs, _ = f.GetInt("max-procs")
			}
			if err := config.Finish(loadErr, cfgFile, &cfg); err != nil {
				return err
			}
			if cfg.MaxProcs > 0 {
				runtime.GOMAXPROCS(cfg.MaxProcs)
			}
			log := NewLogger(cfg.LogLevel)
			a, err := agent.New(cfg, agent.Settings{Logger: log})
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			g, gctx := errgroup.WithContext(ctx)
			if err := a.Start(gctx); err != nil {
				return err
			}
			g.Go(a.Wait)
			if addr, _ := f.GetString("pprof"); addr != "" {
				prof, err := startProfiler(addr)
				if err != nil {
					return errors.Join(err, a.Shutdown(context.WithoutCancel(ctx)))
				}
				g.Go(func() error { return prof.Serve(gctx) })
			}
			<-gctx.Done() // a signal, or a part that stopped on its own
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			log.Info("agent stopping")
			stopErr := a.Shutdown(sctx)
			return errors.Join(g.Wait(), stopErr)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfgFile, "config", "", "YAML config file")
	f.String("manager", "", "manager base URL, e.g. http://127.0.0.1:7070 (PERISCOPE_MANAGER)")
	f.String("token", "", "deployment token, pdt_… (PERISCOPE_AGENT_TOKEN)")
	f.String("release", "", "release version this deployment runs (PERISCOPE_RELEASE)")
	f.String("cloud", "", "cloud provider, e.g. aws, gcp, azure (detected when unset)")
	f.String("region", "", "cloud region (detected when unset)")
	f.String("platform", "", "platform, e.g. aws_ecs, kubernetes (detected when unset)")
	f.String("transport", flags.Transport, "websocket (push) or http (polling)")
	f.String("data-dir", flags.DataDir, "directory for the agent's identity and update state")
	f.DurationVar(&hb, "heartbeat-interval", time.Duration(flags.HeartbeatInterval), "how often to check in")
	f.String("log-level", flags.LogLevel, "debug, info, warn or error")
	f.String("otlp-grpc", flags.OTLPGRPC, "OTLP/gRPC address for the local application, or off (PERISCOPE_OTLP_GRPC)")
	f.String("otlp-http", flags.OTLPHTTP, "OTLP/HTTP address for the local application (also serves /metrics), or off (PERISCOPE_OTLP_HTTP)")
	f.String("compression", flags.Compression, "compression towards the manager: gzip, zstd or none")
	f.String("update-command", "", "shell command that moves the deployment to {{.Release}} (PERISCOPE_UPDATE_COMMAND)")
	f.String("update-webhook", "", "http(s) URL to POST a release offer to instead of a command (PERISCOPE_UPDATE_WEBHOOK)")
	f.DurationVar(&updateTimeout, "update-timeout", time.Duration(flags.Update.Timeout), "how long the update hook may run (PERISCOPE_UPDATE_TIMEOUT)")
	f.Int("max-procs", flags.MaxProcs, "CPUs the agent may use at once; 0 means all (PERISCOPE_MAX_PROCS)")
	f.String("pprof", "", "serve Go's /debug/pprof on this address (off when empty; for profiling only)")
	cmd.AddCommand(reportCmd(clock.Real{}))
	return cmd
}

// misplacedToken explains an agent started with no deployment token from a shell
// that holds the CLI's PERISCOPE_TOKEN, which the agent does not read.
func misplacedToken(env []string) error {
	for _, kv := range env {
		v, ok := strings.CutPrefix(kv, "PERISCOPE_TOKEN=")
		if !ok || v == "" {
			continue
		}
		if strings.HasPrefix(v, auth.PrefixAPI) {
			return fmt.Errorf("PERISCOPE_TOKEN holds an operator API token (%s…), which is the CLI's and which the agent does not read: "+
				"give the agent its deployment's token (%s…) with --token or PERISCOPE_AGENT_TOKEN", auth.PrefixAPI, auth.PrefixDeployment)
		}
		return errors.New("the agent reads its deployment token from --token or PERISCOPE_AGENT_TOKEN, not PERISCOPE_TOKEN (the CLI's operator token)")
	}
	return nil
}

// NewLogger returns a text logger on stderr at the named level. An unknown
// level logs at info and says nothing: the configuration's validation, which
// runs next, refuses it with every other problem, and a "using info" before
// that refusal only contradicts it.
func NewLogger(level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}
