package agent

import (
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// workloadEnv makes the test binary a workload the agent supervises: it dials
// the address in the variable, writes its pid and idles until it is stopped.
const workloadEnv = "AGENT_TEST_WORKLOAD"

// TestMain runs the workload when asked, and otherwise the tests, failing
// them if a goroutine outlives them: every goroutine the code starts must have
// an owner that stops it.
func TestMain(m *testing.M) {
	if addr := os.Getenv(workloadEnv); addr != "" {
		os.Exit(workload(addr))
	}
	goleak.VerifyTestMain(m)
}

func workload(addr string) int {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	fmt.Fprintln(c, os.Getpid())
	c.Close()
	for {
		time.Sleep(time.Hour)
	}
}
