package store

// The SQL backends (duckdb, postgres) keep rollouts in the same columns and
// decode them here, so that a column added to one is read alike by both.

// Row is one result row: database/sql's *sql.Row and *sql.Rows and pgx's Row
// all are one.
type Row interface {
	Scan(dest ...any) error
}

// RolloutColumns are the rollouts table's columns, in the order ScanRollout
// reads them.
const RolloutColumns = `id, stack, release, phase, done, started_at, updated_at, version, state`

// ScanRollout decodes a row of RolloutColumns. Times come back in UTC; state
// is read as bytes, whether the backend holds text or JSON.
func ScanRollout(row Row) (RolloutRecord, error) {
	var r RolloutRecord
	if err := row.Scan(&r.ID, &r.Stack, &r.Release, &r.Phase, &r.Done, &r.StartedAt, &r.UpdatedAt, &r.Version, &r.State); err != nil {
		return RolloutRecord{}, err
	}
	r.StartedAt, r.UpdatedAt = r.StartedAt.UTC(), r.UpdatedAt.UTC()
	return r, nil
}

// RolloutPlanColumns are the rollout_plans table's columns, in the order
// ScanRolloutPlan reads them.
const RolloutPlanColumns = `stack, plan, updated_at, updated_by`

// ScanRolloutPlan decodes a row of RolloutPlanColumns.
func ScanRolloutPlan(row Row) (RolloutPlanRecord, error) {
	var p RolloutPlanRecord
	if err := row.Scan(&p.Stack, &p.Plan, &p.UpdatedAt, &p.UpdatedBy); err != nil {
		return RolloutPlanRecord{}, err
	}
	p.UpdatedAt = p.UpdatedAt.UTC()
	return p, nil
}

// RolloutsQuery is the query of ListRollouts for f and its arguments, with
// the n-th argument written as placeholder(n) (n from 1): "?" for DuckDB,
// "$n" for PostgreSQL.
func RolloutsQuery(f RolloutFilter, placeholder func(n int) string) (string, []any) {
	q, args := `SELECT `+RolloutColumns+` FROM rollouts WHERE true`, []any{}
	if f.Stack != "" {
		args = append(args, f.Stack)
		q += ` AND stack = ` + placeholder(len(args))
	}
	if f.Unfinished {
		q += ` AND NOT done`
	}
	q += ` ORDER BY started_at DESC, id`
	if f.Limit > 0 {
		args = append(args, f.Limit)
		q += ` LIMIT ` + placeholder(len(args))
	}
	return q, args
}
