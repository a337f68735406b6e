-- The operational telemetry window on PostgreSQL: the embedded store's layout
-- (resources stored once, raw rows referring to them, views joining them back,
-- per-minute RED rollups) with every time-ordered table partitioned by range of
-- its time, so retention drops whole partitions. The writer creates partitions
-- ahead of the rows (see pgtel's partitions.go); rows outside every partition
-- (timestamps far in the past or future) land in each table's default one.

CREATE TABLE resources (
	id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	-- key is a SHA-256 of everything below, so a resource is stored once
	-- however many replicas meet it at once.
	key        bytea NOT NULL UNIQUE,
	deployment text NOT NULL,
	customer   text NOT NULL,
	cloud      text NOT NULL,
	region     text NOT NULL,
	release    text NOT NULL,
	stack      text NOT NULL,
	service    text NOT NULL,
	container  text NOT NULL,
	replica    text NOT NULL,
	resource   text
);

-- One sequence per table numbers rows in commit order (writers number and commit
-- one at a time, under an advisory lock), so a log tail asking for "everything
-- after n" misses nothing.
CREATE SEQUENCE log_seq;
CREATE SEQUENCE span_seq;
CREATE SEQUENCE metric_point_seq;

CREATE TABLE log_rows (
	seq           bigint NOT NULL DEFAULT nextval('log_seq'),
	ts            timestamptz NOT NULL,
	res           bigint NOT NULL,
	function      text NOT NULL,
	severity      smallint NOT NULL,
	severity_text text NOT NULL,
	body          text NOT NULL,
	trace_hi      bigint,
	trace_lo      bigint,
	span_id       bigint,
	attrs         text
) PARTITION BY RANGE (ts);
CREATE TABLE log_rows_default PARTITION OF log_rows DEFAULT;
CREATE INDEX log_rows_ts ON log_rows (ts);
CREATE INDEX log_rows_seq ON log_rows USING brin (seq);

CREATE TABLE span_rows (
	seq            bigint NOT NULL DEFAULT nextval('span_seq'),
	start          timestamptz NOT NULL,
	duration_ns    bigint NOT NULL,
	trace_hi       bigint NOT NULL,
	trace_lo       bigint NOT NULL,
	span_id        bigint NOT NULL,
	parent_span_id bigint,
	name           text NOT NULL,
	kind           smallint NOT NULL,
	status         smallint NOT NULL,
	status_message text,
	entry          boolean NOT NULL,
	res            bigint NOT NULL,
	function       text NOT NULL,
	attrs          text,
	events         text
) PARTITION BY RANGE (start);
CREATE TABLE span_rows_default PARTITION OF span_rows DEFAULT;
CREATE INDEX span_rows_start ON span_rows (start);
CREATE INDEX span_rows_trace ON span_rows (trace_hi, trace_lo);

CREATE TABLE metric_point_rows (
	seq         bigint NOT NULL DEFAULT nextval('metric_point_seq'),
	ts          timestamptz NOT NULL,
	name        text NOT NULL,
	kind        text NOT NULL,
	unit        text NOT NULL,
	temporality smallint NOT NULL,
	value       double precision NOT NULL,
	count       bigint,
	sum         double precision,
	res         bigint NOT NULL,
	function    text NOT NULL,
	attrs       text,
	buckets     text
) PARTITION BY RANGE (ts);
CREATE TABLE metric_point_rows_default PARTITION OF metric_point_rows DEFAULT;
CREATE INDEX metric_point_rows_name_ts ON metric_point_rows (name, ts);

-- Rollups are summed into one row per minute and context (upserts in the
-- transaction that stores the spans), so a replica dying mid-write leaves
-- neither the spans nor their figures.
CREATE TABLE red_minute (
	minute      timestamptz NOT NULL,
	deployment  text NOT NULL,
	customer    text NOT NULL,
	cloud       text NOT NULL,
	region      text NOT NULL,
	release     text NOT NULL,
	stack       text NOT NULL,
	service     text NOT NULL,
	function    text NOT NULL,
	requests    bigint NOT NULL,
	errors      bigint NOT NULL,
	duration_ns double precision NOT NULL,
	PRIMARY KEY (minute, deployment, customer, cloud, region, release, stack, service, function)
) PARTITION BY RANGE (minute);
CREATE TABLE red_minute_default PARTITION OF red_minute DEFAULT;

CREATE TABLE red_hist (
	minute     timestamptz NOT NULL,
	deployment text NOT NULL,
	customer   text NOT NULL,
	cloud      text NOT NULL,
	region     text NOT NULL,
	release    text NOT NULL,
	stack      text NOT NULL,
	service    text NOT NULL,
	function   text NOT NULL,
	bucket     smallint NOT NULL,
	n          bigint NOT NULL,
	PRIMARY KEY (minute, deployment, customer, cloud, region, release, stack, service, function, bucket)
) PARTITION BY RANGE (minute);
CREATE TABLE red_hist_default PARTITION OF red_hist DEFAULT;

-- Per agent queue (consumer.Batch.Stream), the last sequence number stored:
-- a batch's rows and the advance of its mark commit together, so a batch an
-- agent resends to another replica after a failover is stored once.
CREATE TABLE stream_marks (
	stream   text PRIMARY KEY,
	last_seq bigint NOT NULL
);

CREATE VIEW logs AS SELECT l.seq, l.ts, l.res, r.deployment, r.customer, r.cloud, r.region, r.release, r.stack, r.service, l.function,
	r.container, r.replica, l.severity, l.severity_text, l.body, l.trace_hi, l.trace_lo, l.span_id, l.attrs, r.resource
	FROM log_rows l JOIN resources r ON l.res = r.id;
CREATE VIEW spans AS SELECT s.seq, s.start, s.res, s.duration_ns, s.trace_hi, s.trace_lo, s.span_id, s.parent_span_id, s.name, s.kind,
	s.status, s.status_message, s.entry, r.deployment, r.customer, r.cloud, r.region, r.release, r.stack, r.service, s.function,
	r.container, r.replica, s.attrs, r.resource, s.events
	FROM span_rows s JOIN resources r ON s.res = r.id;
CREATE VIEW metric_points AS SELECT m.seq, m.ts, m.res, m.name, m.kind, m.unit, m.temporality, m.value, m.count, m.sum,
	r.deployment, r.customer, r.cloud, r.region, r.release, r.stack, r.service, m.function, r.container, r.replica, m.attrs, r.resource,
	m.buckets
	FROM metric_point_rows m JOIN resources r ON m.res = r.id;
