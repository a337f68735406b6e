package sampleapp

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"strings"
	"time"

	"github.com/periscope-dev/periscope/internal/clock"
	"github.com/periscope-dev/periscope/internal/config"
)

// Defaults of Config.
const (
	// DefaultExportInterval is how often the SDK providers export: short, so
	// the demo's pages move while one watches.
	DefaultExportInterval = 2 * time.Second
	// DefaultWorkerRate is how many orders per second the fulfilment worker
	// takes from the queue when Queue.Rate is unset: far more than the demo's
	// shoppers place, so a healthy deployment has no lag.
	DefaultWorkerRate = 20
	// DefaultQueueMaxMsgs bounds the order stream; the oldest orders are
	// discarded beyond it, so a stuck worker cannot fill the server.
	DefaultQueueMaxMsgs = 1000
	// DefaultBucketKeep is how many invoices an instance keeps in its bucket
	// before deleting its oldest, so the bucket's size stays bounded.
	DefaultBucketKeep = 200
	// DefaultConsumer is the fulfilment worker's durable consumer.
	DefaultConsumer = "fulfilment"
	// DefaultExportQueue bounds the spans and the log records the SDK
	// buffers between exports. The log processor allocates its whole queue
	// up front (about 600 bytes a record), so the SDK's default of 2048 cost
	// 1.25 MiB per instance; 256 holds two minutes of the demo's traffic.
	DefaultExportQueue = 256
)

// Config configures one instance of the sample service.
type Config struct {
	// Deployment and Customer name where the instance runs, for its
	// operational log (and the deployment for its service.instance.id); the
	// agent adds the authoritative context to its telemetry itself.
	Deployment, Customer string
	// Release is the version the instance runs (service.version); Faults
	// name releases.
	Release string
	// OTLPEndpoint is the agent's OTLP/HTTP base URL (http://127.0.0.1:4318);
	// the SDK posts to its /v1/traces, /v1/logs and /v1/metrics.
	OTLPEndpoint string
	// OTLPHeaders are sent with every export request (none by default).
	OTLPHeaders map[string]string
	// ExportInterval is how often logs, spans and metrics are exported;
	// DefaultExportInterval when zero.
	ExportInterval time.Duration
	// ExportQueue bounds the spans and the log records buffered between
	// exports (each; an export takes at most half of it); beyond it the SDK
	// drops what does not fit. DefaultExportQueue when zero.
	ExportQueue int
	// Listen is the service's HTTP address; 127.0.0.1:0 when empty.
	Listen string
	// Faults are the functions a release breaks.
	Faults []Fault
	// Queue is the order queue; disabled when Queue.URL is empty.
	Queue Queue
	// Bucket is the invoice bucket; disabled when Bucket.Endpoint is empty.
	Bucket Bucket
	// Clock stamps spans and logs; the wall clock when nil. Waits (added
	// latency, the worker's pace) use real timers.
	Clock clock.Clock
	// Rand draws which calls of a faulty function fail and seeds the ids
	// the service makes (trace, span, order ids); nil means a source seeded
	// from the clock. Only the instance uses it after New.
	Rand *rand.Rand
	// Logger receives the service's own operational messages (not its
	// OpenTelemetry logs); discarded when nil.
	Logger *slog.Logger
}

// Fault is how a release breaks one function.
type Fault struct {
	// Release is the release that carries the fault.
	Release string
	// Function is the broken function (one of Functions).
	Function string
	// ErrorShare is the share of the function's calls that fail, 0 to 1.
	ErrorShare float64
	// Latency is added to every call of the function.
	Latency time.Duration
	// LogText is the error log's message when a call fails: the recognisable
	// pattern an operator finds in the logs.
	LogText string
}

// Queue is the NATS JetStream stream each checkout publishes an order to and
// the worker that fulfils them.
type Queue struct {
	// URL is the NATS server (nats://127.0.0.1:4222).
	URL string
	// Stream and Subject name the stream and the subject orders are published
	// on; "ORDERS" and "<stream in lower case>.placed" when empty. Streams on
	// one server need subjects of their own: give each deployment a stream.
	Stream, Subject string
	// Consumer is the worker's durable consumer; DefaultConsumer when empty.
	Consumer string
	// Rate is how many orders per second the worker fulfils;
	// DefaultWorkerRate when zero. A rate below the checkout rate makes the
	// consumer's lag grow.
	Rate float64
	// MaxMsgs bounds the stream; DefaultQueueMaxMsgs when zero.
	MaxMsgs int64
}

// Bucket is the S3 bucket each checkout writes an invoice to.
type Bucket struct {
	// Endpoint is the S3-compatible server (http://127.0.0.1:9000); buckets
	// are addressed in the path.
	Endpoint string
	// Name is the bucket; created when missing.
	Name string
	// Region is us-east-1 when empty.
	Region string
	// AccessKeyID and SecretAccessKey sign the requests.
	AccessKeyID, SecretAccessKey string
	// Keep is how many invoices the instance keeps before deleting its
	// oldest; DefaultBucketKeep when zero.
	Keep int
}

