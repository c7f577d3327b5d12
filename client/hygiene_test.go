package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coordd/coordd/client"
	"github.com/coordd/coordd/internal/testcluster"
)

// clientGoroutines lists the goroutines running code of package client
// (not its tests).
func clientGoroutines() []string {
	buf := make([]byte, 1<<22)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, "github.com/coordd/coordd/client.") {
			out = append(out, g)
		}
	}
	return out
}

// Client.Close ends every Session (its lease revoked), every watcher of a
// held election or lock, every Watch and Observe, and leaves no goroutine
// of the package behind. Before the fix Sessions renewed their leases
// forever after Close. Not parallel: it counts the process's goroutines.
func TestClient_CloseEndsEverySessionAndGoroutine(t *testing.T) {
	cl := testcluster.New(t, 3)
	other := newClient(t, endpoints(cl))
	ctx := ctxT(t, 60*time.Second)
	c, err := client.New(ctx, client.Config{Endpoints: endpoints(cl)})
	if err != nil {
		t.Fatal(err)
	}
	var sessions []*client.Session
	for range 3 {
		s, err := client.NewSession(ctx, c, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, s)
	}
	if _, err := client.NewElection(sessions[0], "e").Campaign(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	if err := client.NewMutex(sessions[1], "m", client.LockOptions{}).Lock(ctx); err != nil {
		t.Fatal(err)
	}
	watch := c.Watch(context.Background(), "k")
	observe := c.Observe(context.Background(), "e")
	<-watch
	<-observe
	if n := len(clientGoroutines()); n == 0 {
		t.Fatal("no client goroutine found: the probe is broken")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for i, s := range sessions {
		if !errors.Is(s.Err(), client.ErrSessionClosed) {
			t.Errorf("session %d after Close: %v", i, s.Err())
		}
		if _, err := other.TimeToLive(ctx, s.Lease()); !errors.Is(err, client.ErrLeaseNotFound) {
			t.Errorf("lease of session %d after Close: %v", i, err)
		}
	}
	for range watch { // both channels close
	}
	for range observe {
	}
	testcluster.Poll(t, 10*time.Second, func() error {
		if g := clientGoroutines(); len(g) > 0 {
			return fmt.Errorf("%d client goroutines left after Close, first:\n%s", len(g), g[0])
		}
		return nil
	})
	if _, err := c.Put(ctx, "k", []byte("v")); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("a call after Close: %v", err)
	}
	if _, err := client.NewSession(ctx, c, 5*time.Second); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("a session after Close: %v", err)
	}
}

// loseProxy forwards to a node; when lose is set, the next call whose path
// contains match is applied by the node but its answer is replaced by a
// 502 from the "proxy" (a load balancer that dropped the answer).
type loseProxy struct {
	target string
	match  string
	lose   atomic.Bool
}

func (p *loseProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req, _ := http.NewRequestWithContext(r.Context(), r.Method, "http://"+p.target+r.URL.RequestURI(), r.Body)
	req.Header = r.Header.Clone()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if r.Method != http.MethodGet && strings.Contains(r.URL.Path, p.match) && p.lose.CompareAndSwap(true, false) {
		http.Error(w, "<html>bad gateway</html>", http.StatusBadGateway)
		return
	}
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	w.Write(body)
}

