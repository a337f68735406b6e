// Package infra runs the demo's infrastructure inside the demo's own process:
// a NATS server with JetStream for the sample services' order queues and an
// S3-compatible server for their invoice buckets, so `periscope demo` needs no
// Redis, NATS or S3 server on the machine. Each is a long-lived part with
// Start/Shutdown and URL; both listen on a random free port of 127.0.0.1 and
// bound their memory (docs/demo.md). Only the periscope binary links this
// package: the agent binary must not carry a NATS or S3 server
// (internal/archtest).
package infra
