-- Notifications the notifier recorded and their deliveries, one per webhook.
CREATE TABLE notifications (
	seq             bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
	id              text PRIMARY KEY,
	kind            text NOT NULL,
	state           text NOT NULL,
	deployment_id   text NOT NULL,
	deployment_name text NOT NULL,
	customer        text NOT NULL,
	cloud           text NOT NULL,
	region          text NOT NULL,
	release         text NOT NULL,
	status          text NOT NULL,
	previous_status text NOT NULL,
	reason          text NOT NULL,
	reason_code     text NOT NULL,
	behind_reason   text NOT NULL,
	changed_at      timestamptz NOT NULL,
	created_at      timestamptz NOT NULL
);
CREATE INDEX notifications_deployment_kind ON notifications (deployment_id, kind, seq DESC);

CREATE TABLE notification_deliveries (
	notification_id text NOT NULL REFERENCES notifications (id) ON DELETE CASCADE,
	webhook         text NOT NULL,
	ordinal         integer NOT NULL,
	state           text NOT NULL,
	attempts        integer NOT NULL,
	last_error      text NOT NULL,
	next_attempt    timestamptz,
	delivered_at    timestamptz,
	updated_at      timestamptz NOT NULL,
	PRIMARY KEY (notification_id, webhook)
);
-- Pending deliveries are what the notifier reads at every start and retry.
CREATE INDEX notification_deliveries_state ON notification_deliveries (state, notification_id);
