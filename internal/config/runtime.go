package config

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"time"
)

// Runtime configures the runtime signals the agent collects itself, without
// instrumentation in the vendor's service (docs/signals.md): each entry of a
// family list is one source, collected every Interval.
type Runtime struct {
	// Interval is the time between two collections of every source.
	Interval Duration `yaml:"interval" env:"INTERVAL"`
	// Timeout bounds one source's collection; one that overruns it counts as
	// failed for that round.
	Timeout Duration `yaml:"timeout" env:"TIMEOUT"`
	// Queues are the message queues and streams whose depth and consumer lag
	// are collected.
	Queues []QueueSource `yaml:"queues"`
	// Storage are the buckets, databases, KV servers and volumes whose usage
	// is collected.
	Storage []StorageSource `yaml:"storage"`
	// Ingress are the reverse proxies the agent runs in front of the
	// ingress-facing services, recording their HTTP traffic.
	Ingress []IngressProxy `yaml:"ingress"`
	// Workloads are the programs the agent runs and supervises as processes,
	// reporting each replica's health (docs/signals.md, "Workloads").
	Workloads []Workload `yaml:"workloads"`
	// Containers are the Docker engines and Kubernetes namespaces whose
	// containers' health is watched (docs/signals.md, "Containers").
	Containers []ContainerSource `yaml:"containers"`
}

// Kinds of QueueSource.
const (
	QueueNATS        = "nats"
	QueueRedisStream = "redis-stream"
	QueueRabbitMQ    = "rabbitmq"
	QueueSQS         = "sqs"
)

// QueueSource is one queue or stream to watch. Which fields apply depends on
// Kind:
//
//	nats:          url (nats://host:4222), stream, consumers (all when empty)
//	redis-stream:  url (redis://host:6379/0), stream (the key), groups (all when empty)
//	rabbitmq:      url (amqp://host:5672/vhost), queue, management_url (optional)
//	sqs:           url (the endpoint, empty for AWS), queue (its URL or name), region
//
// Credentials are read from the environment variables named by username_env
// and password_env (for sqs: the access key id and the secret key), never
// written in the file, which is often shared; a URL holding a password is
// refused.
type QueueSource struct {
	// Kind is nats, redis-stream, rabbitmq or sqs.
	Kind string `yaml:"kind"`
	// Name identifies the source in metrics and health, as "<kind>/<name>".
	Name string `yaml:"name"`
	// URL is the server's address.
	URL string `yaml:"url"`
	// Stream is the JetStream stream or the Redis stream's key.
	Stream string `yaml:"stream"`
	// Consumers are the JetStream consumers whose lag is collected.
	Consumers []string `yaml:"consumers"`
	// Groups are the Redis stream's consumer groups whose lag is collected.
	Groups []string `yaml:"groups"`
	// Queue is the RabbitMQ queue, or the SQS queue's URL or name.
	Queue string `yaml:"queue"`
	// ManagementURL is RabbitMQ's management API (http://host:15672), which
	// alone knows unacknowledged messages.
	ManagementURL string `yaml:"management_url"`
	// Region is the SQS queue's region.
	Region string `yaml:"region"`
	// UsernameEnv and PasswordEnv name environment variables holding the
	// credentials.
	UsernameEnv string `yaml:"username_env"`
	PasswordEnv string `yaml:"password_env"`
}

// SourceName is the source's name in metrics and health: "<kind>/<name>".
func (q QueueSource) SourceName() string { return q.Kind + "/" + q.Name }

// Credentials returns the username and password from the environment (os.Environ
// form) under the configured variable names; unset names give empty values.
func (q QueueSource) Credentials(env []string) (user, password string) {
	return credentials(env, q.UsernameEnv, q.PasswordEnv)
}

// DefaultRuntime returns the runtime-signal defaults: no source, every 30s.
func DefaultRuntime() Runtime {
	return Runtime{Interval: Duration(30 * time.Second), Timeout: Duration(10 * time.Second)}
}

// maxSources bounds each family's list: every source is collected every
// interval, and a list in the thousands is a mistake, not a deployment.
const maxSources = 256

// Validate reports every problem of the runtime section, each naming its
// field (runtime.storage[2].bucket), as Agent.Validate does.
func (r Runtime) Validate() error { return r.validate("runtime") }

