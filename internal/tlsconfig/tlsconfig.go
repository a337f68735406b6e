// Package tlsconfig turns the TLS settings of the configuration into
// crypto/tls configurations: a client's, trusting a private CA and presenting
// a client certificate when asked (the agent towards the manager, the
// manager's exporters), and a server's whose certificate, key and client CAs
// are reread when their files change, so a renewed certificate is served
// without a restart.
//
// Concurrency: a Server's Config may be used by any number of listeners and
// handshakes at once.
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/periscope-dev/periscope/internal/config"
)

// maxPEMBytes bounds a certificate, key or CA file read into memory: a real
// chain or CA bundle is a few hundred KiB at most.
const maxPEMBytes = 4 << 20

// Client reads the files t names into a client configuration (TLS 1.2 at
// least). The errors name the setting, as the configuration spells it.
func Client(t config.ClientTLS) (*tls.Config, error) {
	conf := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: t.InsecureSkipVerify, ServerName: t.ServerName}
	if t.CAFile != "" {
		pool, err := certPool(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: ca_file: %w", err)
		}
		conf.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := keyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls: cert_file and key_file: %w", err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}
	return conf, nil
}

// readPEM reads a PEM file within maxPEMBytes.
func readPEM(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxPEMBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxPEMBytes {
		return nil, fmt.Errorf("%s is larger than %d MiB: not a certificate or key", path, maxPEMBytes>>20)
	}
	return b, nil
}

func certPool(path string) (*x509.CertPool, error) {
	pem, err := readPEM(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no PEM certificates in %s", path)
	}
	return pool, nil
}

func keyPair(certFile, keyFile string) (tls.Certificate, error) {
	certPEM, err := readPEM(certFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyPEM, err := readPEM(keyFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(certPEM, keyPEM)
}

// Server is the manager's TLS: its certificate and key, and the CAs of the
// client certificates it requires, if any. Every handshake checks whether a
// file changed (its size or modification time: two stat calls) and then reads
// them all again; a set that does not load (a key renewed before its
// certificate, say) is logged and the previous one goes on being served.
type Server struct {
	cfg config.ServerTLS
	log *slog.Logger

	mu      sync.Mutex
	current *tls.Config // the last set that loaded
	stamps  []stamp     // of cfg's files when current was read
	failed  []stamp     // of the set that last failed to load, logged once
}

// stamp is what tells that a file changed.
type stamp struct {
	size    int64
	modTime time.Time
}

// NewServer returns the TLS of cfg, which must be enabled. It reads nothing:
// Load does.
func NewServer(cfg config.ServerTLS, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, log: log}
}

// Load reads the files, so a missing or broken one is a startup error.
func (s *Server) Load() error {
	st, err := s.stat()
	if err == nil {
		err = s.load(st)
	}
	return err
}

// Config returns a configuration for one listener, offering nextProtos by
// ALPN, whose handshakes use the newest files.
func (s *Server) Config(nextProtos ...string) *tls.Config {
	return &tls.Config{
		MinVersion: s.minVersion(),
		NextProtos: nextProtos,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			c := s.refresh().Clone()
			c.NextProtos = nextProtos
			return c, nil
		},
	}
}

func (s *Server) minVersion() uint16 {
	if s.cfg.MinVersion == "1.3" {
		return tls.VersionTLS13
	}
	return tls.VersionTLS12
}

// files lists cfg's files in a fixed order.
func (s *Server) files() []string {
	fs := []string{s.cfg.CertFile, s.cfg.KeyFile}
	if s.cfg.ClientCAFile != "" {
		fs = append(fs, s.cfg.ClientCAFile)
	}
	return fs
}

func (s *Server) stat() ([]stamp, error) {
	fs := s.files()
	out := make([]stamp, len(fs))
	for i, f := range fs {
		fi, err := os.Stat(f)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		out[i] = stamp{fi.Size(), fi.ModTime()}
	}
	return out, nil
}

// load reads the files as of st and makes them current.
func (s *Server) load(st []stamp) error {
	cert, err := keyPair(s.cfg.CertFile, s.cfg.KeyFile)
	if err != nil {
		return fmt.Errorf("tls: cert_file and key_file: %w", err)
	}
	c := &tls.Config{MinVersion: s.minVersion(), Certificates: []tls.Certificate{cert}}
	if s.cfg.ClientCAFile != "" {
		pool, err := certPool(s.cfg.ClientCAFile)
		if err != nil {
			return fmt.Errorf("tls: client_ca_file: %w", err)
		}
		c.ClientCAs, c.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	s.mu.Lock()
	s.current, s.stamps, s.failed = c, st, nil
	s.mu.Unlock()
	return nil
}

// refresh returns the current configuration, reading the files again first
// when one changed since.
func (s *Server) refresh() *tls.Config {
	st, err := s.stat()
	s.mu.Lock()
	cur, same, known := s.current, equal(st, s.stamps), equal(st, s.failed)
	s.mu.Unlock()
	if err != nil || same || known {
		// A file gone for a moment (replaced by a rename) or a set that
		// already failed: the current one goes on.
		return cur
	}
	if err := s.load(st); err != nil {
		s.mu.Lock()
		s.failed = st
		s.mu.Unlock()
		s.log.Warn("the TLS files changed but do not load; the previous certificate goes on being served", "error", err)
		return cur
	}
	s.log.Info("TLS certificate reloaded", "cert_file", s.cfg.CertFile)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.current
}

func equal(a, b []stamp) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].size != b[i].size || !a[i].modTime.Equal(b[i].modTime) {
			return false
		}
	}
	return true
}
