// Package sqsqueue collects an SQS or SQS-compatible queue's approximate
// counts through the AWS SDK: ApproximateNumberOfMessages (visible),
// …NotVisible (received, not yet deleted) and …Delayed. SQS does not tell the
// age of the oldest message through its API (only CloudWatch does), so none is
// reported.
//
// No SQS-compatible server could run in our tests (goaws speaks only the query
// protocol, which this SDK no longer sends; nothing in Debian serves SQS), so
// only the failure path is tested, against a closed port; a test runs against
// a real endpoint when PERISCOPE_TEST_SQS_ENDPOINT is set.
//
// It is a package of its own so the other queue sources do not link the AWS
// SDK into their tests; the agent links it for `kind: sqs`.
package sqsqueue

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"go.opentelemetry.io/collector/pdata/pmetric"

	"github.com/periscope-dev/periscope/internal/config"

	"github.com/periscope-dev/periscope/internal/agent/runtime"
	"github.com/periscope-dev/periscope/internal/agent/runtime/queues"
)

// Metric names only SQS reports, beside queues.MetricDepth (visible messages)
// and queues.MetricUnacked (not visible: received and not deleted).
const (
	MetricDelayed = "periscope.queue.delayed"
)

// Source collects one SQS queue.
type Source struct {
	// SourceName is the source's name, "sqs/<name>".
	SourceName string
	// Endpoint is an SQS-compatible server's URL; empty means AWS.
	Endpoint string
	// Region is the queue's region.
	Region string
	// Queue is the queue's URL, or its name, looked up with GetQueueUrl.
	Queue string
	// AccessKeyID and SecretAccessKey sign the requests.
	AccessKeyID, SecretAccessKey string
}

// Name returns the source's name.
func (s *Source) Name() string { return s.SourceName }

// Kind returns "sqs".
func (s *Source) Kind() string { return "sqs" }

// Collect asks for the queue's approximate counts.
func (s *Source) Collect(ctx context.Context, now time.Time, ms pmetric.MetricSlice) error {
	if s.AccessKeyID == "" || s.SecretAccessKey == "" {
		return errors.New("no credentials: name the variables holding the access key id and secret in username_env and password_env")
	}
	client := sqs.New(sqs.Options{
		Region:      s.Region,
		Credentials: aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider(s.AccessKeyID, s.SecretAccessKey, "")),
		// The collector runs again next round; the SDK's retries would outlast its timeout.
		Retryer: aws.NopRetryer{},
	}, func(o *sqs.Options) {
		if s.Endpoint != "" {
			o.BaseEndpoint = aws.String(s.Endpoint)
		}
	})
	queueURL := s.Queue
	if !strings.Contains(queueURL, "://") {
		out, err := client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(s.Queue)})
		if err != nil {
			return fmt.Errorf("queue %s: %w", s.Queue, err)
		}
		queueURL = aws.ToString(out.QueueUrl)
	}
	out, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(queueURL),
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameApproximateNumberOfMessages,
			types.QueueAttributeNameApproximateNumberOfMessagesNotVisible, types.QueueAttributeNameApproximateNumberOfMessagesDelayed}})
	if err != nil {
		return fmt.Errorf("queue %s attributes: %w", s.Queue, err)
	}
	name := s.Queue
	if i := strings.LastIndex(name, "/"); i >= 0 {
		name = name[i+1:]
	}
	var errs []error
	for _, f := range []struct {
		attr         types.QueueAttributeName
		metric, desc string
	}{
		{types.QueueAttributeNameApproximateNumberOfMessages, queues.MetricDepth, "Messages in the queue (SQS: visible, approximate)."},
		{types.QueueAttributeNameApproximateNumberOfMessagesNotVisible, queues.MetricUnacked, "Messages received and not yet deleted (approximate)."},
		{types.QueueAttributeNameApproximateNumberOfMessagesDelayed, MetricDelayed, "Messages delayed, not yet visible (approximate)."},
	} {
		raw, ok := out.Attributes[string(f.attr)]
		if !ok {
			continue // a compatible server that does not keep the figure
		}
		v, err := strconv.ParseInt(raw, 10, 64)
		if err != nil || v < 0 {
			errs = append(errs, fmt.Errorf("%s: %q is not a count", f.attr, runtime.Bounded(raw, 32)))
			continue
		}
		runtime.Point(runtime.Gauge(ms, f.metric, "{messages}", f.desc), now, v,
			queues.AttrSystem, "aws_sqs", queues.AttrDestination, name)
	}
	return errors.Join(errs...)
}

// FromConfig builds the source a validated `kind: sqs` config entry
// describes, with its credentials read from env under the names it gives.
func FromConfig(q config.QueueSource, env []string) *Source {
	user, pass := q.Credentials(env)
	return &Source{SourceName: q.SourceName(), Endpoint: q.URL, Region: q.Region, Queue: q.Queue, AccessKeyID: user, SecretAccessKey: pass}
}