func (r Runtime) validate(field string) error {
	var errs []error
	if r.Interval <= 0 {
		errs = append(errs, fmt.Errorf("%s.interval: must be positive, got %s", field, time.Duration(r.Interval)))
	}
	if r.Timeout <= 0 || r.Timeout > r.Interval {
		errs = append(errs, fmt.Errorf("%s.timeout: %s must be positive and at most the interval", field, time.Duration(r.Timeout)))
	}
	if len(r.Queues) > maxSources {
		errs = append(errs, fmt.Errorf("%s.queues: %d sources, at most %d", field, len(r.Queues), maxSources))
	}
	if len(r.Storage) > maxSources {
		errs = append(errs, fmt.Errorf("%s.storage: %d sources, at most %d", field, len(r.Storage), maxSources))
	}
	if len(r.Ingress) > maxSources {
		errs = append(errs, fmt.Errorf("%s.ingress: %d proxies, at most %d", field, len(r.Ingress), maxSources))
	}
	if len(r.Containers) > maxSources {
		errs = append(errs, fmt.Errorf("%s.containers: %d sources, at most %d", field, len(r.Containers), maxSources))
	}
	// Names are unique per kind: the kinds differ between families, so the
	// collector's "<kind>/<name>" stays unique across them.
	names := map[string]bool{}
	unique := func(f, kind, name string) {
		if names[kind+"/"+name] {
			errs = append(errs, fmt.Errorf("%s.name: %q is used twice for %s", f, clip(name, 120), clip(kind, 64)))
		}
		names[kind+"/"+name] = true
	}
	for i, q := range r.Queues {
		f := fmt.Sprintf("%s.queues[%d]", field, i)
		errs = append(errs, q.validate(f))
		unique(f, q.Kind, q.Name)
	}
	for i, s := range r.Storage {
		f := fmt.Sprintf("%s.storage[%d]", field, i)
		errs = append(errs, s.Validate(f))
		unique(f, s.Kind, s.Name)
	}
	listens := map[string]bool{}
	for i, p := range r.Ingress {
		f := fmt.Sprintf("%s.ingress[%d]", field, i)
		errs = append(errs, p.Validate(f))
		unique(f, "ingress", p.Name)
		if _, port, _ := net.SplitHostPort(p.Listen); port != "0" && listens[p.Listen] {
			errs = append(errs, fmt.Errorf("%s.listen: %q is used twice", f, clip(p.Listen, 120)))
		}
		listens[p.Listen] = true
	}
	for i, c := range r.Containers {
		f := fmt.Sprintf("%s.containers[%d]", field, i)
		errs = append(errs, c.Validate(f))
		unique(f, c.Kind, c.Name)
	}
	errs = append(errs, ValidateWorkloads(field+".workloads", r.Workloads))
	return errors.Join(errs...)
}

func (q QueueSource) validate(f string) error {
	errs := validSource(f, q.Name, q.UsernameEnv, q.PasswordEnv)
	// Which optional fields each kind reads; one set for another kind is a
	// mistake (a queue: on a nats entry was meant for another entry).
	set := map[string]bool{"stream": q.Stream != "", "consumers": len(q.Consumers) > 0, "groups": len(q.Groups) > 0,
		"queue": q.Queue != "", "management_url": q.ManagementURL != "", "region": q.Region != ""}
	var applies, required []string
	switch q.Kind {
	case QueueNATS:
		errs = append(errs, validServerURL(f+".url", q.URL, "nats", "tls"))
		applies, required = []string{"stream", "consumers"}, []string{"stream"}
	case QueueRedisStream:
		errs = append(errs, validServerURL(f+".url", q.URL, "redis", "rediss"))
		applies, required = []string{"stream", "groups"}, []string{"stream"}
	case QueueRabbitMQ:
		errs = append(errs, validServerURL(f+".url", q.URL, "amqp", "amqps"))
		if q.ManagementURL != "" {
			errs = append(errs, validServerURL(f+".management_url", q.ManagementURL, "http", "https"))
		}
		applies, required = []string{"queue", "management_url"}, []string{"queue"}
	case QueueSQS:
		if q.URL != "" {
			errs = append(errs, validServerURL(f+".url", q.URL, "http", "https"))
		}
		applies, required = []string{"queue", "region"}, []string{"queue", "region"}
	default:
		return errors.Join(append(errs, fmt.Errorf("%s.kind: %q must be nats, redis-stream, rabbitmq or sqs", f, q.Kind))...)
	}
	for _, name := range required {
		if !set[name] {
			errs = append(errs, fmt.Errorf("%s.%s: must be set for %s", f, name, q.Kind))
		}
	}
	for _, name := range []string{"stream", "consumers", "groups", "queue", "management_url", "region"} {
		if set[name] && !slices.Contains(applies, name) {
			errs = append(errs, fmt.Errorf("%s.%s: does not apply to %s", f, name, q.Kind))
		}
	}
	for i, c := range q.Consumers {
		if c == "" || len(c) > 256 {
			errs = append(errs, fmt.Errorf("%s.consumers[%d]: must be 1 to 256 characters", f, i))
		}
	}
	for i, g := range q.Groups {
		if g == "" || len(g) > 256 {
			errs = append(errs, fmt.Errorf("%s.groups[%d]: must be 1 to 256 characters", f, i))
		}
	}
	return errors.Join(errs...)
}
