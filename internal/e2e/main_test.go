package e2e

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if a goroutine outlives them: every goroutine
// the code starts must have an owner that stops it. Started with
// remoteCommandArg, the test binary is instead the executable a remote command
// declares (see commands_test.go); with supervisedArg, a supervised workload
// (see supervisor_test.go); with replicaArg, a manager replica (see
// replicas_test.go).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == remoteCommandArg {
		os.Exit(remoteCommand())
	}
	if len(os.Args) > 4 && os.Args[1] == replicaArg {
		os.Exit(runReplica(os.Args[2:]))
	}
	if len(os.Args) > 2 && os.Args[1] == supervisedArg {
		os.Exit(supervisedWorkload(os.Args[2]))
	}
	goleak.VerifyTestMain(m)
}
