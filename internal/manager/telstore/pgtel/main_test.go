package pgtel

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if a goroutine outlives them: every goroutine
// the code starts must have an owner that stops it.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
