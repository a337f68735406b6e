// Package storage holds the runtime sources for storage and KV usage, each a
// runtime.Source built from one Config: memory and keys per database of a Redis
// server, and used, free and reserved bytes and inodes of filesystem volumes,
// built by New; objects and bytes of S3-compatible buckets (package s3bucket)
// and the size of a PostgreSQL database and its largest tables (package
// postgresdb), kept in packages of their own because they link the AWS SDK and
// pgx. Config is config.StorageSource, loaded from runtime.storage in the
// agent's configuration; the agent builds every entry into its collector.
//
// Every source is bounded: it honours the deadline of the context Collect is
// given, lists at most max_keys objects, reads at most max_tables tables, and
// cuts every attribute it takes from the outside (bucket, prefixes, table
// names, paths) to MaxAttrLen bytes. A source keeps no connection between
// collections: it dials, reads and hangs up, so it needs no Shutdown, and an
// agent collecting every 30 seconds holds nothing open on the customer's
// servers in between. The one goroutine that may outlive a Collect is a statfs
// blocked in the kernel on a dead network mount, at most one per path.
// docs/signals.md ("Storage and KV usage") lists every metric.
package storage
