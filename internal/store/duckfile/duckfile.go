// Package duckfile opens the manager's embedded DuckDB database files. The fleet
// store (store/duckdb) and the telemetry store (manager/telstore) each keep a
// file of their own in the manager's data directory and open it here, so
// neither links the other. It imports the DuckDB driver and nothing of the
// project.
package duckfile

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"

	_ "github.com/duckdb/duckdb-go/v2" // registers the "duckdb" database/sql driver
)

// Open opens (creating it and dataDir if needed) the DuckDB file name in
// dataDir. It returns the file's path for the caller's error messages, also
// when opening fails. The connection is tried before Open returns, so a file
// that cannot be opened (locked by another process, not a database) is an
// error here rather than at the first query.
func Open(ctx context.Context, dataDir, name string) (*sql.DB, string, error) {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, "", fmt.Errorf("create data directory %s: %w", dataDir, err)
	}
	path := filepath.Join(dataDir, name)
	db, err := sql.Open("duckdb", path)
	if err != nil {
		return nil, path, fmt.Errorf("open %s: %w", path, err)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, path, fmt.Errorf("open %s: %w", path, err)
	}
	return db, path, nil
}
