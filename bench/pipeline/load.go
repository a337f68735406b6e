package main

import (
	"bytes"
	"fmt"
	"os/exec"
	"strings"
	"sync/atomic"
	"time"
)

// The load. With -load app (the default) the records look like an application's: every
// record carries the attributes a web service sets (method, route, status, URL, the
// statement it ran, an order id), and one telemetrygen worker in every -workers sends
// records that also carry personal data and secrets (e-mail addresses, client IPs, a
// card number, a phone number in a SQL literal, a query string with an e-mail, a JWT in
// an Authorization header, an API key, a password in a connection URL) in attributes and
// in the log body. Both systems get the same records, and both must remove all of it:
// the sink looks for each planted value in every request (sink.check). -load plain is
// the load of the earlier figures: one fixed log body and no attributes.

// loadKind is "app" or "plain".
var loadKind string

// loadPart is one telemetrygen process of the load.
type loadPart struct {
	// attrs are telemetrygen's --telemetry-attributes, set on every record.
	attrs []string
	// body is every log record's body.
	body string
}

// ordinary is what every record carries: operational data, nothing personal. The URL's
// query holds only paging and the statement only a placeholder, so a redactor that
// knows their structure leaves them as they are.
var ordinary = loadPart{
	attrs: []string{
		`http.request.method="GET"`,
		`http.route="/api/v1/orders/{id}"`,
		`http.response.status_code=200`,
		`url.full="https://shop.example.com/api/v1/orders/ORD-2026-000123?page=2&limit=50"`,
		`db.system="postgresql"`,
		`db.statement="SELECT id, status, total FROM orders WHERE id = $1"`,
		`order.id="ORD-2026-000123"`,
		`app.request_id="3f2c1a9e-8b7d-4c6e-9f01-2a3b4c5d6e7f"`,
	},
	body: "GET /api/v1/orders/ORD-2026-000123 took 23 ms: payment provider timeout after 3 retries",
}

// personal carries, beside the ordinary attributes, what an application leaks when it
// logs too much: each value below it must never reach the sink.
var personal = loadPart{
	attrs: []string{
		`http.request.method="POST"`,
		`http.route="/api/v1/checkout"`,
		`http.response.status_code=402`,
		`url.full="https://shop.example.com/api/v1/checkout?email=jane.doe%40example.com&page=1"`,
		`db.system="postgresql"`,
		`db.statement="UPDATE customers SET phone = '+1-202-555-0143' WHERE customer_id = 98231"`,
		`order.id="ORD-2026-000123"`,
		`user.email="jane.doe@example.com"`,
		`client.address="203.0.113.42"`,
		`network.peer.address="2001:db8::8a2e:370:7334"`,
		`http.request.header.authorization="Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI5ODIzMSJ9.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"`,
		`payment.error="charge refused for key sk_live_4eC39HqLyjWDarjtT1zdp7dc"`,
		`db.connection_string="postgres://shop:s3cr3t-pw-Q9@db.internal:5432/shop"`,
	},
	body: "payment declined for jane.doe@example.com from 203.0.113.42, card 4111 1111 1111 1111, token eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI5ODIzMSJ9.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
}

// leaks are the planted values (or their telling parts) that must not reach the sink.
var leaks = [...]string{
	"jane.doe@example.com",
	"jane.doe%40example.com",
	"203.0.113.42",
	"2001:db8::8a2e:370:7334",
	"4111 1111 1111 1111",
	"202-555-0143",
	"dozjgNryP4J3jVmNHl0w5N",
	"4eC39HqLyjWDarjtT1zdp7dc",
	"s3cr3t-pw-Q9",
}

// kept are operational values a support engineer needs; the sink reports whether they
// arrived on each side (a redactor that removes them works less well, not less safely).
// The last is part of the ordinary log body, which spans do not have.
var kept = [...]string{"/api/v1/orders/{id}", "ORD-2026-000123", "payment provider timeout after 3 retries"}

// keptInSpans is how many of kept spans carry.
const keptInSpans = 2

// markers are what a record that lost something carries on either side: the agent's
// count attributes and the Collector's summary.
var markers = [...]string{"periscope.redacted.", "redaction.masked.count", "redaction.body.masked.count"}

