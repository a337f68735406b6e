// Package pgscratch gives a benchmark a throwaway PostgreSQL database, so
// figures against PostgreSQL never touch a database someone keeps.
package pgscratch

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/jackc/pgx/v5"
)

// Create makes an empty database on the server of serverURL (a postgres://
// URL; its database name, if any, is only where to connect to create it,
// "postgres" when empty) and returns the new database's URL and a function
// that drops it with any connection still open to it.
func Create(ctx context.Context, serverURL, purpose string) (dbURL string, drop func() error, err error) {
	u, err := url.Parse(serverURL)
	if err != nil {
		return "", nil, fmt.Errorf("storage URL: %w", err)
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return "", nil, fmt.Errorf("storage URL: want postgres://, got %q", u.Scheme)
	}
	admin := *u
	if admin.Path == "" || admin.Path == "/" {
		admin.Path = "/postgres"
	}
	conn, err := pgx.Connect(ctx, admin.String())
	if err != nil {
		return "", nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	name := fmt.Sprintf("periscope_bench_%s_%d", purpose, time.Now().UnixNano())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		conn.Close(ctx)
		return "", nil, fmt.Errorf("create database %s: %w", name, err)
	}
	db := *u
	db.Path = "/" + name
	return db.String(), func() error {
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			return fmt.Errorf("drop database %s: %w", name, err)
		}
		return nil
	}, nil
}
