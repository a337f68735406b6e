package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/periscope-dev/periscope/internal/auth"
	"github.com/periscope-dev/periscope/internal/command"
	"github.com/periscope-dev/periscope/internal/fleet"
	"github.com/periscope-dev/periscope/internal/store"
	"github.com/periscope-dev/periscope/internal/store/postgres"
)

// Tests of several manager replicas sharing one database: each replica is a
// Store of its own on the same schema, as two manager processes would be.

var t0 = time.Date(2026, 12, 6, 9, 0, 0, 0, time.UTC)

// replicas opens n stores on one fresh schema, closed when the test ends.
func replicas(t *testing.T, n int) []*postgres.Store {
	t.Helper()
	stores, _ := replicasAt(t, n)
	return stores
}

// replicasAt is replicas, with the URL they opened.
func replicasAt(t *testing.T, n int) ([]*postgres.Store, string) {
	t.Helper()
	url := newSchemas(t).urlFor(t, t.Name())
	out := make([]*postgres.Store, n)
	for i := range out {
		s, err := postgres.Open(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		out[i] = s
	}
	return out, url
}

// race runs fns at once, released together, and waits for all of them.
func race(fns ...func()) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, fn := range fns {
		wg.Go(func() {
			<-start
			fn()
		})
	}
	close(start)
	wg.Wait()
}

func TestReplicasStartingTogetherMigrateOnce(t *testing.T) {
	url := newSchemas(t).urlFor(t, t.Name())
	const n = 4
	errs := make([]error, n)
	stores := make([]*postgres.Store, n)
	var fns []func()
	for i := range n {
		fns = append(fns, func() { stores[i], errs[i] = postgres.Open(context.Background(), url) })
	}
	race(fns...)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d of %d starting at once on an empty database: %v", i, n, err)
		}
		defer stores[i].Close()
	}
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var versions, distinct int
	if err := conn.QueryRow(context.Background(), `SELECT count(*), count(DISTINCT version) FROM schema_migrations`).Scan(&versions, &distinct); err != nil {
		t.Fatal(err)
	}
	if versions != distinct || versions == 0 {
		t.Fatalf("schema_migrations holds %d rows for %d versions: a migration ran more than once", versions, distinct)
	}
	// Every replica works on the schema the first one made.
	if err := stores[n-1].CreateAPIToken(context.Background(), auth.APIToken{ID: "t", Name: "ci", Role: auth.RoleViewer, Hash: auth.Hash("x")}); err != nil {
		t.Fatal(err)
	}
	if ts, err := stores[0].ListAPITokens(context.Background()); err != nil || len(ts) != 1 {
		t.Fatalf("a token written through one replica, read through another: %v, %v", ts, err)
	}
}

