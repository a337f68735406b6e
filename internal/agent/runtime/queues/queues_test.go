package queues_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.uber.org/goleak"

	"github.com/periscope-dev/periscope/internal/agent/runtime"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// unique returns a name no other test run uses.
func unique(prefix string) string {
	return fmt.Sprintf("%s_%s", prefix, strings.ToLower(rand.Text()[:10]))
}

// series is a collected metric point keyed "<metric> <group>" (group empty for
// destination-wide figures).
type series map[string]float64

func collect(t *testing.T, src runtime.Source) (series, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ms := pmetric.NewMetricSlice()
	err := src.Collect(ctx, time.Now(), ms)
	out := series{}
	for _, m := range ms.All() {
		for _, dp := range m.Gauge().DataPoints().All() {
			key := m.Name()
			if g, ok := dp.Attributes().Get("messaging.consumer.group.name"); ok {
				key += " " + g.AsString()
			}
			if _, dup := out[key]; dup {
				t.Errorf("%s reported twice", key)
			}
			if dp.ValueType() == pmetric.NumberDataPointValueTypeDouble {
				out[key] = dp.DoubleValue()
			} else {
				out[key] = float64(dp.IntValue())
			}
			if _, ok := dp.Attributes().Get("messaging.system"); !ok {
				t.Errorf("%s has no messaging.system", key)
			}
		}
	}
	return out, err
}

func expect(t *testing.T, got series, want series) {
	t.Helper()
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
}
