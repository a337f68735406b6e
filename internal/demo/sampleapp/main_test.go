package sampleapp_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if a goroutine outlives them: Shutdown
// must stop the SDK providers, the worker and the queue connection.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
