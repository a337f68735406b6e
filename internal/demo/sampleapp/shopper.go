package sampleapp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"
)

// DefaultShopperConcurrency bounds a Shopper's requests in flight.
const DefaultShopperConcurrency = 4

// shoppers are the people who shop: personal data the service logs and the
// agent's redaction removes.
var shoppers = []string{"alice.jones@example.com", "bob@example.org", "carol.smith@example.net", "dave+orders@example.com"}

// ShopperConfig configures a load generator.
type ShopperConfig struct {
	// BaseURL is where requests go: the agent's ingress proxy in the demo.
	BaseURL string
	// Rate is requests per second for Run.
	Rate float64
	// Concurrency bounds requests in flight; a request due while all are
	// busy is skipped and counted. DefaultShopperConcurrency when zero.
	Concurrency int
	// Rand draws the requests; nil means a source seeded from the time.
	Rand *rand.Rand
	// Client sends the requests; a client with a 10 s timeout when nil.
	Client *http.Client
}

// Shopper sends a realistic mix of shop requests: browsing the catalogue,
// looking at the cart, signing in and checking out.
type Shopper struct {
	cfg ShopperConfig
	sem chan struct{}

	mu    sync.Mutex // guards rand and tally
	rand  *rand.Rand
	tally Tally
}

// Tally counts what a Shopper sent.
type Tally struct {
	// Status counts answers by route and status code ("POST /checkout 201").
	Status map[string]int
	// Failed counts requests that got no answer.
	Failed int
	// Skipped counts requests Run skipped because Concurrency were in flight.
	Skipped int
}

// NewShopper validates cfg; it starts nothing.
func NewShopper(cfg ShopperConfig) (*Shopper, error) {
	if !strings.HasPrefix(cfg.BaseURL, "http://") && !strings.HasPrefix(cfg.BaseURL, "https://") {
		return nil, fmt.Errorf("sampleapp: shopper: base URL %q is not http(s)", cfg.BaseURL)
	}
	if cfg.Rate < 0 || cfg.Concurrency < 0 {
		return nil, errors.New("sampleapp: shopper: rate and concurrency must not be negative")
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = DefaultShopperConcurrency
	}
	if cfg.Rand == nil {
		seed := uint64(time.Now().UnixNano())
		cfg.Rand = rand.New(rand.NewPCG(seed, seed>>1|1))
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: 10 * time.Second}
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	return &Shopper{cfg: cfg, rand: cfg.Rand, sem: make(chan struct{}, cfg.Concurrency), tally: Tally{Status: map[string]int{}}}, nil
}

// Drive sends requests to baseURL at rate per second until ctx ends, drawn
// from rnd; a convenience over NewShopper and Run.
func Drive(ctx context.Context, baseURL string, rate float64, rnd *rand.Rand) error {
	s, err := NewShopper(ShopperConfig{BaseURL: baseURL, Rate: rate, Rand: rnd})
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

// Run sends Rate requests per second until ctx ends, at most Concurrency at
// once, and returns nil then after the requests in flight end.
func (s *Shopper) Run(ctx context.Context) error {
	if s.cfg.Rate <= 0 {
		return errors.New("sampleapp: shopper: Run needs a rate")
	}
	t := time.NewTicker(time.Duration(float64(time.Second) / s.cfg.Rate))
	defer t.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		req := s.next()
		select {
		case s.sem <- struct{}{}:
		default:
			s.count(func(t *Tally) { t.Skipped++ })
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-s.sem }()
			s.send(ctx, req)
		}()
	}
}

// Send sends n requests one after another and returns when all are answered,
// so a seeded Shopper sends the same requests in the same order every time.
func (s *Shopper) Send(ctx context.Context, n int) error {
	for range n {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("sampleapp: shopper: %w", err)
		}
		s.send(ctx, s.next())
	}
	return nil
}

// Tally returns a copy of the counts so far.
func (s *Shopper) Tally() Tally {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tally
	t.Status = make(map[string]int, len(s.tally.Status))
	for k, v := range s.tally.Status {
		t.Status[k] = v
	}
	return t
}

func (s *Shopper) count(f func(*Tally)) {
	s.mu.Lock()
	f(&s.tally)
	s.mu.Unlock()
}

// plan is one drawn request.
type plan struct {
	method, path string
	body         any
	session, ip  string
}

// next draws a request: browsing is most common, checkouts a quarter.
func (s *Shopper) next() plan {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rand
	p := plan{
		session: fmt.Sprintf("s-%012x", r.Uint64()&0xffffffffffff),
		ip:      fmt.Sprintf("203.0.113.%d", 1+r.IntN(254)),
	}
	email := shoppers[r.IntN(len(shoppers))]
	switch w := r.IntN(100); {
	case w < 40:
		p.method, p.path = http.MethodGet, "/products"
	case w < 65:
		p.method, p.path = http.MethodGet, "/cart"
	case w < 75:
		p.method, p.path, p.body = http.MethodPost, "/login", Order{Email: email}
	default:
		o := Order{Email: email}
		for range 1 + r.IntN(3) {
			o.Items = append(o.Items, products[r.IntN(len(products))].SKU)
		}
		if r.IntN(10) < 3 {
			o.Coupon = "SUMMER24"
		}
		p.method, p.path, p.body = http.MethodPost, "/checkout", o
	}
	return p
}

func (s *Shopper) send(ctx context.Context, p plan) {
	var body io.Reader
	if p.body != nil {
		data, _ := json.Marshal(p.body) // an Order always encodes
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, p.method, s.cfg.BaseURL+p.path, body)
	if err != nil {
		s.count(func(t *Tally) { t.Failed++ })
		return
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set(SessionHeader, p.session)
	req.Header.Set("X-Forwarded-For", p.ip)
	req.Header.Set("User-Agent", "lighthouse-shopper/1.0")
	resp, err := s.cfg.Client.Do(req)
	if err != nil {
		s.count(func(t *Tally) { t.Failed++ })
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	key := fmt.Sprintf("%s %s %d", p.method, p.path, resp.StatusCode)
	s.count(func(t *Tally) { t.Status[key]++ })
}
