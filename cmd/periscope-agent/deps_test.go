package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestAgentLinksNothingOfTheManager keeps the agent small and pure Go: it runs in
// customers' clouds, built with CGO_ENABLED=0.
func TestAgentLinksNothingOfTheManager(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", ".")
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, banned := range []string{"github.com/duckdb/", "github.com/jackc/pgx", "github.com/aws/", "/internal/manager", "/internal/store", "/internal/registry", "/internal/api", "/internal/export", "/internal/ingest", "/internal/web"} {
		for _, dep := range strings.Fields(string(out)) {
			if strings.Contains(dep, banned) {
				t.Errorf("the agent depends on %s (via %q)", banned, dep)
			}
		}
	}
	build := exec.Command("go", "build", "-o", t.TempDir()+"/periscope-agent", ".")
	build.Env = append(build.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 build failed: %v\n%s", err, out)
	}
}
