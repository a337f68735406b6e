-- Progressive rollouts (store.Rollouts): the engine's state is one JSON
-- document per rollout, rewritten as it moves, written only over the version
-- it read so one replica's write cannot undo another's.
CREATE TABLE rollouts (
	id         text PRIMARY KEY,
	stack      text NOT NULL,
	release    text NOT NULL,
	phase      text NOT NULL,
	done       boolean NOT NULL,
	started_at timestamptz NOT NULL,
	updated_at timestamptz NOT NULL,
	version    bigint NOT NULL,
	state      jsonb NOT NULL
);
CREATE INDEX rollouts_unfinished ON rollouts (stack, started_at) WHERE NOT done;

-- Rollout plans set through the API, which replace the configuration file's.
CREATE TABLE rollout_plans (
	stack      text PRIMARY KEY,
	plan       jsonb NOT NULL,
	updated_at timestamptz NOT NULL,
	updated_by text NOT NULL
);
