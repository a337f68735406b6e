package sqsqueue_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.uber.org/goleak"

	"github.com/periscope-dev/periscope/internal/agent/runtime/queues"
	"github.com/periscope-dev/periscope/internal/agent/runtime/queues/sqsqueue"
	"github.com/periscope-dev/periscope/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestServerDownIsAnError(t *testing.T) {
	src := &sqsqueue.Source{SourceName: "sqs/down", Endpoint: "http://" + testenv.ClosedAddr(t), Region: "us-east-1",
		Queue: "exports", AccessKeyID: "id", SecretAccessKey: "secret"}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := src.Collect(ctx, time.Now(), pmetric.NewMetricSlice())
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("server down: %v", err)
	}
	src.AccessKeyID = ""
	if err := src.Collect(ctx, time.Now(), pmetric.NewMetricSlice()); err == nil || !strings.Contains(err.Error(), "no credentials") {
		t.Errorf("no credentials: %v", err)
	}
}

// TestRealEndpoint runs against an SQS-compatible server holding queue
// PERISCOPE_TEST_SQS_QUEUE, where one is reachable; none can run on our machines.
func TestRealEndpoint(t *testing.T) {
	endpoint, queue := os.Getenv("PERISCOPE_TEST_SQS_ENDPOINT"), os.Getenv("PERISCOPE_TEST_SQS_QUEUE")
	if endpoint == "" || queue == "" {
		t.Skip("no SQS-compatible server: set PERISCOPE_TEST_SQS_ENDPOINT and PERISCOPE_TEST_SQS_QUEUE")
	}
	src := &sqsqueue.Source{SourceName: "sqs/real", Endpoint: endpoint, Region: "us-east-1", Queue: queue,
		AccessKeyID: os.Getenv("AWS_ACCESS_KEY_ID"), SecretAccessKey: os.Getenv("AWS_SECRET_ACCESS_KEY")}
	ms := pmetric.NewMetricSlice()
	if err := src.Collect(context.Background(), time.Now(), ms); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, m := range ms.All() {
		found = found || m.Name() == queues.MetricDepth
	}
	if !found {
		t.Error("no depth reported")
	}
}