// loadCommands are the telemetrygen runs every system gets, to be run at once.
func loadCommands(telemetrygen, sig, grpcAddr, httpAddr string, rate float64, workers int, dur time.Duration) []*exec.Cmd {
	perWorker := rate / float64(workers)
	if loadKind == "plain" {
		return []*exec.Cmd{genCommand(telemetrygen, sig, grpcAddr, httpAddr, perWorker, workers, dur,
			loadPart{body: "user checkout failed: payment provider timeout after 3 retries"})}
	}
	return []*exec.Cmd{
		genCommand(telemetrygen, sig, grpcAddr, httpAddr, perWorker, workers-1, dur, ordinary),
		genCommand(telemetrygen, sig, grpcAddr, httpAddr, perWorker, 1, dur, personal),
	}
}

// genCommand is one telemetrygen process sending part.
func genCommand(telemetrygen, sig, grpcAddr, httpAddr string, perWorker float64, workers int, dur time.Duration, part loadPart) *exec.Cmd {
	gen := exec.Command(telemetrygen, sig, "--otlp-endpoint", grpcAddr, "--otlp-insecure",
		"--workers", fmt.Sprint(workers), "--rate", fmt.Sprint(perWorker), "--duration", dur.String(),
		"--service", "bench", "--batch-size", fmt.Sprint(batchSize))
	if sig == "logs" {
		gen.Args = append(gen.Args, "--body", part.body) // traces have no body
	} else {
		gen.Args = append(gen.Args, "--child-spans", "1")
	}
	for _, a := range part.attrs {
		gen.Args = append(gen.Args, "--telemetry-attributes", a)
	}
	if protocol == "http" {
		gen.Args = append(gen.Args, "--otlp-http", "--otlp-endpoint", httpAddr)
	}
	return gen
}

// runLoad runs the commands at once and waits for all of them.
func runLoad(cmds []*exec.Cmd) error {
	outs := make([]bytes.Buffer, len(cmds))
	for i, c := range cmds {
		c.Stdout, c.Stderr = &outs[i], &outs[i]
		if err := c.Start(); err != nil {
			for _, started := range cmds[:i] {
				started.Process.Kill()
				started.Wait()
			}
			return fmt.Errorf("telemetrygen: %w", err)
		}
	}
	var failed []string
	for i, c := range cmds {
		if err := c.Wait(); err != nil {
			failed = append(failed, fmt.Sprintf("telemetrygen: %v\n%s", err, tail(outs[i].String())))
		}
	}
	if failed != nil {
		return fmt.Errorf("%s", strings.Join(failed, "\n"))
	}
	return nil
}

// check is what the sink found in the requests of one path.
type check struct {
	requests, marked atomic.Int64
	leaks            [len(leaks)]atomic.Int64
	kept             [len(kept)]atomic.Int64
}

// scan looks for the planted values, the kept ones and the markers in one
// decompressed request. Protobuf holds strings as they are, so a byte search finds them.
func (c *check) scan(data []byte) {
	c.requests.Add(1)
	for i, s := range leaks {
		if bytes.Contains(data, []byte(s)) {
			c.leaks[i].Add(1)
		}
	}
	for i, s := range kept {
		if bytes.Contains(data, []byte(s)) {
			c.kept[i].Add(1)
		}
	}
	for _, s := range markers {
		if bytes.Contains(data, []byte(s)) {
			c.marked.Add(1)
			break
		}
	}
}

// verdict fails when personal data reached the sink or, with the app load, when no
// request showed any redaction; summary says what arrived.
func (c *check) verdict(sig string) (summary string, err error) {
	n := c.requests.Load()
	var leaked, arrived []string
	for i, s := range leaks {
		if k := c.leaks[i].Load(); k > 0 {
			leaked = append(leaked, fmt.Sprintf("%q in %d", s, k))
		}
	}
	for i, s := range kept {
		if sig == "traces" && i >= keptInSpans {
			break
		}
		arrived = append(arrived, fmt.Sprintf("%q in %d", s, c.kept[i].Load()))
	}
	summary = fmt.Sprintf("%d requests, %d with redaction markers", n, c.marked.Load())
	if loadKind == "app" {
		summary += "; kept: " + strings.Join(arrived, ", ")
	}
	switch {
	case leaked != nil:
		return summary, fmt.Errorf("personal data reached the sink: %s of %d requests", strings.Join(leaked, ", "), n)
	case loadKind == "app" && c.marked.Load() == 0:
		return summary, fmt.Errorf("no request showed any redaction (%d requests)", n)
	}
	return summary, nil
}
