package demo

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if a goroutine outlives them: stopping the
// demo must stop its manager, agents, command runners and sample service.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
