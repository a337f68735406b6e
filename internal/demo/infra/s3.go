package infra

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// DefaultS3MaxObjectBytes bounds one uploaded object; the sample services'
// invoices are a few hundred bytes.
const DefaultS3MaxObjectBytes = 1 << 20

// S3 credentials the embedded server accepts. It checks no signature, but
// clients sign every request, so they need some.
const (
	S3AccessKeyID     = "periscope-demo"
	S3SecretAccessKey = "periscope-demo-secret"
	S3Region          = "us-east-1"
)

// S3Config configures the embedded S3-compatible server.
type S3Config struct {
	// MaxObjectBytes bounds a request body; larger uploads get 413. Zero
	// means DefaultS3MaxObjectBytes. What the server holds in all is bounded
	// by its clients, which delete old objects (sampleapp's Bucket.Keep).
	MaxObjectBytes int64
}

// S3 is an S3-compatible server (gofakes3 with its in-memory backend) running
// in this process on a random port of 127.0.0.1; buckets are addressed in
// the path.
type S3 struct {
	cfg     S3Config
	backend *s3mem.Backend

	mu   sync.Mutex
	srv  *http.Server
	addr string
	done chan struct{}
}

// NewS3 validates cfg; it starts nothing.
func NewS3(cfg S3Config) (*S3, error) {
	if cfg.MaxObjectBytes < 0 {
		return nil, errors.New("infra: s3: MaxObjectBytes must not be negative")
	}
	if cfg.MaxObjectBytes == 0 {
		cfg.MaxObjectBytes = DefaultS3MaxObjectBytes
	}
	return &S3{cfg: cfg}, nil
}

// Start binds a random port and serves.
func (s *S3) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return errors.New("infra: s3: already started")
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("infra: s3: %w", err)
	}
	s.backend = s3mem.New()
	fake := gofakes3.New(s.backend, gofakes3.WithoutVersioning())
	h := fake.Server()
	limit := s.cfg.MaxObjectBytes
	s.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ContentLength > limit {
				http.Error(w, "object too large", http.StatusRequestEntityTooLarge)
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, limit)
			h.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	s.addr = ln.Addr().String()
	s.done = make(chan struct{})
	go func(srv *http.Server, done chan struct{}) {
		defer close(done)
		_ = srv.Serve(ln) // ErrServerClosed after Shutdown
	}(s.srv, s.done)
	return nil
}

// URL is the server's endpoint (http://127.0.0.1:port), empty before Start.
func (s *S3) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return ""
	}
	return "http://" + s.addr
}

// CreateBucket creates a bucket unless it exists, without a request.
func (s *S3) CreateBucket(name string) error {
	s.mu.Lock()
	b := s.backend
	s.mu.Unlock()
	if b == nil {
		return errors.New("infra: s3: not started")
	}
	if ok, err := b.BucketExists(name); err != nil || ok {
		return err
	}
	if err := b.CreateBucket(name); err != nil {
		return fmt.Errorf("infra: s3: create bucket %s: %w", name, err)
	}
	return nil
}

// Shutdown stops serving and drops everything stored. It is idempotent and
// safe without Start.
func (s *S3) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	srv, done := s.srv, s.done
	s.srv, s.backend = nil, nil
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	err := srv.Shutdown(ctx)
	if err != nil {
		srv.Close()
	}
	<-done
	if err != nil {
		return fmt.Errorf("infra: s3: shutdown: %w", err)
	}
	return nil
}
