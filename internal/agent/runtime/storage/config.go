package storage

import (
	"fmt"

	"github.com/periscope-dev/periscope/internal/agent/runtime"
	"github.com/periscope-dev/periscope/internal/config"
)

// The kinds of storage source.
const (
	KindS3         = config.StorageS3
	KindRedis      = config.StorageRedis
	KindPostgres   = config.StoragePostgres
	KindFilesystem = config.StorageFilesystem
)

// Defaults and bounds of Config, as config states them.
const (
	// DefaultMaxKeys bounds an S3 listing when MaxKeys is unset.
	DefaultMaxKeys = config.DefaultMaxKeys
	// DefaultMaxTables is how many of the largest PostgreSQL tables are reported
	// when MaxTables is unset.
	DefaultMaxTables = config.DefaultMaxTables
	maxPrefixes      = config.MaxPrefixes
	// MaxAttrLen bounds every attribute value a source takes from the outside.
	MaxAttrLen = config.MaxAttrLen
)

// Config is one storage source in the agent's runtime configuration
// (runtime.storage); it lives in internal/config, which loads and validates it.
type Config = config.StorageSource

// New builds the redis or filesystem source c describes, with credentials
// from env (os.Environ form); it validates c and starts nothing. The s3 and
// postgres sources are built by the packages s3bucket and postgresdb, apart,
// so that this package's users do not link the AWS SDK and pgx.
func New(c Config, env []string) (runtime.Source, error) {
	if err := c.Validate(c.Kind + "/" + c.Name); err != nil {
		return nil, err
	}
	switch c.Kind {
	case KindRedis:
		return newRedis(c, env)
	case KindFilesystem:
		return newFilesystem(c), nil
	}
	return nil, fmt.Errorf("%s/%s: kind %s is built by package storage/%s", c.Kind, c.Name, c.Kind, map[string]string{KindS3: "s3bucket", KindPostgres: "postgresdb"}[c.Kind])
}

// Check validates c as a source of the given kind, for the packages that build
// the kinds New does not.
func Check(c Config, kind string) error {
	if c.Kind != kind {
		return fmt.Errorf("%s/%s: kind %q, want %s", kind, c.Name, c.Kind, kind)
	}
	return c.Validate(c.Kind + "/" + c.Name)
}
