// Package archtest holds no code, only the test that keeps the folder tree and the
// architecture the same picture (see docs/architecture.md):
//
//   - internal/agent/... is what only the agent runs, internal/manager/... what only
//     the manager runs; neither links the other.
//   - Every other package under internal/ except the entry points (cli, demo, e2e) is
//     a shared floor: it links nothing of the agent, the manager or the entry points,
//     so no arrow runs from a store backend or a shared package up into a feature.
//   - The agent binary links nothing of the manager's tree, no store, no DuckDB, no
//     pgx, no AWS SDK and no html/template (those are the manager's dashboard).
package archtest