// Functions are the named functions the service runs, each a span with
// code.function.name set, which the manager groups by.
var Functions = []string{
	FnCatalogList, FnCartLoad, FnApplyDiscount, FnVerifyPassword,
	FnInventoryReserve, FnPaymentsCharge, FnInvoiceStore, FnOrdersPublish, FnOrdersFulfil,
}

// The service's functions.
const (
	FnCatalogList      = "catalog.list"
	FnCartLoad         = "cart.load"
	FnApplyDiscount    = "pricing.apply-discount"
	FnVerifyPassword   = "auth.verify-password"
	FnInventoryReserve = "inventory.reserve"
	FnPaymentsCharge   = "payments.charge"
	FnInvoiceStore     = "invoice.store"
	FnOrdersPublish    = "orders.publish"
	FnOrdersFulfil     = "orders.fulfil"
)

// ServiceName is the service's service.name.
const ServiceName = "lighthouse-shop"

// Routes are the service's HTTP route templates, for the agent's ingress
// proxy configuration.
var Routes = []string{"/products", "/cart", "/login", "/checkout"}

// withDefaults returns cfg with its unset fields filled in.
func (cfg Config) withDefaults() Config {
	if cfg.ExportInterval == 0 {
		cfg.ExportInterval = DefaultExportInterval
	}
	if cfg.ExportQueue == 0 {
		cfg.ExportQueue = DefaultExportQueue
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	cfg.Clock = clock.Or(cfg.Clock)
	if cfg.Rand == nil {
		seed := uint64(cfg.Clock.Now().UnixNano())
		cfg.Rand = rand.New(rand.NewPCG(seed, seed>>1|1))
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	q := &cfg.Queue
	if q.Stream == "" {
		q.Stream = "ORDERS"
	}
	if q.Subject == "" {
		// Streams on one server may not share subjects: each deployment's
		// stream gets its own.
		q.Subject = strings.ToLower(q.Stream) + ".placed"
	}
	if q.Consumer == "" {
		q.Consumer = DefaultConsumer
	}
	if q.Rate == 0 {
		q.Rate = DefaultWorkerRate
	}
	if q.MaxMsgs == 0 {
		q.MaxMsgs = DefaultQueueMaxMsgs
	}
	b := &cfg.Bucket
	if b.Region == "" {
		b.Region = "us-east-1"
	}
	if b.Keep == 0 {
		b.Keep = DefaultBucketKeep
	}
	return cfg
}

// validate reports every problem of a defaulted config at once.
func (cfg Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if cfg.Release == "" {
		bad("release: required")
	}
	if u, err := url.Parse(cfg.OTLPEndpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("otlp_endpoint: %q is not an http(s) URL", cfg.OTLPEndpoint)
	}
	if cfg.ExportInterval < 0 {
		bad("export_interval: must not be negative")
	}
	if cfg.ExportQueue < 2 {
		bad("export_queue: %d is below 2", cfg.ExportQueue)
	}
	known := map[string]bool{}
	for _, f := range Functions {
		known[f] = true
	}
	for i, f := range cfg.Faults {
		if f.Release == "" {
			bad("faults[%d].release: required", i)
		}
		if !known[f.Function] {
			bad("faults[%d].function: %q is not one of %s", i, f.Function, strings.Join(Functions, ", "))
		}
		if f.ErrorShare < 0 || f.ErrorShare > 1 {
			bad("faults[%d].error_share: %v is not between 0 and 1", i, f.ErrorShare)
		}
		if f.Latency < 0 {
			bad("faults[%d].latency: must not be negative", i)
		}
	}
	if cfg.Queue.URL != "" {
		if cfg.Queue.Rate < 0 {
			bad("queue.rate: must not be negative")
		}
		if cfg.Queue.MaxMsgs < 0 {
			bad("queue.max_msgs: must not be negative")
		}
	}
	if cfg.Bucket.Endpoint != "" {
		if cfg.Bucket.Name == "" {
			bad("bucket.name: required with an endpoint")
		}
		if cfg.Bucket.Keep < 0 {
			bad("bucket.keep: must not be negative")
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("sampleapp: %w", errors.Join(errs...))
	}
	return nil
}

// RuntimeSource is what the agent's runtime config needs to measure the
// order queue's depth and the worker's lag (config.Runtime.Queues), under the
// source name nats/<name>. Defaults apply as in the instance.
func (q Queue) RuntimeSource(name string) config.QueueSource {
	d := Config{Queue: q}.withDefaults().Queue
	return config.QueueSource{Kind: config.QueueNATS, Name: name, URL: d.URL, Stream: d.Stream, Consumers: []string{d.Consumer}}
}

// RuntimeSource is what the agent's runtime config needs to measure the
// invoice bucket (config.Runtime.Storage), under the source name s3/<name>.
// The agent reads the credentials from its environment under the names idEnv
// and secretEnv; with empty names it uses the standard AWS variables, else it
// reads the bucket unsigned, which the demo's embedded server accepts.
func (b Bucket) RuntimeSource(name, idEnv, secretEnv string) config.StorageSource {
	d := Config{Bucket: b}.withDefaults().Bucket
	return config.StorageSource{Kind: config.StorageS3, Name: name, URL: d.Endpoint, Bucket: d.Name, Region: d.Region,
		PathStyle: true, UsernameEnv: idEnv, PasswordEnv: secretEnv}
}