// A campaign or lock attempt that fails or is given up at any step leaves
// nothing behind: not a waiting candidacy (Raft would promote it later with
// nobody aware), not a hold nobody knows of. Steps: ctx ended before the
// call; ctx ended while queued; the answer lost after the node queued the
// lease; the answer lost after the node made the lease the holder; TryLock
// finding the lock held. Before the fix the lost answers left the lease
// queued or holding.
func TestAcquire_AFailedOrAbandonedAttemptIsWithdrawnAtEveryStep(t *testing.T) {
	t.Parallel()
	cl := testcluster.New(t, 3)
	p := &loseProxy{target: cl.Leader().HTTPAddr}
	srv := httptest.NewServer(p)
	defer srv.Close()
	c := newClient(t, []string{srv.URL})
	direct := newClient(t, endpoints(cl))
	ctx := ctxT(t, 60*time.Second)
	holder, err := client.NewSession(ctx, direct, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s, err := client.NewSession(ctx, c, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	empty := func(step, kind, name string) {
		t.Helper()
		var st *client.ElectionState
		if kind == "locks" {
			st, err = direct.LockState(ctx, name)
		} else {
			st, err = direct.Election(ctx, name)
		}
		if errors.Is(err, client.ErrNotHolder) { // no such name: nothing left
			return
		}
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		for _, cand := range append(st.Holders, st.Candidates...) {
			if cand.Lease == s.Lease() {
				t.Errorf("%s: the lease is still listed in %s %q: %+v", step, kind, name, st)
			}
		}
		if st.Leader != nil && st.Leader.Lease == s.Lease() {
			t.Errorf("%s: the lease still holds %s %q", step, kind, name)
		}
	}
	held := func(name string) {
		if err := client.NewMutex(holder, name, client.LockOptions{}).Lock(ctx); err != nil {
			t.Fatal(err)
		}
	}

	// 1. ctx ended before the call.
	done, cancel := context.WithCancel(ctx)
	cancel()
	if err := client.NewMutex(s, "l1", client.LockOptions{}).Lock(done); err == nil {
		t.Fatal("Lock with an ended context succeeded")
	}
	empty("cancelled before", "locks", "l1")

	// 2. ctx ended while queued behind a holder.
	held("l2")
	wctx, wcancel := context.WithTimeout(ctx, 500*time.Millisecond)
	if err := client.NewMutex(s, "l2", client.LockOptions{}).Lock(wctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("queued Lock: %v", err)
	}
	wcancel()
	empty("cancelled while queued", "locks", "l2")

	// 3. The answer lost after the node queued the lease.
	held("l3")
	p.match = "/v1/locks/l3"
	p.lose.Store(true)
	qctx, qcancel := context.WithTimeout(ctx, 2*time.Second) // the node answers when its wait ends
	if err := client.NewMutex(s, "l3", client.LockOptions{}).Lock(qctx); err == nil {
		t.Fatal("Lock whose answer was lost succeeded")
	}
	qcancel()
	empty("answer lost while queued", "locks", "l3")

	// 4. The answer lost after the node made the lease the holder, for a
	// lock and for an election.
	p.match = "/v1/locks/l4"
	p.lose.Store(true)
	if err := client.NewMutex(s, "l4", client.LockOptions{}).Lock(ctx); err == nil {
		t.Fatal("Lock whose answer was lost succeeded")
	}
	empty("answer lost when made holder", "locks", "l4")
	p.match = "/v1/elections/e4/campaign"
	p.lose.Store(true)
	if _, err := client.NewElection(s, "e4").Campaign(ctx, "v"); err == nil {
		t.Fatal("Campaign whose answer was lost succeeded")
	}
	empty("campaign answer lost when made holder", "elections", "e4")

	// 5. TryLock finding the lock held.
	held("l5")
	if err := client.NewMutex(s, "l5", client.LockOptions{}).TryLock(ctx); !errors.Is(err, client.ErrLocked) {
		t.Fatalf("TryLock of a held lock: %v", err)
	}
	empty("TryLock of a held lock", "locks", "l5")
}

// Lock on a Mutex that already holds the lock is an error, not a second
// acquisition that orphans the first one's watcher.
func TestMutex_LockOnAHeldMutexFails(t *testing.T) {
	t.Parallel()
	cl := testcluster.New(t, 3)
	c := newClient(t, endpoints(cl))
	ctx := ctxT(t, 30*time.Second)
	s, err := client.NewSession(ctx, c, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	m := client.NewMutex(s, "m", client.LockOptions{})
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	token := m.Token()
	if err := m.Lock(ctx); !errors.Is(err, client.ErrAlreadyLocked) {
		t.Fatalf("second Lock: %v", err)
	}
	if err := m.TryLock(ctx); !errors.Is(err, client.ErrAlreadyLocked) {
		t.Fatalf("TryLock on a held mutex: %v", err)
	}
	if m.Token() != token || m.Context().Err() != nil {
		t.Fatalf("the held lock changed: token %d (was %d), ctx %v", m.Token(), token, m.Context().Err())
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Lock(ctx); err != nil || m.Token() <= token {
		t.Fatalf("Lock after Unlock: %v (token %d)", err, m.Token())
	}
}
