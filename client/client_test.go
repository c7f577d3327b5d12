package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coordd/coordd/client"
	"github.com/coordd/coordd/fsm"
	"github.com/coordd/coordd/internal/testcluster"
)

func endpoints(c *testcluster.Cluster) []string {
	var out []string
	for _, n := range c.Nodes {
		out = append(out, n.HTTPAddr)
	}
	return out
}

func newClient(t *testing.T, eps []string, mod ...func(*client.Config)) *client.Client {
	t.Helper()
	cfg := client.Config{Endpoints: eps, BreakerOpenFor: 200 * time.Millisecond}
	for _, m := range mod {
		m(&cfg)
	}
	c, err := client.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestClient_KVRoundTripAndTypedErrors(t *testing.T) {
	t.Parallel()
	cl := testcluster.New(t, 3)
	c := newClient(t, endpoints(cl))
	ctx := ctxT(t, 30*time.Second)
	w, err := c.Put(ctx, "a/b", []byte{0xff, 0x00, 'x'})
	if err != nil {
		t.Fatal(err)
	}
	kv, err := c.Get(ctx, "a/b")
	if err != nil || string(kv.Value) != "\xff\x00x" || kv.ModifyIndex != w.ModifyIndex {
		t.Fatalf("get: %+v %v", kv, err)
	}
	_, err = c.Put(ctx, "a/b", []byte("y"), client.WithCAS(w.ModifyIndex-1))
	var se *client.Error
	if !errors.Is(err, client.ErrCASConflict) || !errors.As(err, &se) || se.CurrentIndex != w.ModifyIndex {
		t.Fatalf("cas conflict: %v", err)
	}
	if _, err := c.Get(ctx, "missing"); !errors.Is(err, client.ErrKeyNotFound) {
		t.Fatalf("missing: %v", err)
	}
	if _, err := c.Put(ctx, "a/c", []byte("1"), client.CreateOnly()); err != nil {
		t.Fatal(err)
	}
	list, idx, err := c.List(ctx, "a/")
	if err != nil || len(list) != 2 || idx == 0 {
		t.Fatalf("list: %+v %d %v", list, idx, err)
	}
	// Stale reads are spread over the nodes and catch up.
	testcluster.Poll(t, 5*time.Second, func() error {
		if l, _, err := c.List(ctx, "a/", client.Stale()); err != nil || len(l) != 2 {
			return fmt.Errorf("stale list: %d %v", len(l), err)
		}
		return nil
	})
	if d, err := c.Delete(ctx, "a/", client.DeletePrefix()); err != nil || d.Deleted != 2 {
		t.Fatalf("delete prefix: %+v %v", d, err)
	}
}

func TestClient_KeepsWorkingThroughLeaderAndFollowerKills(t *testing.T) {
	t.Parallel()
	cl := testcluster.New(t, 3)
	c := newClient(t, endpoints(cl))
	ctx := ctxT(t, 60*time.Second)
	var (
		mu      sync.Mutex
		acks    []time.Time
		failed  []error
		stop    = make(chan struct{})
		wg      sync.WaitGroup
		counter atomic.Int64
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			i := counter.Add(1)
			_, err := c.Put(ctx, fmt.Sprintf("k/%05d", i), []byte("v"))
			mu.Lock()
			if err != nil {
				failed = append(failed, err)
			} else {
				acks = append(acks, time.Now())
			}
			mu.Unlock()
		}
	}()
	time.Sleep(300 * time.Millisecond)
	leader := cl.Leader()
	killed := time.Now()
	cl.Kill(leader)
	cl.Leader()
	time.Sleep(500 * time.Millisecond)
	cl.Restart(leader)
	cl.WaitReady(leader)
	f := cl.Followers()[0]
	cl.Kill(f)
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(failed) > 0 {
		t.Fatalf("%d calls failed through the kills, first: %v", len(failed), failed[0])
	}
	var first time.Duration = -1
	for _, a := range acks {
		if a.After(killed) {
			first = a.Sub(killed)
			break
		}
	}
	t.Logf("client: %d writes, 0 errors; first write acknowledged %s after the Raft leader was killed", len(acks), first.Round(time.Millisecond))
	list, _, err := c.List(ctx, "k/")
	if err != nil || int64(len(list)) != counter.Load()-0 && int64(len(list)) != counter.Load() {
		t.Fatalf("listing: %d keys for %d writes (%v)", len(list), counter.Load(), err)
	}
}

