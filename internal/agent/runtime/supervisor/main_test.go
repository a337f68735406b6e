package supervisor

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// helperEnv makes the test binary act as a workload: the tests declare it (an
// absolute path, a mode as its argument) and the supervisor runs it as a real
// process.
const helperEnv = "SUPERVISOR_TEST_HELPER"

// fifoEnv names a FIFO the helper writes a line to once it serves (or, for
// "stubborn", the pids of its group).
const fifoEnv = "SUPERVISOR_TEST_FIFO"

// upEnv names a file whose presence turns "crash" into "serve".
const upEnv = "SUPERVISOR_TEST_UP"

// TestMain runs the helper when asked, and otherwise the tests, failing them
// if a goroutine outlives them.
func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(helper(os.Args[1:]))
	}
	goleak.VerifyTestMain(m)
}

func helper(args []string) int {
	mode := ""
	if len(args) > 0 {
		mode = args[0]
	}
	switch mode {
	case "crash":
		if _, err := os.Stat(os.Getenv(upEnv)); err == nil {
			return serve()
		}
		fmt.Fprintln(os.Stderr, "connecting to db")
		fmt.Fprintln(os.Stderr, "db connection refused")
		return 3
	case "noisy":
		for i := range 30 {
			fmt.Fprintf(os.Stderr, "line %d %s\n", i, strings.Repeat("x", 100))
		}
		fmt.Fprintln(os.Stderr, "fatal: db connection refused (password hunter2)")
		return 3
	case "serve":
		return serve()
	case "exit":
		code, _ := strconv.Atoi(args[1])
		fmt.Fprintln(os.Stderr, "bye")
		return code
	case "idle":
		for {
			time.Sleep(time.Hour)
		}
	case "stubborn":
		// Ignores SIGTERM and leaves a child in its group that ignores it too:
		// only SIGKILL to the whole group ends both.
		signal.Ignore(syscall.SIGTERM)
		child := exec.Command(os.Args[0], "stubborn-child")
		child.Env = os.Environ()
		if err := child.Start(); err != nil {
			return 2
		}
		tell(fmt.Sprintf("%d %d", os.Getpid(), child.Process.Pid))
		for {
			time.Sleep(time.Hour)
		}
	case "stubborn-child":
		signal.Ignore(syscall.SIGTERM)
		for {
			time.Sleep(time.Hour)
		}
	}
	fmt.Fprintln(os.Stderr, "unknown helper mode", mode)
	return 2
}

// serve answers HTTP on 127.0.0.1:$PORT until a signal ends it.
func serve() int {
	ln, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 4
	}
	tell(fmt.Sprintf("serving %d", os.Getpid()))
	_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") }))
	return 0
}

// tell writes line to the test's FIFO, when it gave one.
func tell(line string) {
	if p := os.Getenv(fifoEnv); p != "" {
		if f, err := os.OpenFile(p, os.O_WRONLY, 0); err == nil {
			fmt.Fprintln(f, line)
			f.Close()
		}
	}
}
