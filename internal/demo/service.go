package demo

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
)

// service is what runs one release of the vendor's application in one
// simulated deployment. The demo starts one per deployment on its first
// release and, when the deployment's agent runs its update hook, shuts it down
// and starts the offered release's in its place: a rollout and a pin back
// really change what the deployment serves.
type service interface {
	Start(ctx context.Context) error
	Shutdown(ctx context.Context) error
}

// serviceSpec is what a service factory is told of the release to run.
type serviceSpec struct {
	// Deployment is the deployment's id; Token its agent token, with which
	// the synthetic feed sends its telemetry.
	Deployment, Token string
	// Platform is the deployment's platform, which the service puts on its
	// resource as an SDK's detectors would.
	Platform string
	// Release is the release to run.
	Release string
	// Faulty says the release breaks one function in this deployment: its
	// coupon redemption fails with the season's favourite coupon.
	Faulty bool
	// SlowConsumer says the deployment's queue consumer cannot keep up, so
	// its backlog grows for as long as the release runs.
	SlowConsumer bool
	// Shop is the base URL of the deployment's ingress proxy, through which
	// its HTTP traffic goes ("" for none).
	Shop string
	// Light asks for a quarter of the usual load and no history: a generated
	// deployment, one of thousands.
	Light bool
	// OTLP is the agent's OTLP/HTTP base URL when the deployment runs the
	// sample service over the SDK ("" for the synthetic feed), and Listen
	// the address the service listens on, the ingress proxy's upstream.
	OTLP, Listen string
	// Free, when set, releases the reservation of Listen, just before the
	// service binds it.
	Free func()
	// Rand seeds the service's randomness.
	Rand *rand.Rand
}

// serviceFactory makes the service running spec's release; it starts
// nothing. The default runs the sample service over the SDK where the spec
// has an OTLP endpoint (sdkServices) and the synthetic feed elsewhere
// (feedServices); another sample application plugs in by providing its own.
type serviceFactory func(spec serviceSpec) (service, error)

// feedService is the default service: the deployment's synthetic feed,
// whose requests and telemetry the demo's traffic loop sends while it runs.
type feedService struct {
	tr *traffic
	f  *feed
}

// feedServices returns the factory of synthetic feeds sent by tr.
func feedServices(tr *traffic) serviceFactory {
	return func(s serviceSpec) (service, error) {
		return &feedService{tr: tr, f: newFeed(s)}, nil
	}
}

// newFeed is the synthetic feed of spec's release.
func newFeed(s serviceSpec) *feed {
	return &feed{id: s.Deployment, token: s.Token, platform: s.Platform, release: s.Release,
		faulty: s.Faulty, slowConsumer: s.SlowConsumer, light: s.Light, rng: s.Rand, shop: s.Shop}
}

// Start adds the feed to the live traffic, from now on.
func (s *feedService) Start(context.Context) error {
	s.f.sentUntil = s.tr.clk.Now()
	s.tr.add(s.f)
	return nil
}

// Shutdown takes the feed out of the live traffic; safe without Start.
func (s *feedService) Shutdown(context.Context) error { s.tr.remove(s.f); return nil }

// services runs each deployment's current service and swaps it when the
// deployment's update hook asks for another release.
type services struct {
	make serviceFactory
	// spec gives a deployment's spec for a release: its faults depend on both.
	spec func(deployment, release string) (serviceSpec, bool)

	// stopping ends when Shutdown begins: a switch under way then gives up
	// rather than hold up the demo's stop (its Start undoes itself).
	stopping context.Context
	stop     context.CancelFunc

	mu      sync.Mutex
	running map[string]running
	// closed is set by Shutdown: an update hook that arrives while the demo
	// stops must not start a service nothing would stop.
	closed bool
}

// errStopping is a switch refused, or cut short, because the demo stops.
var errStopping = errors.New("the demo is stopping")

// running is a deployment's service and the release it runs.
type running struct {
	release string
	svc     service
}

func newServices(mk serviceFactory, spec func(deployment, release string) (serviceSpec, bool)) *services {
	stopping, stop := context.WithCancel(context.Background())
	return &services{make: mk, spec: spec, running: map[string]running{}, stopping: stopping, stop: stop}
}

// Switch makes deployment run release: it stops the service running there,
// if any, and starts release's. Switching to the release already running
// does nothing, as a redeploy of the same version would not restart it.
// Once Shutdown has begun it fails with errStopping, also when under way.
func (s *services) Switch(ctx context.Context, deployment, release string) error {
	spec, ok := s.spec(deployment, release)
	if !ok {
		return fmt.Errorf("%s: %w", deployment, errNoDeployment)
	}
	// ctx also ends when Shutdown begins.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.stopping, cancel)()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("%s: %w", deployment, errStopping)
	}
	old, had := s.running[deployment]
	if had && old.release == release {
		return nil
	}
	next, err := s.make(spec)
	if err != nil {
		return fmt.Errorf("make %s's service on %s: %w", deployment, release, err)
	}
	if had {
		// Gone even if its stop fails: a Shutdown stops what it can
		// within ctx, and a second one would do nothing more.
		delete(s.running, deployment)
		if err := old.svc.Shutdown(ctx); err != nil {
			return s.cutShort(fmt.Errorf("stop %s's service on %s: %w", deployment, old.release, err))
		}
	}
	if err := next.Start(ctx); err != nil {
		// Start undoes what it started before failing (the sample
		// service's SDK and queue included).
		return s.cutShort(fmt.Errorf("start %s's service on %s: %w", deployment, release, err))
	}
	s.running[deployment] = running{release: release, svc: next}
	return nil
}

// cutShort marks err as errStopping when Shutdown cut its switch short.
func (s *services) cutShort(err error) error {
	if s.stopping.Err() != nil {
		return fmt.Errorf("%w: %w", errStopping, err)
	}
	return err
}

// Stop stops deployment's service, as when its whole cloud goes dark.
func (s *services) Stop(ctx context.Context, deployment string) error {
	s.mu.Lock()
	r, ok := s.running[deployment]
	delete(s.running, deployment)
	s.mu.Unlock()
	if !ok {
		return nil
	}
	// Outside the lock, so that services stop in parallel.
	return r.svc.Shutdown(ctx)
}

// Release is the release deployment's service runs ("" when none runs).
func (s *services) Release(deployment string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running[deployment].release
}

// Shutdown stops every service, at most 16 at once. A switch under way is cut
// short first, so the stop does not wait for the service it is starting.
func (s *services) Shutdown(ctx context.Context) error {
	s.stop()
	s.mu.Lock()
	s.closed = true
	ids := make([]string, 0, len(s.running))
	for id := range s.running {
		ids = append(ids, id)
	}
	s.mu.Unlock()
	// In parallel: each sample service flushes its SDK as it stops, and
	// fifty of them one after another outlast the demo's stop.
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i, id := range ids {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			errs[i] = s.Stop(ctx, id)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
