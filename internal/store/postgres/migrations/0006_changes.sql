-- Several manager replicas on one database: every write of a deployment or a
-- release records the transaction that made it, and a deletion leaves its id,
-- so each replica reads what the others changed since its last look
-- (FleetChangesSince: rows of transactions its last snapshot did not see). A transaction id is set by the writing statement, so
-- a bulk check-in flush pays no trigger per row. changed_xid has no index on
-- deployments, and pages keep room, so a flush's updates stay heap-only (HOT)
-- and touch no index; reading the changes scans the table instead (tens of
-- milliseconds for 100,000 deployments).
ALTER TABLE deployments ADD COLUMN changed_xid xid8 NOT NULL DEFAULT pg_current_xact_id();
ALTER TABLE deployments SET (fillfactor = 70);
ALTER TABLE releases ADD COLUMN changed_xid xid8 NOT NULL DEFAULT pg_current_xact_id();
CREATE INDEX releases_changed ON releases (changed_xid);
CREATE TABLE deployment_deletions (
	id          text NOT NULL,
	deleted_at  timestamptz NOT NULL DEFAULT now(),
	changed_xid xid8 NOT NULL DEFAULT pg_current_xact_id()
);
CREATE INDEX deployment_deletions_changed ON deployment_deletions (changed_xid);
