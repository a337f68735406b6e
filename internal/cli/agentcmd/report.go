package agentcmd

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/periscope-dev/periscope/internal/agent/record"
	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/config"
)

// reportCmd is "agent report": the local record of what the agent sent and
// removed, summarised for a time range. It reads the files directly, so it works
// whether the agent runs or not, and needs no manager or token.
func reportCmd(c clock.Clock) *cobra.Command {
	var cfgFile, dataDir, since, from, to string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Say what this agent sent to the manager and what it removed first",
		Long: `Summarise the agent's local record (<data_dir>/record) for a time range: the
batches the manager accepted (records by signal, bytes, destination) and what
redaction removed before sending (by detector and attribute key, never the
values themselves). The range is --since (default 24h) or --from and --to
(RFC 3339; --to defaults to now). --json prints the totals for machines.`,
		Example: "  periscope-agent report --data-dir /var/lib/periscope-agent --since 1h\n" +
			"  periscope-agent report --config agent.yaml --from 2026-12-05T10:00:00Z --to 2026-12-05T11:00:00Z --json",
		Args:         cobra.NoArgs,
		SilenceUsage: true, // its errors are about the record or the range, not the flags' spelling
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := config.DefaultAgent()
			if err := config.Load(&cfg, cfgFile, os.Environ()); err != nil {
				return err
			}
			if cmd.Flags().Changed("data-dir") {
				cfg.DataDir = dataDir
			}
			start, end, err := record.ParseRange(since, from, to, c.Now())
			if err != nil {
				return fmt.Errorf("report: %w", err)
			}
			dir := record.Dir(cfg.DataDir)
			s, err := record.Summarise(dir, start, end)
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("report: no record in %s: give the agent's --data-dir or --config (%w)", dir, err)
			}
			if err != nil {
				return fmt.Errorf("report: %w", err)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(s)
			}
			return s.WriteText(out)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfgFile, "config", "", "the agent's YAML config file, for its data_dir")
	f.StringVar(&dataDir, "data-dir", config.DefaultAgent().DataDir, "the agent's data directory (PERISCOPE_DATA_DIR)")
	f.StringVar(&since, "since", "", "how far back from now, e.g. 1h (default 24h)")
	f.StringVar(&from, "from", "", "start of the range, RFC 3339 (instead of --since)")
	f.StringVar(&to, "to", "", "end of the range, RFC 3339 (default now)")
	f.BoolVar(&asJSON, "json", false, "print the totals as JSON")
	cmd.MarkFlagsMutuallyExclusive("config", "data-dir")
	cmd.MarkFlagsMutuallyExclusive("since", "from")
	cmd.MarkFlagsMutuallyExclusive("since", "to")
	return cmd
}
