-- The trails of pin and deployment (token, deletion) changes, and the one
-- audit log every operator action reaches. seq orders entries written in the
-- same microsecond and makes the paging cursor; an empty id is derived from the
-- time and seq when read.
CREATE TABLE pin_changes (
	seq             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	change_id       text NOT NULL,
	changed_at      timestamptz NOT NULL,
	actor           text NOT NULL,
	reason          text NOT NULL,
	action          text NOT NULL,
	deployment_id   text NOT NULL,
	from_release    text NOT NULL,
	to_release      text NOT NULL,
	running_release text NOT NULL
);
CREATE INDEX pin_changes_deployment ON pin_changes (deployment_id, seq DESC);

CREATE TABLE deployment_changes (
	seq           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	changed_at    timestamptz NOT NULL,
	actor         text NOT NULL,
	reason        text NOT NULL,
	action        text NOT NULL,
	deployment_id text NOT NULL,
	detail        text NOT NULL
);
CREATE INDEX deployment_changes_deployment ON deployment_changes (deployment_id, seq DESC);

CREATE TABLE audit (
	seq           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	id            text NOT NULL,
	happened_at   timestamptz NOT NULL,
	actor         text NOT NULL,
	actor_role    text NOT NULL,
	action        text NOT NULL,
	deployment_id text NOT NULL,
	customer      text NOT NULL,
	target        text NOT NULL,
	outcome       text NOT NULL,
	reason        text NOT NULL,
	-- Detail comes back byte for byte as written, so it is text, not jsonb.
	detail        text NOT NULL
);
CREATE INDEX audit_at ON audit (happened_at DESC, seq DESC);
CREATE INDEX audit_actor ON audit (actor, happened_at DESC);
CREATE INDEX audit_action ON audit (action text_pattern_ops);
CREATE INDEX audit_deployment ON audit (deployment_id, happened_at DESC);
CREATE INDEX audit_customer ON audit (customer, happened_at DESC);
