package queues

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

// RabbitMQ collects a queue's ready messages and consumers through AMQP's
// passive queue declare, which is all AMQP tells: unacknowledged messages
// (delivered, not yet acked) are known only to the management API
// (rabbitmq_management plugin), used when ManagementURL is set. The machine's
// RabbitMQ in our tests runs without that plugin, so the management path is
// tested against a recorded answer over HTTP.
type RabbitMQ struct {
	// SourceName is the source's name, "rabbitmq/<name>".
	SourceName string
	// URL is the server (amqp://host:5672/vhost).
	URL string
	// Queue is the queue's name.
	Queue string
	// ManagementURL, when set, is the management API (http://host:15672),
	// asked for the unacknowledged count.
	ManagementURL string
	// User and Password, when set, authenticate both connections (otherwise
	// AMQP uses the URL's, or guest).
	User, Password string
	// HTTP is the management API's client; nil means a plain one (the
	// collector's context bounds each request).
	HTTP *http.Client
}

// Name returns the source's name.
func (r *RabbitMQ) Name() string { return r.SourceName }

// Kind returns "rabbitmq".
func (r *RabbitMQ) Kind() string { return "rabbitmq" }

// Collect declares the queue passively (it is never created), then asks the
// management API when one is configured. Figures AMQP gave are kept when the
// management API fails, and the failure is the source's error.
func (r *RabbitMQ) Collect(ctx context.Context, now time.Time, ms pmetric.MetricSlice) error {
	u, err := url.Parse(r.URL)
	if err != nil {
		return fmt.Errorf("amqp url: %w", err)
	}
	if r.User != "" || r.Password != "" {
		u.User = url.UserPassword(r.User, r.Password)
	}
	conn, err := amqp.DialConfig(u.String(), amqp.Config{Dial: amqp.DefaultDial(timeoutOf(ctx)), Properties: amqp.Table{"connection_name": "periscope-agent"}})
	if err != nil {
		return fmt.Errorf("connect to rabbitmq: %w", err)
	}
	defer conn.Close()
	// amqp091 takes no context: closing the connection when ctx ends unblocks
	// a declare the server does not answer.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("rabbitmq channel: %w", err)
	}
	q, err := ch.QueueDeclarePassive(r.Queue, false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("queue %s: %w", r.Queue, err)
	}
	f := figures{ms: ms, now: now, system: "rabbitmq", destination: r.Queue}
	f.depth(int64(q.Messages))
	f.consumers(int64(q.Consumers))
	if r.ManagementURL == "" {
		return nil
	}
	vhost := strings.TrimPrefix(u.Path, "/")
	if vhost == "" {
		vhost = "/"
	}
	mq, err := r.management(ctx, vhost)
	if err != nil {
		return fmt.Errorf("management API (ready and consumers came from AMQP): %w", err)
	}
	f.unacked(mq.Unacked)
	return nil
}

// managementQueue is the part of GET /api/queues/{vhost}/{name} the source reads.
type managementQueue struct {
	Ready   int64 `json:"messages_ready"`
	Unacked int64 `json:"messages_unacknowledged"`
}

// maxManagementBytes bounds the management API's answer: one queue's JSON is
// a few kilobytes.
const maxManagementBytes = 1 << 20

func (r *RabbitMQ) management(ctx context.Context, vhost string) (managementQueue, error) {
	base := strings.TrimSuffix(r.ManagementURL, "/")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		base+"/api/queues/"+url.PathEscape(vhost)+"/"+url.PathEscape(r.Queue)+"?columns=messages_ready,messages_unacknowledged", nil)
	if err != nil {
		return managementQueue{}, err
	}
	user, pass := r.User, r.Password
	if user == "" && pass == "" {
		user, pass = "guest", "guest"
	}
	req.SetBasicAuth(user, pass)
	hc := r.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return managementQueue{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxManagementBytes+1))
	if err != nil {
		return managementQueue{}, fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return managementQueue{}, fmt.Errorf("answered %s", resp.Status)
	}
	return parseManagementQueue(body)
}

// parseManagementQueue reads the management API's answer for one queue.
func parseManagementQueue(body []byte) (managementQueue, error) {
	if len(body) > maxManagementBytes {
		return managementQueue{}, fmt.Errorf("answer larger than %d bytes", maxManagementBytes)
	}
	var q managementQueue
	if err := json.Unmarshal(body, &q); err != nil {
		return managementQueue{}, fmt.Errorf("decode answer: %w", err)
	}
	if q.Ready < 0 || q.Unacked < 0 {
		return managementQueue{}, fmt.Errorf("negative counts in answer")
	}
	return q, nil
}
