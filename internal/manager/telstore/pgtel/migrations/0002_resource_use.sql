-- Resources are pruned by retention once no kept row can refer to them. Each
-- write marks the resources it refers to with the latest time (truncated to
-- the hour) its rows carry, in the transaction that stores them;
-- retention deletes a resource whose mark is an hour before the cutoff.
-- Resources stored before this version are marked now, so they are kept at
-- least one retention period; a new one starts unmarked (its first write
-- marks it, and a write finding it pruned resolves it again).
ALTER TABLE resources ADD COLUMN last_used timestamptz;
UPDATE resources SET last_used = now();
ALTER TABLE resources ALTER COLUMN last_used SET DEFAULT '-infinity', ALTER COLUMN last_used SET NOT NULL;
CREATE INDEX resources_last_used ON resources (last_used);
