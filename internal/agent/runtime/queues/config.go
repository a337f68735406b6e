package queues

import (
	"fmt"

	"github.com/periscope-dev/periscope/internal/agent/runtime"
	"github.com/periscope-dev/periscope/internal/config"
)

// FromConfig builds the source a validated config entry describes, with its
// credentials read from env (os.Environ form) under the names it gives.
func FromConfig(q config.QueueSource, env []string) (runtime.Source, error) {
	user, pass := q.Credentials(env)
	switch q.Kind {
	case config.QueueNATS:
		return &NATS{SourceName: q.SourceName(), URL: q.URL, Stream: q.Stream, Consumers: q.Consumers, User: user, Password: pass}, nil
	case config.QueueRedisStream:
		return &RedisStream{SourceName: q.SourceName(), URL: q.URL, Stream: q.Stream, Groups: q.Groups, User: user, Password: pass}, nil
	case config.QueueRabbitMQ:
		return &RabbitMQ{SourceName: q.SourceName(), URL: q.URL, Queue: q.Queue, ManagementURL: q.ManagementURL, User: user, Password: pass}, nil
	case config.QueueSQS:
		// sqsqueue imports this package's metric names, so it builds its own
		// sources: sqsqueue.FromConfig.
		return nil, fmt.Errorf("runtime.queues: source %s: build sqs sources with sqsqueue.FromConfig", q.SourceName())
	}
	return nil, fmt.Errorf("runtime.queues: source %s: kind %q is not supported", q.SourceName(), q.Kind)
}