// TestReplicasRacingOneInvocationMoveItOnce races two replicas ending the
// same invocations differently (an agent's result arriving at one, the
// deadline sweep of another): for each invocation exactly one move wins, the
// loser is told the state that won, and the audit log holds the winner's
// entry alone.
func TestReplicasRacingOneInvocationMoveItOnce(t *testing.T) {
	ctx := context.Background()
	rs := replicas(t, 2)
	const n = 40
	var invs []store.Invocation
	for i := range n {
		invs = append(invs, store.Invocation{ID: fmt.Sprintf("inv-%02d", i), DeploymentID: "d", Customer: "acme", Command: "flush",
			Actor: "alice", State: command.StateDelivered, QueuedAt: t0, Deadline: t0.Add(time.Minute)})
	}
	if err := rs[0].CreateInvocations(ctx, invs, nil); err != nil {
		t.Fatal(err)
	}
	result := func(inv store.Invocation) []store.AuditEntry {
		return []store.AuditEntry{{At: t0, Actor: "agent:d", Action: store.ActionCommandResult, DeploymentID: "d", Target: inv.ID, Outcome: string(inv.State)}}
	}
	type outcome struct {
		inv store.Invocation
		err error
	}
	succeeded, expired := make([]outcome, n), make([]outcome, n)
	var fns []func()
	for i := range n {
		fns = append(fns, func() {
			inv, err := rs[0].AdvanceInvocation(ctx, store.Invocation{ID: invs[i].ID, DeploymentID: "d", State: command.StateSucceeded, FinishedAt: t0.Add(time.Second)}, result)
			succeeded[i] = outcome{inv, err}
		}, func() {
			inv, err := rs[1].AdvanceInvocation(ctx, store.Invocation{ID: invs[i].ID, DeploymentID: "d", State: command.StateExpired, FinishedAt: t0.Add(time.Minute)}, result)
			expired[i] = outcome{inv, err}
		})
	}
	race(fns...)

	log, _, err := rs[1].ListAudit(ctx, store.AuditFilter{Action: store.ActionCommandResult, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	logged := map[string][]string{}
	for _, e := range log {
		logged[e.Target] = append(logged[e.Target], e.Outcome)
	}
	for i := range n {
		a, b := succeeded[i], expired[i]
		var won, lost outcome
		switch {
		case a.err == nil && errors.Is(b.err, store.ErrConflict):
			won, lost = a, b
		case b.err == nil && errors.Is(a.err, store.ErrConflict):
			won, lost = b, a
		default:
			t.Fatalf("%s: replica A got %v, replica B %v; want exactly one to move it and the other ErrConflict", invs[i].ID, a.err, b.err)
		}
		if lost.inv.State != won.inv.State {
			t.Errorf("%s: the losing replica was told it is %s, but %s won", invs[i].ID, lost.inv.State, won.inv.State)
		}
		got, err := rs[0].GetInvocation(ctx, invs[i].ID)
		if err != nil || got.State != won.inv.State || !got.FinishedAt.Equal(won.inv.FinishedAt) {
			t.Errorf("%s stored as %s finished %v (%v); want the winner's %s at %v", invs[i].ID, got.State, got.FinishedAt, err, won.inv.State, won.inv.FinishedAt)
		}
		if want := []string{string(won.inv.State)}; !slices.Equal(logged[invs[i].ID], want) {
			t.Errorf("%s: audit log results %q, want only the winner's %q", invs[i].ID, logged[invs[i].ID], want)
		}
	}
}

// TestReplicasRacingOneCancelAndDeliveryMoveItOnce races an operator's
// cancel on one replica with the hand-over to the agent on another: either
// the agent gets the command or it is cancelled, never both.
func TestReplicasRacingOneCancelAndDeliveryMoveItOnce(t *testing.T) {
	ctx := context.Background()
	rs := replicas(t, 2)
	const n = 40
	var invs []store.Invocation
	for i := range n {
		invs = append(invs, store.Invocation{ID: fmt.Sprintf("inv-%02d", i), DeploymentID: "d", Command: "flush", State: command.StateQueued,
			QueuedAt: t0, Deadline: t0.Add(time.Minute)})
	}
	if err := rs[0].CreateInvocations(ctx, invs, nil); err != nil {
		t.Fatal(err)
	}
	cancelErr, deliverErr := make([]error, n), make([]error, n)
	var fns []func()
	for i := range n {
		fns = append(fns, func() {
			_, cancelErr[i] = rs[0].CancelInvocation(ctx, invs[i].ID, "not needed", t0, nil)
		}, func() {
			_, deliverErr[i] = rs[1].AdvanceInvocation(ctx, store.Invocation{ID: invs[i].ID, DeploymentID: "d", State: command.StateDelivered, DeliveredAt: t0}, nil)
		})
	}
	race(fns...)
	for i := range n {
		got, err := rs[1].GetInvocation(ctx, invs[i].ID)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case cancelErr[i] == nil && errors.Is(deliverErr[i], store.ErrConflict):
			if got.State != command.StateCancelled {
				t.Errorf("%s: the cancel won but it is stored %s", invs[i].ID, got.State)
			}
		case deliverErr[i] == nil && errors.Is(cancelErr[i], store.ErrConflict):
			if got.State != command.StateDelivered {
				t.Errorf("%s: the delivery won but it is stored %s", invs[i].ID, got.State)
			}
		default:
			t.Errorf("%s: cancel %v, delivery %v; want exactly one to happen", invs[i].ID, cancelErr[i], deliverErr[i])
		}
	}
}

// TestReplicasPinningTheSameDeploymentsAgree races two replicas pinning the
// same deployments to different releases, listing them in opposite orders,
// with a third flushing check-in state (no pin) for all of them: nothing
// fails (no deadlock), the writes apply one after another so every
// deployment ends with the same one's state, and when a pin holds, the pin
// trail's newest entry is that pin's.
func TestReplicasPinningTheSameDeploymentsAgree(t *testing.T) {
	ctx := context.Background()
	rs := replicas(t, 3)
	const n = 60
	var recs []store.DeploymentRecord
	for i := range n {
		id := fmt.Sprintf("dep-%02d", i)
		recs = append(recs, store.DeploymentRecord{TokenHash: auth.Hash("tok-" + id), Deployment: fleet.Deployment{ID: id, Customer: "acme", Stack: "app", CreatedAt: t0}})
	}
	if err := rs[0].CreateDeployments(ctx, recs); err != nil {
		t.Fatal(err)
	}
	pinAll := func(release, change string, reverse bool) ([]store.DeploymentRecord, []fleet.PinChange) {
		rs := slices.Clone(recs)
		if reverse {
			slices.Reverse(rs)
		}
		var changes []fleet.PinChange
		for i := range rs {
			rs[i].Deployment.Pin = &fleet.Pin{Release: release, By: "ops", Reason: change, At: t0}
			changes = append(changes, fleet.PinChange{ChangeID: change, At: t0, By: "ops", Action: fleet.ActionPin, DeploymentID: rs[i].Deployment.ID, To: release})
		}
		return rs, changes
	}
	for round := range 5 {
		aRecs, aChanges := pinAll("1.7.2", fmt.Sprintf("a-%d", round), false)
		bRecs, bChanges := pinAll("1.9.0", fmt.Sprintf("b-%d", round), true)
		flush := slices.Clone(recs)
		slices.Reverse(flush[n/2:])
		for i := range flush {
			flush[i].Deployment.LastCheckin = t0.Add(time.Duration(round+1) * time.Second)
		}
		var errA, errB, errFlush error
		race(func() { errA = rs[0].ApplyPins(ctx, aRecs, aChanges) },
			func() { errB = rs[1].ApplyPins(ctx, bRecs, bChanges) },
			func() { errFlush = rs[2].UpdateDeployments(ctx, flush) })
		if err := errors.Join(errA, errB, errFlush); err != nil {
			t.Fatalf("round %d: replicas pinning and flushing the same deployments at once: %v", round, err)
		}
		got, err := rs[2].ListDeployments(ctx)
		if err != nil {
			t.Fatal(err)
		}
		trail, err := rs[0].ListPinChanges(ctx, "", 2*n)
		if err != nil {
			t.Fatal(err)
		}
		newest := map[string]string{}
		for _, c := range trail {
			if _, seen := newest[c.DeploymentID]; !seen {
				newest[c.DeploymentID] = c.ChangeID
			}
		}
		// Whose state a deployment holds: a pin's change, or the flush's.
		whose := func(d fleet.Deployment) string {
			if d.Pin == nil {
				return fmt.Sprintf("flush (checked in %v)", d.LastCheckin)
			}
			return d.Pin.Reason
		}
		last := whose(got[0].Deployment)
		for _, r := range got {
			d := r.Deployment
			if w := whose(d); w != last {
				t.Fatalf("round %d: %s holds %s's state, %s holds %s's: concurrent writes interleaved", round, got[0].Deployment.ID, last, d.ID, w)
			}
			if d.Pin != nil && newest[d.ID] != d.Pin.Reason {
				t.Fatalf("round %d: %s is pinned by %s but its newest pin entry is %s's", round, d.ID, d.Pin.Reason, newest[d.ID])
			}
		}
	}
}

// terminate ends the server sessions that hold the leader lock or listen on
// channel, as a replica killed outright (or a network cut) would.
func terminate(t *testing.T, url, what string) {
	t.Helper()
	q := map[string]string{
		"leader": `SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
		"listen": `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%' AND pid <> pg_backend_pid()`,
	}[what]
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), q).Scan(&n); err != nil || n == 0 {
		t.Fatalf("terminate %s sessions: %d ended, %v", what, n, err)
	}
}

