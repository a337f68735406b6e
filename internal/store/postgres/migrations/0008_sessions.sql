-- Dashboard sessions (store.Sessions), by the hash of the cookie's value, so
-- a browser signed in through one replica is signed in on all of them.
CREATE TABLE dashboard_sessions (
	hash       text PRIMARY KEY,
	token_id   text NOT NULL,
	created_at timestamptz NOT NULL,
	used_at    timestamptz NOT NULL
);
CREATE INDEX dashboard_sessions_used ON dashboard_sessions (used_at);
