package commands

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// helperEnv makes the test binary act as a command's executable: the tests
// declare it (an absolute path, fixed arguments) and the runner runs it as a
// real process.
const helperEnv = "COMMANDS_TEST_HELPER"

// readyEnv names a FIFO the sleeping helper writes a line to once it runs.
const readyEnv = "COMMANDS_TEST_READY"

// runsEnv names a file the helper appends its pid to on every run, so a test
// can count runs and end what a killed agent left behind.
const runsEnv = "COMMANDS_TEST_RUNS"

// TestMain runs the helper when asked, and otherwise the tests, failing them
// if a goroutine outlives them.
func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(helper(os.Args[1:]))
	}
	goleak.VerifyTestMain(m)
}

func helper(args []string) int {
	if p := os.Getenv(runsEnv); p != "" {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err == nil {
			fmt.Fprintln(f, os.Getpid())
			f.Close()
		}
	}
	mode := ""
	if len(args) > 0 {
		mode = args[0]
	}
	switch mode {
	case "env":
		var vars []string
		for _, kv := range os.Environ() {
			if strings.HasPrefix(kv, "PERISCOPE_") {
				vars = append(vars, kv)
			}
		}
		sort.Strings(vars)
		fmt.Println(strings.Join(vars, "\n"))
	case "stdin":
		_, _ = io.Copy(os.Stdout, os.Stdin)
	case "big":
		fmt.Print(strings.Repeat("a", 100000))
	case "secret":
		fmt.Println("connecting to postgres://app:hunter2@db.internal:5432/orders")
		fmt.Println("dsn: host=db user=app password=hunter2 dbname=orders")
		fmt.Println("aws key AKIAIOSFODNN7EXAMPLE in use")
		fmt.Println("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlc2lnbmF0dXJl")
		fmt.Println("rows: 42")
	case "exit3":
		fmt.Fprintln(os.Stderr, "no such table")
		return 3
	case "sleep":
		fmt.Println("sleeping")
		if p := os.Getenv(readyEnv); p != "" {
			if f, err := os.OpenFile(p, os.O_WRONLY, 0); err == nil {
				fmt.Fprintln(f, "ready")
				f.Close()
			}
		}
		// The test kills it (that is what is under test); should the agent
		// that ran it be killed instead, it ends with it.
		parent := os.Getppid()
		for os.Getppid() == parent {
			time.Sleep(50 * time.Millisecond)
		}
	default:
		fmt.Fprintln(os.Stderr, "unknown helper mode", mode)
		return 2
	}
	return 0
}
