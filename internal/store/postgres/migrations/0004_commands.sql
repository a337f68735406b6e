-- Remote-command invocations, one row each, moved through their states by
-- conditional UPDATEs.
CREATE TABLE command_invocations (
	seq           bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
	id            text PRIMARY KEY,
	deployment_id text NOT NULL,
	customer      text NOT NULL,
	command       text NOT NULL,
	params        jsonb NOT NULL,
	-- NULL for an invocation refused as undeclared.
	spec          jsonb,
	reason        text NOT NULL,
	actor         text NOT NULL,
	actor_role    text NOT NULL,
	state         text NOT NULL,
	state_reason  text NOT NULL,
	queued_at     timestamptz NOT NULL,
	deadline      timestamptz NOT NULL,
	delivered_at  timestamptz,
	started_at    timestamptz,
	finished_at   timestamptz,
	result        jsonb NOT NULL
);
CREATE INDEX command_invocations_deployment ON command_invocations (deployment_id, seq);
-- Only invocations not yet final are ever overdue.
CREATE INDEX command_invocations_open ON command_invocations (deadline, seq) WHERE state IN ('queued', 'delivered', 'running');