// slowProxy forwards to a node; while hold is set, it keeps each answer back
// for delay after the node has given it (the write is applied, the client
// times out).
type slowProxy struct {
	target string
	delay  time.Duration
	hold   atomic.Bool
	cut    atomic.Bool
	hits   atomic.Int64
}

func (p *slowProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.hits.Add(1)
	if p.cut.Load() {
		// A black hole: hold the request until the client gives up.
		<-r.Context().Done()
		return
	}
	req, _ := http.NewRequestWithContext(context.Background(), r.Method, "http://"+p.target+r.URL.RequestURI(), r.Body)
	req.Header = r.Header.Clone()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if p.hold.CompareAndSwap(true, false) {
		time.Sleep(p.delay)
	}
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	w.Write(body)
}

func TestClient_ARequestRetriedAfterATimeoutAppliesOnce(t *testing.T) {
	t.Parallel()
	cl := testcluster.New(t, 3)
	p := &slowProxy{target: cl.Leader().HTTPAddr, delay: time.Second}
	srv := httptest.NewServer(p)
	defer srv.Close()
	c := newClient(t, []string{srv.URL}, func(cfg *client.Config) { cfg.AttemptTimeout = 300 * time.Millisecond })
	ctx := ctxT(t, 30*time.Second)
	p.hold.Store(true)
	l, err := c.Grant(ctx, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if p.hits.Load() < 2 {
		t.Fatalf("the grant was not retried (%d requests)", p.hits.Load())
	}
	all, err := c.Leases(ctx)
	if err != nil || len(all) != 1 || all[0].ID != l.ID {
		t.Fatalf("after a retried grant: %+v %v", all, err)
	}
}

func TestSession_SurvivesARaftLeaderChange(t *testing.T) {
	t.Parallel()
	cl := testcluster.New(t, 3)
	c := newClient(t, endpoints(cl))
	ctx := ctxT(t, 30*time.Second)
	s, err := client.NewSession(ctx, c, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	cl.Kill(cl.Leader())
	cl.Leader()
	time.Sleep(3 * time.Second) // longer than the TTL, across the failover
	if err := s.Err(); err != nil {
		t.Fatalf("session lost across a leader change: %v", err)
	}
	if _, err := c.TimeToLive(ctx, s.Lease()); err != nil {
		t.Fatalf("lease: %v", err)
	}
}

func TestSession_CutOffReportsLossNoLaterThanItsSafeDeadline(t *testing.T) {
	t.Parallel()
	cl := testcluster.New(t, 3)
	p := &slowProxy{target: cl.Leader().HTTPAddr}
	srv := httptest.NewServer(p)
	defer srv.Close()
	c := newClient(t, []string{srv.URL}, func(cfg *client.Config) { cfg.AttemptTimeout = 200 * time.Millisecond })
	ctx := ctxT(t, 30*time.Second)
	s, err := client.NewSession(ctx, c, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	p.cut.Store(true) // the process can no longer reach the cluster
	deadline := s.Deadline()
	select {
	case <-s.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("session still trusted 5s after it was cut off")
	}
	late := time.Since(deadline)
	if !errors.Is(s.Err(), client.ErrLeaseLost) {
		t.Fatalf("err = %v", s.Err())
	}
	// Done closes at the safe deadline (timer slack aside), never later.
	if late > 250*time.Millisecond { // timer and scheduling slack on a loaded machine
		t.Fatalf("Done closed %s after the safe deadline", late)
	}
	t.Logf("cut off: Done closed %s after the safe deadline", late.Round(time.Millisecond))
}

func TestCampaign_FailsAtOnceWhenItsLeaseIsLost(t *testing.T) {
	t.Parallel()
	cl := testcluster.New(t, 3)
	c := newClient(t, endpoints(cl))
	ctx := ctxT(t, 30*time.Second)
	a, _ := client.NewSession(ctx, c, 10*time.Second)
	b, _ := client.NewSession(ctx, c, 10*time.Second)
	defer a.Close(context.Background())
	if _, err := client.NewElection(a, "svc").Campaign(ctx, "A"); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := client.NewElection(b, "svc").Campaign(ctx, "B")
		errc <- err
	}()
	time.Sleep(300 * time.Millisecond)
	if err := c.Revoke(ctx, b.Lease()); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, client.ErrLeaseLost) {
			t.Fatalf("campaign after its lease was revoked: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("campaign kept waiting after its lease was lost")
	}
}

func TestLeadership_ContextEndsWhenLost_AndObserveSeesEveryLeaderInOrder(t *testing.T) {
	t.Parallel()
	cl := testcluster.New(t, 3)
	c := newClient(t, endpoints(cl))
	ctx := ctxT(t, 30*time.Second)
	a, _ := client.NewSession(ctx, c, 10*time.Second)
	b, _ := client.NewSession(ctx, c, 10*time.Second)
	defer a.Close(context.Background())
	defer b.Close(context.Background())
	obs := c.Observe(ctx, "svc")
	next := func() client.LeaderEvent {
		t.Helper()
		for {
			select {
			case ev := <-obs:
				if ev.Err == nil {
					return ev
				}
			case <-time.After(10 * time.Second):
				t.Fatal("no event")
			}
		}
	}
	if ev := next(); ev.Leader != nil {
		t.Fatalf("first event: %+v", ev.Leader)
	}
	la, err := client.NewElection(a, "svc").Campaign(ctx, "A")
	if err != nil {
		t.Fatal(err)
	}
	if ev := next(); ev.Leader == nil || ev.Leader.Token != la.Token() {
		t.Fatalf("A not observed: %+v", ev.Leader)
	}
	lbc := make(chan *client.Leadership, 1)
	go func() {
		lb, err := client.NewElection(b, "svc").Campaign(ctx, "B")
		if err != nil {
			t.Error(err)
		}
		lbc <- lb
	}()
	time.Sleep(200 * time.Millisecond)
	// A loses leadership by its lease being revoked behind its back.
	if err := c.Revoke(ctx, a.Lease()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-la.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("A's leadership context not cancelled after losing it")
	}
	lb := <-lbc
	evB := next()
	for evB.Leader == nil || evB.Leader.Value != "B" {
		evB = next() // the queueing of B is a change too
	}
	if evB.Leader.Token != lb.Token() || lb.Token() <= la.Token() {
		t.Fatalf("B observed with token %d, holds %d (A had %d)", evB.Leader.Token, lb.Token(), la.Token())
	}
	if err := lb.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if ev := next(); ev.Leader != nil {
		t.Fatalf("no-leader not observed: %+v", ev.Leader)
	}
}

func TestMutex_LockTryLockUnlock(t *testing.T) {
	t.Parallel()
	cl := testcluster.New(t, 3)
	c := newClient(t, endpoints(cl))
	ctx := ctxT(t, 30*time.Second)
	a, _ := client.NewSession(ctx, c, 10*time.Second)
	b, _ := client.NewSession(ctx, c, 10*time.Second)
	defer a.Close(context.Background())
	defer b.Close(context.Background())
	ma, mb := client.NewMutex(a, "m", client.LockOptions{}), client.NewMutex(b, "m", client.LockOptions{})
	// The context of Lock bounds the wait only: the lock outlives it.
	lctx, lcancel := context.WithTimeout(ctx, 5*time.Second)
	if err := ma.Lock(lctx); err != nil {
		t.Fatal(err)
	}
	lcancel()
	time.Sleep(100 * time.Millisecond)
	if err := ma.Context().Err(); err != nil {
		t.Fatalf("lock context ended with the acquisition context: %v", context.Cause(ma.Context()))
	}
	if err := mb.TryLock(ctx); !errors.Is(err, client.ErrLocked) {
		t.Fatalf("TryLock of a held lock: %v", err)
	}
	ta := ma.Token()
	if err := ma.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := mb.TryLock(ctx); err != nil || mb.Token() <= ta {
		t.Fatalf("TryLock of a free lock: %v (token %d after %d)", err, mb.Token(), ta)
	}
	if fc, err := c.CheckToken(ctx, "m", ta); err != nil || fc.Current {
		t.Fatalf("old token still current: %+v %v", fc, err)
	}
}

func TestBreaker_OpensOnADeadEndpointAndClosesWhenItReturns(t *testing.T) {
	t.Parallel()
	cl := testcluster.New(t, 3)
	c := newClient(t, endpoints(cl))
	ctx := ctxT(t, 30*time.Second)
	dead := cl.Followers()[0]
	cl.Kill(dead)
	state := func() string {
		for _, h := range c.Health() {
			if h.URL == "http://"+dead.HTTPAddr {
				return h.State
			}
		}
		return "?"
	}
	testcluster.Poll(t, 10*time.Second, func() error {
		if _, err := c.Status(ctx); err != nil {
			return err
		}
		if s := state(); s != "open" {
			return fmt.Errorf("breaker of the dead endpoint is %s", s)
		}
		return nil
	})
	// Calls keep succeeding while it is open.
	for range 20 {
		if _, err := c.Status(ctx); err != nil {
			t.Fatal(err)
		}
	}
	cl.Restart(dead)
	cl.WaitReady(dead)
	testcluster.Poll(t, 10*time.Second, func() error {
		if _, err := c.Status(ctx); err != nil {
			return err
		}
		if s := state(); s != "closed" {
			return fmt.Errorf("breaker of the returned endpoint is %s", s)
		}
		return nil
	})
}

func TestClient_LearnsWhichEndpointLeadsThroughForwardedAnswers(t *testing.T) {
	t.Parallel()
	cl := testcluster.New(t, 3)
	f, l := cl.Followers()[0], cl.Leader()
	c := newClient(t, []string{f.HTTPAddr, l.HTTPAddr})
	ctx := ctxT(t, 30*time.Second)
	for range 5 {
		if _, err := c.Put(ctx, "k", []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	h := c.Health()
	// A forwarded answer names the follower as the node that was asked;
	// it must not be taken for the leader.
	if h[0].Node != f.ID || h[1].Node != l.ID {
		t.Fatalf("endpoint ids: %+v (follower %s, leader %s)", h, f.ID, l.ID)
	}
	// Through the follower alone every write is forwarded.
	only := newClient(t, []string{f.HTTPAddr})
	if _, err := only.Put(ctx, "k", []byte("w")); err != nil {
		t.Fatal(err)
	}
	if h := only.Health(); h[0].Node != f.ID {
		t.Fatalf("a forwarding follower was taken for %s", h[0].Node)
	}
}

func TestSaveSnapshot_IsAConsistentCopyOfTheClusterState(t *testing.T) {
	t.Parallel()
	cl := testcluster.New(t, 3)
	c := newClient(t, []string{cl.Followers()[0].HTTPAddr})
	ctx := ctxT(t, 30*time.Second)
	for i := range 20 {
		if _, err := c.Put(ctx, fmt.Sprintf("s/%02d", i), []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	index, size, err := c.SaveSnapshot(ctx, &buf)
	if err != nil || size != int64(buf.Len()) || index == 0 {
		t.Fatalf("save: index %d size %d (%d bytes): %v", index, size, buf.Len(), err)
	}
	st, err := fsm.ReadState(&buf)
	if err != nil {
		t.Fatal(err)
	}
	list, _, err := c.List(ctx, "s/")
	if err != nil || st.Index() != index || st.KVLen() != len(list) {
		t.Fatalf("snapshot at %d has %d keys, the cluster %d (%v)", st.Index(), st.KVLen(), len(list), err)
	}
	for _, kv := range list {
		if e, ok := st.Get(kv.Key); !ok || string(e.Value) != string(kv.Value) {
			t.Fatalf("key %s differs in the snapshot", kv.Key)
		}
	}
}

func TestRestoreSnapshot_PutsTheBackupBackAndRefusesAnUnsoundFile(t *testing.T) {
	t.Parallel()
	cl := testcluster.New(t, 3)
	c := newClient(t, []string{cl.Followers()[0].HTTPAddr, cl.Followers()[1].HTTPAddr})
	ctx := ctxT(t, 30*time.Second)
	if _, err := c.Put(ctx, "r/a", []byte("before")); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	index, _, err := c.SaveSnapshot(ctx, &buf)
	if err != nil {
		t.Fatal(err)
	}
	backup := buf.Bytes()
	if _, err := c.Put(ctx, "r/a", []byte("after")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RestoreSnapshot(ctx, bytes.NewReader(backup[:len(backup)-3]), client.RestoreOptions{}); !errors.Is(err, client.ErrBadRequest) {
		t.Fatalf("truncated backup: %v, want ErrBadRequest", err)
	}
	res, err := c.RestoreSnapshot(ctx, bytes.NewReader(backup), client.RestoreOptions{Bump: 100})
	if err != nil {
		t.Fatal(err)
	}
	if res.BackupIndex != index || res.Index < index+100 || res.Keys != 1 || res.Digest == "" {
		t.Fatalf("restore result %+v (backup at %d)", res, index)
	}
	kv, err := c.Get(ctx, "r/a")
	if err != nil || string(kv.Value) != "before" {
		t.Fatalf("after restore: %+v %v", kv, err)
	}
}

// LockNew and CampaignNew grant the lease with the acquisition; the lease
// lives, is kept alive with KeepAliveMany and takes the lock with it when
// revoked. A follower forwards both.
func TestLockNewAndKeepAliveMany_AgainstARealCluster(t *testing.T) {
	t.Parallel()
	cl := testcluster.New(t, 3)
	c := newClient(t, endpoints(cl))
	ctx := ctxT(t, 30*time.Second)
	a, err := c.LockNew(ctx, "job", 2*time.Second, 0, client.LockOptions{})
	if err != nil || !a.Leader || a.Lease == 0 || a.Token != a.Lease {
		t.Fatalf("LockNew: %+v %v", a, err)
	}
	b, err := c.LockNew(ctx, "job", 2*time.Second, 0, client.LockOptions{})
	if err != nil || b.Leader || b.Position != 1 {
		t.Fatalf("second LockNew: %+v %v", b, err)
	}
	e, err := c.CampaignNew(ctx, "el", 3*time.Second, "me", 0)
	if err != nil || !e.Leader {
		t.Fatalf("CampaignNew: %+v %v", e, err)
	}
	// Keep a and e alive past their TTLs; b is left to expire.
	ids := []uint64{a.Lease, e.Lease, 999999}
	for range 6 {
		res, err := c.KeepAliveMany(ctx, ids)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Leases) != 2 || res.Leases[0].ID != a.Lease || res.Leases[0].TTLMs != 2000 ||
			len(res.NotFound) != 1 || res.NotFound[0] != 999999 {
			t.Fatalf("KeepAliveMany: %+v", res)
		}
		time.Sleep(600 * time.Millisecond)
	}
	if l, err := c.TimeToLive(ctx, b.Lease); !errors.Is(err, client.ErrLeaseNotFound) {
		t.Fatalf("b's lease was not kept alive but lives: %+v %v", l, err)
	}
	st, err := c.LockState(ctx, "job")
	if err != nil || st.Leader == nil || st.Leader.Lease != a.Lease {
		t.Fatalf("lock after b expired: %+v %v", st, err)
	}
	if err := c.Revoke(ctx, a.Lease); err != nil {
		t.Fatal(err)
	}
	if st, err := c.LockState(ctx, "job"); err != nil || st.Leader != nil {
		t.Fatalf("lock after its holder's lease was revoked: %+v %v", st, err)
	}
}
