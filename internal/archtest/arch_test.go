package archtest

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/periscope-dev/periscope/"

// room names the part of the tree a package of this module belongs to.
func room(pkg string) string {
	p := strings.TrimPrefix(pkg, module)
	for _, r := range []string{"internal/agent", "internal/manager", "internal/cli", "internal/demo", "internal/e2e", "internal/archtest", "cmd", "bench"} {
		if p == r || strings.HasPrefix(p, r+"/") {
			return r
		}
	}
	return "floor"
}

// allowed says whether a package in room from may depend on one in room to.
func allowed(from, to string) bool {
	switch from {
	case "floor":
		return to == "floor"
	case "internal/agent":
		return to == "floor" || to == "internal/agent"
	case "internal/manager":
		return to == "floor" || to == "internal/manager"
	}
	return true // entry points, commands and benchmarks wire everything
}

// deps lists, for each package matching patterns, every package it links.
func deps(t *testing.T, env []string, args ...string) map[string][]string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-f", "{{.ImportPath}} {{join .Deps \" \"}}"}, args...)...)
	cmd.Dir = "../.."
	cmd.Env = append(cmd.Environ(), env...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %v: %v", args, err)
	}
	m := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		m[f[0]] = f[1:]
	}
	return m
}

func TestNoArrowRunsUpFromAFloorOrAcrossPrograms(t *testing.T) {
	all := deps(t, nil, "./...")
	if len(all) < 20 {
		t.Fatalf("go list found only %d packages", len(all))
	}
	for pkg, ds := range all {
		from := room(pkg)
		for _, d := range ds {
			if !strings.HasPrefix(d, module) {
				continue
			}
			if to := room(d); !allowed(from, to) {
				t.Errorf("%s (%s) links %s (%s)", strings.TrimPrefix(pkg, module), from, strings.TrimPrefix(d, module), to)
			}
		}
	}
}

func TestAgentBinaryLinksNothingOfTheManager(t *testing.T) {
	banned := []string{
		module + "internal/manager", module + "internal/store", module + "internal/cli/", module + "internal/demo",
		"github.com/duckdb/",
		// The demo's embedded NATS and S3 servers (internal/demo/infra) are
		// for the periscope binary only.
		"github.com/nats-io/nats-server/", "github.com/johannesboyne/gofakes3",
	}
	// The AWS SDK and pgx are pure Go and the agent needs them: its runtime
	// sources read SQS queues, S3 buckets and PostgreSQL databases in the
	// customer's cloud.
	// Matched exactly: the dashboard's templates, and grpc-go's server and client
	// (the agent serves OTLP/gRPC with its own server; pdata's *otlp helpers link it).
	exact := map[string]bool{"html/template": true, "google.golang.org/grpc": true}
	for pkg, ds := range deps(t, []string{"CGO_ENABLED=0"}, "./cmd/periscope-agent") {
		for _, d := range ds {
			if exact[d] {
				t.Errorf("%s links %s", pkg, d)
			}
			for _, b := range banned {
				if strings.HasPrefix(d, b) && !strings.HasPrefix(d, module+"internal/cli/agentcmd") {
					t.Errorf("%s links %s", pkg, d)
				}
			}
		}
	}
}

func TestAgentBuildsWithoutCgo(t *testing.T) {
	build := exec.Command("go", "build", "-o", t.TempDir()+"/periscope-agent", "./cmd/periscope-agent")
	build.Dir = "../.."
	build.Env = append(build.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 build failed: %v\n%s", err, out)
	}
}

func TestRoomsAreWhereTheArchitectureSaysTheyAre(t *testing.T) {
	for pkg, want := range map[string]string{
		module + "internal/agent/pipeline":   "internal/agent",
		module + "internal/manager/telstore": "internal/manager",
		module + "internal/store/duckdb":     "floor",
		module + "internal/otlp/receiver":    "floor",
		module + "internal/agentish":         "floor",
		module + "internal/cli/agentcmd":     "internal/cli",
	} {
		if got := room(pkg); got != want {
			t.Errorf("room(%s) = %s, want %s", pkg, got, want)
		}
	}
	for _, tc := range []struct {
		from, to string
		ok       bool
	}{
		{"floor", "internal/manager", false},
		{"internal/agent", "internal/manager", false},
		{"internal/manager", "internal/agent", false},
		{"internal/manager", "floor", true},
		{"internal/cli", "internal/manager", true},
	} {
		if got := allowed(tc.from, tc.to); got != tc.ok {
			t.Errorf("allowed(%s, %s) = %v, want %v", tc.from, tc.to, got, tc.ok)
		}
	}
}
