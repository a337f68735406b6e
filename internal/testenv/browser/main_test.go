package browser_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a goroutine outlives its tests: the browser,
// its console reader and its tab all end with the test that started them.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
