-- Indexes for the investigation queries, which pick a deployment's rows
-- through its resource ids (telstore's filter: res IN (SELECT id FROM
-- resources WHERE deployment = …)). Without them PostgreSQL read every row of
-- the window in time order and tested each against the deployment: a log page
-- of one deployment took seconds with a million rows in the hour. With them it
-- reads the deployment's resources, then each one's rows in the window, and
-- sorts that handful. Each index costs ingest (docs/benchmarks.md has the
-- before and after); these are the ones the queries' plans use.
--
-- An index on a partitioned table is created on every partition, and on each
-- partition the writer creates later. Building them holds off writes to the
-- tables while it runs (CREATE INDEX, not CONCURRENTLY, which partitioned
-- tables do not take): see docs/production.md, upgrades.

CREATE INDEX resources_deployment ON resources (deployment);

-- Log and span searches and raw RED of one deployment (or any resource filter).
CREATE INDEX log_rows_res_ts ON log_rows (res, ts);
CREATE INDEX span_rows_res_start ON span_rows (res, start);

-- Rollup RED of one deployment, and the release comparison, which reads one
-- deployment's rollups over the whole window (the primary keys lead with the
-- minute, which only serves the fleet's queries).
CREATE INDEX red_minute_deployment ON red_minute (deployment, minute);
CREATE INDEX red_hist_deployment ON red_hist (deployment, minute);
