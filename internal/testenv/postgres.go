package testenv

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresAddr is where the machine's PostgreSQL listens (trust
// authentication for the user postgres); .ci/run starts it.
const PostgresAddr = "127.0.0.1:5432"

// PostgresDatabase creates an empty database on the machine's PostgreSQL for
// one test, dropped (with any connection still open to it) when the test ends,
// and returns its URL. It skips the test (fails it under
// PERISCOPE_REQUIRE_INTEGRATION=1) when there is no PostgreSQL to use.
func PostgresDatabase(t testing.TB) string {
	t.Helper()
	Server(t, "PostgreSQL", PostgresAddr)
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, "postgres://postgres@"+PostgresAddr+"/postgres")
	if err != nil {
		SkipOrFail(t, "PostgreSQL at %s refuses the user postgres with trust authentication: %v", PostgresAddr, err)
		return ""
	}
	// The test's name says whose a leftover database was; the time keeps
	// concurrent runs apart. PostgreSQL cuts identifiers at 63 bytes.
	test := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, strings.ToLower(t.Name()))
	suffix := fmt.Sprintf("_%d", time.Now().UnixNano())
	name := "periscope_" + test
	name = name[:min(len(name), 63-len(suffix))] + suffix
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		admin.Close(ctx)
		t.Fatalf("create scratch database %s: %v", name, err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop scratch database %s: %v", name, err)
		}
		admin.Close(ctx)
	})
	return "postgres://postgres@" + PostgresAddr + "/" + name
}