// One replica at a time leads; when its session ends, it learns so at once
// and another replica leads within the retry interval.
func TestLeadershipMovesWhenTheLeadersSessionEnds(t *testing.T) {
	stores, url := replicasAt(t, 2)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	elected := make(chan int, 2)
	ended := make(chan error, 2)
	for i, s := range stores {
		go func() {
			ended <- s.Lead(ctx, postgres.LeaderSettings{Every: 50 * time.Millisecond}, func() error {
				elected <- i
				return nil
			})
		}()
	}
	first := <-elected
	select {
	case other := <-elected:
		t.Fatalf("replicas %d and %d both lead", first, other)
	case <-time.After(300 * time.Millisecond): // six tries of the follower
	}
	terminate(t, url, "leader")
	if err := <-ended; err == nil {
		t.Fatal("the leader whose session ended kept leading")
	}
	if next := <-elected; next == first {
		t.Fatalf("replica %d led again; want the other", next)
	}
	cancel()
	if err := <-ended; err != nil {
		t.Fatalf("Lead at the end of its context: %v", err)
	}
}

// A replica listening hears another's operator writes and queued commands,
// and listens again after its session ends.
func TestListenHearsOtherReplicasChanges(t *testing.T) {
	stores, url := replicasAt(t, 2)
	listener, writer := stores[0], stores[1]
	ctx, cancel := context.WithCancel(context.Background())
	connected := make(chan struct{}, 4)
	heard := make(chan string, 16)
	done := make(chan error, 1)
	go func() {
		done <- listener.Listen(ctx, nil, []string{postgres.ChannelFleet, postgres.ChannelCommands},
			func() { connected <- struct{}{} }, func(channel, payload string) { heard <- channel + ":" + payload })
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Listen at the end of its context: %v", err)
		}
	}()
	<-connected
	bg := context.Background()
	d := store.DeploymentRecord{TokenHash: auth.Hash("t"), Deployment: fleet.Deployment{ID: "d1", Stack: "app", CreatedAt: t0}}
	if err := writer.CreateDeployments(bg, []store.DeploymentRecord{d}); err != nil {
		t.Fatal(err)
	}
	if got := <-heard; got != postgres.ChannelFleet+":" {
		t.Fatalf("heard %q after a deployment was created, want the fleet channel", got)
	}
	inv := store.Invocation{ID: "inv-1", Command: "ping", DeploymentID: "d1", State: command.StateQueued, QueuedAt: t0, Deadline: t0.Add(time.Hour)}
	if err := writer.CreateInvocations(bg, []store.Invocation{inv}, nil); err != nil {
		t.Fatal(err)
	}
	if got := <-heard; got != postgres.ChannelCommands+":d1" {
		t.Fatalf("heard %q after a command was queued for d1", got)
	}
	terminate(t, url, "listen")
	<-connected
	if err := writer.CreateRelease(bg, fleet.Release{Stack: "app", Version: "1.0", CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if got := <-heard; got != postgres.ChannelFleet+":" {
		t.Fatalf("heard %q after a release, listening again", got)
	}
}

// A write whose transaction commits after a replica read the changes is in
// its next read, and a transaction left open elsewhere (a backup) does not
// make every read return again what the last one did.
func TestFleetChangesCatchLateCommitsOnly(t *testing.T) {
	stores, url := replicasAt(t, 1)
	s := stores[0]
	ctx := context.Background()
	if err := s.CreateDeployments(ctx, []store.DeploymentRecord{
		{TokenHash: auth.Hash("t1"), Deployment: fleet.Deployment{ID: "d1", Stack: "app", CreatedAt: t0}},
		{TokenHash: auth.Hash("t2"), Deployment: fleet.Deployment{ID: "d2", Stack: "app", CreatedAt: t0}},
	}); err != nil {
		t.Fatal(err)
	}
	open, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close(ctx)
	// A long transaction that has taken an id, as pg_dump's does.
	long, err := open.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer long.Rollback(ctx)
	if _, err := long.Exec(ctx, `SELECT pg_current_xact_id()`); err != nil {
		t.Fatal(err)
	}
	late, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close(ctx)
	lateTx, err := late.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lateTx.Exec(ctx, `UPDATE deployments SET running_release = '2.0', changed_xid = pg_current_xact_id() WHERE id = 'd1'`); err != nil {
		t.Fatal(err)
	}
	d2 := store.DeploymentRecord{Deployment: fleet.Deployment{ID: "d2", LastCheckin: t0.Add(time.Minute), RunningRelease: "1.0"}}
	if err := s.UpdateCheckins(ctx, []store.DeploymentRecord{d2}); err != nil {
		t.Fatal(err)
	}
	first, err := s.FleetChangesSince(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	second, err := s.FleetChangesSince(ctx, first.Next)
	if err != nil {
		t.Fatal(err)
	}
	if len(second.Deployments) != 0 {
		t.Fatalf("a read after nothing committed returned %d deployments again", len(second.Deployments))
	}
	if err := lateTx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	third, err := s.FleetChangesSince(ctx, second.Next)
	if err != nil {
		t.Fatal(err)
	}
	if len(third.Deployments) != 1 || third.Deployments[0].Deployment.ID != "d1" || third.Deployments[0].Deployment.RunningRelease != "2.0" {
		t.Fatalf("after the late commit: %+v; want d1 on 2.0 alone", third.Deployments)
	}
}

// A replica that starts with migrations to apply, as the first replica of a
// new version does in a rolling upgrade, must not wait for the running
// leader: the two locks were once the same key, and the new replica waited
// for as long as the old leader lived.
func TestMigratingDoesNotWaitForTheLeader(t *testing.T) {
	schemas := newSchemas(t)
	leader, err := postgres.Open(context.Background(), schemas.urlFor(t, t.Name()+"_running"))
	if err != nil {
		t.Fatal(err)
	}
	defer leader.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	elected, ended := make(chan struct{}), make(chan error, 1)
	go func() {
		ended <- leader.Lead(ctx, postgres.LeaderSettings{Every: 50 * time.Millisecond}, func() error {
			close(elected)
			return nil
		})
	}()
	<-elected

	// Another schema of the same database: advisory locks are the
	// database's, so its migrations meet the leader's lock if they share it.
	openCtx, stop := context.WithTimeout(context.Background(), 15*time.Second)
	defer stop()
	upgraded, err := postgres.Open(openCtx, schemas.urlFor(t, t.Name()+"_new"))
	if err != nil {
		t.Fatalf("a replica with migrations to apply, while another replica leads: %v", err)
	}
	upgraded.Close()
	cancel()
	if err := <-ended; err != nil {
		t.Fatalf("Lead at the end of its context: %v", err)
	}
}
