-- Since this version writers number and commit log rows at once, on every
-- replica (they used to take one lock each, in turn), so rows no longer commit
-- in seq order, and a log tail (seq > last) reads only below a watermark no
-- open writer can still fill in. Before it numbers a log row, a write
-- transaction takes a log_seq value as its floor and records it here with its
-- transaction id, committed from another session; every row it numbers is
-- above its floor. A tail stops below the lowest floor of the transactions its
-- snapshot sees running; one that ended (committed, rolled back, or its
-- replica died) holds nothing back. One row per writing session (its backend
-- pid), overwritten by the session's next transaction. Unlogged: only running
-- transactions matter, and a crash ends them all.
CREATE UNLOGGED TABLE log_writers (
	pid   integer PRIMARY KEY,
	xid   xid8 NOT NULL,
	floor bigint NOT NULL
);
