//go:build !unix

package manager

// restrictUmask does nothing where there is no umask; the data directory's
// access control list is the operator's.
func restrictUmask() {}
