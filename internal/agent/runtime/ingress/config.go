package ingress

import (
	"time"

	"github.com/periscope-dev/periscope/internal/config"
)

// Bounds on a Config, as config states them, so that a configuration cannot
// make the proxy's memory or its metrics' cardinality unbounded.
const (
	// MaxRoutes bounds the route templates of one proxy.
	MaxRoutes = config.MaxIngressRoutes
	// MaxRouteLen bounds one route template, in bytes.
	MaxRouteLen = config.MaxRouteLen
	// MaxNameLen bounds a proxy's name, in bytes.
	MaxNameLen = config.MaxIngressNameLen
	// MaxHeaderBytesLimit bounds Config.MaxHeaderBytes.
	MaxHeaderBytesLimit = config.MaxIngressHeaderBytes
)

// Defaults applied by New to the zero values of a Config's limits.
const (
	DefaultReadHeaderTimeout     = 10 * time.Second
	DefaultIdleTimeout           = 120 * time.Second
	DefaultDialTimeout           = 5 * time.Second
	DefaultResponseHeaderTimeout = 60 * time.Second
	DefaultMaxHeaderBytes        = 64 << 10
)

// Config is one ingress-facing service (runtime.ingress in the agent's
// configuration); it lives in internal/config, which loads and validates it.
type Config = config.IngressProxy

// withDefaults returns c with its zero limits replaced by the defaults.
func withDefaults(c Config) Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.ReadHeaderTimeout, DefaultReadHeaderTimeout)
	def(&c.IdleTimeout, DefaultIdleTimeout)
	def(&c.DialTimeout, DefaultDialTimeout)
	def(&c.ResponseHeaderTimeout, DefaultResponseHeaderTimeout)
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	return c
}
