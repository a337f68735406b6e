package deploy_test

import (
	"testing"

	"github.com/spf13/cobra"

	"github.com/periscope-dev/periscope/internal/cli"
	"github.com/periscope-dev/periscope/internal/cli/agentcmd"
	"github.com/periscope-dev/periscope/internal/config"
)

// program is one of the binaries the deployment files start, with the command
// its arguments must reach and the configuration it loads.
type program struct {
	// root builds the binary's command tree, as its main does.
	root func() *cobra.Command
	// command is the name of the command the arguments must select.
	command string
	// defaults returns a pointer to the configuration's defaults.
	defaults func() validator
}

type validator interface{ Validate() error }

var (
	managerProgram = program{root: cli.NewRoot, command: "manager",
		defaults: func() validator { c := config.DefaultManager(); return &c }}
	agentProgram = program{root: func() *cobra.Command {
		c := agentcmd.New()
		c.Use = "periscope-agent" // as cmd/periscope-agent names it
		return c
	}, command: "periscope-agent", defaults: func() validator { c := config.DefaultAgent(); return &c }}
)

// parse runs args through the real command tree as the binary would, without
// running the command, and returns the command they select with its flags set.
// An unknown subcommand or flag, a flag without its value or a stray argument
// fails the test.
func (p program) parse(t *testing.T, args []string) *cobra.Command {
	t.Helper()
	cmd, rest, err := p.root().Find(args)
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	if cmd.Name() != p.command || !cmd.Runnable() {
		t.Fatalf("%v selects %q, want the runnable command %q", args, cmd.CommandPath(), p.command)
	}
	if err := cmd.ParseFlags(rest); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	if err := cmd.ValidateArgs(cmd.Flags().Args()); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return cmd
}

// flagValue is the value args give the named string flag; it fails the test
// when args do not set it.
func (p program) flagValue(t *testing.T, args []string, name string) string {
	t.Helper()
	cmd := p.parse(t, args)
	if !cmd.Flags().Changed(name) {
		t.Fatalf("%v do not set --%s", args, name)
	}
	v, err := cmd.Flags().GetString(name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// loadValid loads the configuration file at path with env (os.Environ form)
// through the project's loader, as the binary does, and fails the test unless
// it loads and validates.
func (p program) loadValid(t *testing.T, path string, env []string) validator {
	t.Helper()
	cfg := p.defaults()
	if err := config.Load(cfg, path, env); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("%s is not a valid configuration:\n%v", path, err)
	}
	return cfg
}

// dataDirOf is the data directory of a loaded configuration.
func dataDirOf(cfg validator) string {
	switch c := cfg.(type) {
	case *config.Manager:
		return c.DataDir
	case *config.Agent:
		return c.DataDir
	}
	panic("unknown configuration type")
}
