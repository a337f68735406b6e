package otlp

// The headers of Periscope's delivery protocol between an agent's forwarder and the
// manager's ingest, on top of OTLP/HTTP. Both sides read them from here so the
// names cannot drift apart.
const (
	// BatchHeader carries the batch id an agent sends:
	// "<queue id>:<first seq>-<last seq>".
	BatchHeader = "Periscope-Batch"
	// DeliveredHeader comes with a 409 for a batch that overlaps what the manager
	// has: the last sequence number of that queue it already holds.
	DeliveredHeader = "Periscope-Delivered"
)
