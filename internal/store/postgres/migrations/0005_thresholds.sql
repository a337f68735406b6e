-- A deployment's runtime thresholds (queue lag, disk free) set from the
-- manager: one JSON document, read only with the rest of the deployment.
ALTER TABLE deployments ADD COLUMN thresholds jsonb NOT NULL DEFAULT '{}';
