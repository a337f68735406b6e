-- Update windows set through the API, which replace the configuration
-- file's for their customer or deployment.
CREATE TABLE update_windows (
	kind       text NOT NULL,
	owner      text NOT NULL,
	windows    jsonb NOT NULL,
	updated_at timestamptz NOT NULL,
	updated_by text NOT NULL,
	PRIMARY KEY (kind, owner)
);
