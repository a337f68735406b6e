-- The fleet: deployments and the agent tokens they accept, releases, status
-- events and operator API tokens. Tokens are stored only as hashes.
CREATE TABLE deployments (
	id                   text PRIMARY KEY,
	created_at           timestamptz NOT NULL,
	name                 text NOT NULL,
	customer             text NOT NULL,
	platform             text NOT NULL,
	cloud                text NOT NULL,
	region               text NOT NULL,
	stack                text NOT NULL,
	labels               jsonb NOT NULL,
	mode                 text NOT NULL,
	connected            boolean NOT NULL,
	running_release      text NOT NULL,
	agent_version        text NOT NULL,
	instance_uid         text NOT NULL,
	last_checkin         timestamptz,
	health               jsonb NOT NULL,
	config_hash          text NOT NULL,
	expected_config_hash text NOT NULL,
	update_state         jsonb NOT NULL,
	pin                  jsonb,
	last_status          text NOT NULL,
	-- The release-tracking state read only with the rest of the deployment.
	rollout              jsonb NOT NULL
);

-- The agent tokens a deployment accepts: its current one and, during a
-- rotation's overlap, the previous one. A hash belongs to one deployment.
CREATE TABLE deployment_tokens (
	hash          text PRIMARY KEY,
	deployment_id text NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
	previous      boolean NOT NULL,
	valid_until   timestamptz
);
CREATE INDEX deployment_tokens_deployment ON deployment_tokens (deployment_id);

CREATE TABLE releases (
	stack      text NOT NULL,
	version    text NOT NULL,
	created_at timestamptz NOT NULL,
	notes      text NOT NULL,
	commands   jsonb NOT NULL,
	PRIMARY KEY (stack, version)
);

CREATE TABLE status_events (
	seq           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	deployment_id text NOT NULL,
	event_at      timestamptz NOT NULL,
	from_status   text NOT NULL,
	to_status     text NOT NULL,
	reason        text NOT NULL,
	reason_code   text NOT NULL,
	release       text NOT NULL
);
CREATE INDEX status_events_deployment ON status_events (deployment_id, event_at DESC, seq DESC);
CREATE INDEX status_events_at ON status_events (event_at DESC, seq DESC);

CREATE TABLE api_tokens (
	id   text PRIMARY KEY,
	name text NOT NULL,
	role text NOT NULL,
	hash text NOT NULL UNIQUE
);
