package httpapi_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/fsm"
	"github.com/coordd/coordd/httpapi"
)

// grantLeases grants n leases of ttl on ta (a leader) and returns them.
func grantLeases(t *testing.T, ta *testAPI, n int, ttl string) []api.Lease {
	t.Helper()
	out := make([]api.Lease, n)
	for i := range out {
		wantJSON(t, ta.do(t, "POST", "/v1/leases", `{"ttl":"`+ttl+`"}`), &out[i])
	}
	return out
}

// peerMetric reads a counter's value, or a histogram's sample count, from ta's
// registry (-1 if absent).
func peerMetric(ta *testAPI, name string) float64 {
	mfs, _ := ta.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		m := mf.GetMetric()[0]
		if c := m.GetCounter(); c != nil {
			return c.GetValue()
		}
		if h := m.GetHistogram(); h != nil {
			return float64(h.GetSampleCount())
		}
	}
	return -1
}

// keepalivePaths counts what the leader received from the follower: the
// coalesced renewals, and anything else.
func keepalivePaths(p pair, t *testing.T) (batches, other int) {
	for _, r := range p.forwarded(t) {
		if r.uri == "/v1/internal/keepalive" {
			batches++
		} else {
			other++
		}
	}
	return batches, other
}

// Test_KeepaliveCoalesced_AnswersEveryClientOnce: keepalives that many
// clients send to a follower, single and batched, reach the leader as
// fewer coalesced renewals, and each client gets exactly the answer the
// leader would have given it: its leases' TTLs, not_found for a lease that
// does not exist, Served-By the leader and Forwarded-By the follower.
func Test_KeepaliveCoalesced_AnswersEveryClientOnce(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	leases := grantLeases(t, p.leader, 8, "10s")
	const clients = 64
	var wg sync.WaitGroup
	errs := make(chan string, clients*2)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := leases[i%len(leases)]
			if i%8 == 7 {
				// A batch with a duplicate and an unknown lease.
				body := fmt.Sprintf(`{"ids":[%d,%d,999999,%d]}`, l.ID, leases[0].ID, l.ID)
				r := p.follower.do(t, "POST", "/v1/leases/keepalive", body)
				var out api.KeepaliveManyResponse
				if r.status != http.StatusOK || decodeStrict(r.body, &out) != nil {
					errs <- fmt.Sprintf("many: %d %s", r.status, r.body)
					return
				}
				if len(out.Leases) != 3 || out.Leases[0].ID != l.ID || out.Leases[1].ID != leases[0].ID || out.Leases[2].ID != l.ID ||
					out.Leases[0].TTLMs != 10000 || out.Leases[0].RemainingMs != 10000 || len(out.NotFound) != 1 || out.NotFound[0] != 999999 {
					errs <- fmt.Sprintf("many: %s", r.body)
				}
				return
			}
			r := p.follower.do(t, "POST", fmt.Sprintf("/v1/leases/%d/keepalive", l.ID), "")
			var out api.Lease
			if r.status != http.StatusOK || decodeStrict(r.body, &out) != nil {
				errs <- fmt.Sprintf("single: %d %s", r.status, r.body)
				return
			}
			if out.ID != l.ID || out.TTLMs != 10000 || out.RemainingMs != 10000 || out.TTLText != "10s" {
				errs <- fmt.Sprintf("single: %s", r.body)
			}
			if r.header.Get(api.HeaderServedBy) != "L" || r.header.Get(api.HeaderForwardedBy) != "F" {
				errs <- fmt.Sprintf("single: served by %q forwarded by %q", r.header.Get(api.HeaderServedBy), r.header.Get(api.HeaderForwardedBy))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	wantError(t, p.follower.do(t, "POST", "/v1/leases/424242/keepalive", ""), http.StatusNotFound, api.CodeLeaseNotFound)

	batches, other := keepalivePaths(p, t)
	if other != 0 || batches == 0 || batches > clients+1 {
		t.Errorf("the leader got %d coalesced renewals and %d other forwards for %d keepalives", batches, other, clients+1)
	}
	if got := peerMetric(p.follower, "coordd_forward_keepalive_batches_total"); got != float64(batches) {
		t.Errorf("coordd_forward_keepalive_batches_total %v, leader saw %d", got, batches)
	}
	t.Logf("%d client keepalives in %d renewals", clients+1, batches)
}

// Test_KeepaliveCoalesced_LeaderChangesMidBatch: a renewal in flight to a
// leader that stalls is resent to the new leader as soon as the follower
// sees it, and every waiting client is answered by the new leader.
func Test_KeepaliveCoalesced_LeaderChangesMidBatch(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	leases := grantLeases(t, p.leader, 4, "10s")
	p.leader.node.mu.Lock()
	newLeader := p.leader.node.leader
	p.leader.node.mu.Unlock()
	addr, got := stalledLeader(t)
	p.follower.node.set(func(n *fakeNode) { n.leader = api.Member{ID: "S", HTTPAddr: addr, Leader: true} })
	var chs []<-chan response
	for i := range 12 {
		chs = append(chs, p.follower.asyncWith(t, "POST", fmt.Sprintf("/v1/leases/%d/keepalive", leases[i%4].ID), ""))
	}
	eventually(t, 10*time.Second, "the stalled leader got the renewals", func() bool { return got() >= 1 })
	for _, ch := range chs {
		mustNotReturn(t, ch)
	}
	p.follower.node.set(func(n *fakeNode) { n.leader = newLeader })
	for _, ch := range chs {
		r := recv(t, ch, 5*time.Second)
		if r.status != http.StatusOK || r.header.Get(api.HeaderServedBy) != "L" {
			t.Fatalf("status %d served by %q: %s", r.status, r.header.Get(api.HeaderServedBy), r.body)
		}
	}
}

// Test_KeepaliveCoalesced_ClientGoesAway: a client that gives up while its
// renewal is in flight leaves the others' answers, and later keepalives,
// unaffected.
func Test_KeepaliveCoalesced_ClientGoesAway(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	leases := grantLeases(t, p.leader, 2, "10s")
	p.leader.node.mu.Lock()
	newLeader := p.leader.node.leader
	p.leader.node.mu.Unlock()
	addr, got := stalledLeader(t)
	p.follower.node.set(func(n *fakeNode) { n.leader = api.Member{ID: "S", HTTPAddr: addr, Leader: true} })
	ctx, cancel := context.WithCancel(context.Background())
	gone := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "POST", p.follower.srv.URL+fmt.Sprintf("/v1/leases/%d/keepalive", leases[0].ID), nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		gone <- err
	}()
	stay := p.follower.asyncWith(t, "POST", fmt.Sprintf("/v1/leases/%d/keepalive", leases[1].ID), "")
	eventually(t, 10*time.Second, "the stalled leader got a renewal", func() bool { return got() >= 1 })
	cancel()
	if err := <-gone; err == nil {
		t.Fatal("the cancelled request was answered")
	}
	mustNotReturn(t, stay)
	p.follower.node.set(func(n *fakeNode) { n.leader = newLeader })
	if r := recv(t, stay, 5*time.Second); r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if r := p.follower.do(t, "POST", fmt.Sprintf("/v1/leases/%d/keepalive", leases[0].ID), ""); r.status != http.StatusOK {
		t.Fatalf("a later keepalive: status %d: %s", r.status, r.body)
	}
}

// Test_KeepaliveCoalesced_IsBounded: renewals to a leader that stalls and
// stays the leader are answered with a retryable 503 within the write
// timeout (plus a second); without a leader, no_leader after LeaderWait.
func Test_KeepaliveCoalesced_IsBounded(t *testing.T) {
	t.Parallel()
	addr, _ := stalledLeader(t)
	f := newTestAPI(t, "F", &httpapi.Options{WriteTimeout: 100 * time.Millisecond, LeaderWait: 100 * time.Millisecond})
	f.node.set(func(n *fakeNode) { n.isLeader, n.leader = false, api.Member{ID: "S", HTTPAddr: addr, Leader: true} })
	start := time.Now()
	var chs []<-chan response
	for i := range 6 {
		chs = append(chs, f.asyncWith(t, "POST", fmt.Sprintf("/v1/leases/%d/keepalive", i+1), ""))
	}
	for _, ch := range chs {
		r := recv(t, ch, 5*time.Second)
		if r.status != http.StatusServiceUnavailable {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		if r.header.Get(api.HeaderRetryAfter) == "" {
			t.Errorf("no Retry-After: %v", r.header)
		}
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("answered after %s", d)
	}
	f.node.set(func(n *fakeNode) { n.hasLeader = false })
	wantError(t, f.do(t, "POST", "/v1/leases/1/keepalive", ""), http.StatusServiceUnavailable, api.CodeNoLeader)
	wantError(t, f.do(t, "POST", "/v1/leases/keepalive", `{"ids":[1,2]}`), http.StatusServiceUnavailable, api.CodeNoLeader)
}

// Test_KeepaliveCoalesced_NotLeaderAnywhere: a leader that has stepped down
// answers the renewal not_leader, which every waiting client gets (a
// retryable 503 naming the leader).
func Test_KeepaliveCoalesced_NotLeaderAnywhere(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	leases := grantLeases(t, p.leader, 1, "10s")
	p.leader.node.set(func(n *fakeNode) { n.isLeader = false })
	r := p.follower.do(t, "POST", fmt.Sprintf("/v1/leases/%d/keepalive", leases[0].ID), "")
	if d := wantError(t, r, http.StatusServiceUnavailable, api.CodeNotLeader); d.Leader != "L" {
		t.Errorf("names leader %q", d.Leader)
	}
}

// Test_PeerKeepalive_OnlyFromNodes: the internal endpoint refuses a caller
// that is not an authenticated node, and a malformed batch.
func Test_PeerKeepalive_OnlyFromNodes(t *testing.T) {
	t.Parallel()
	l := newTestAPI(t, "L", nil)
	body := string([]byte{1, 1, 1}) // lease 1
	wantError(t, l.do(t, "POST", "/v1/internal/keepalive", body), http.StatusForbidden, api.CodePermissionDenied)
	wantError(t, l.do(t, "POST", "/v1/internal/keepalive", body, "X-Coordd-Forwarded-By", "F"), http.StatusForbidden, api.CodePermissionDenied)
	auth := forwardedBy("F", "POST", "/v1/internal/keepalive")
	wantError(t, l.do(t, "POST", "/v1/internal/keepalive", string([]byte{1, 1, 0}), auth...), http.StatusBadRequest, api.CodeBadRequest)
	r := l.do(t, "POST", "/v1/internal/keepalive", body, auth...)
	if r.status != http.StatusOK || string(r.body) != string([]byte{1, 1, 0}) { // one lease, not found
		t.Fatalf("status %d body %x", r.status, r.body)
	}
}

// Test_KeepaliveCoalescing_Off: with coalescing off (and so with ACLs on,
// so that the leader checks each request's token and lease owner as
// before), a follower forwards each keepalive whole.
func Test_KeepaliveCoalescing_Off(t *testing.T) {
	t.Parallel()
	l := newTestAPI(t, "L", nil)
	f := newTestAPI(t, "F", &httpapi.Options{NoKeepaliveCoalescing: true})
	l.node.mu.Lock()
	info := l.node.leader
	l.node.mu.Unlock()
	f.node.set(func(n *fakeNode) { n.isLeader, n.leader = false, info })
	leases := grantLeases(t, l, 1, "10s")
	r := f.do(t, "POST", fmt.Sprintf("/v1/leases/%d/keepalive", leases[0].ID), "")
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	reqs := l.requests()
	if last := reqs[len(reqs)-1]; !strings.HasSuffix(last.uri, "/keepalive") || strings.HasPrefix(last.uri, "/v1/internal/") {
		t.Errorf("forwarded as %s", last.uri)
	}
}

// Test_KeepaliveCoalesced_LeaderRefusesFallsBackToAWholeForward: a leader
// that cannot authenticate the follower (no shared peer secret yet, or
// clocks too far apart) refuses the coalesced renewal with 403; the
// follower then forwards the client's keepalive whole, as without
// coalescing, and the client gets its 200 (make test caught a 403
// permission_denied relayed to a client in a new cluster's first moments).
func Test_KeepaliveCoalesced_LeaderRefusesFallsBackToAWholeForward(t *testing.T) {
	t.Parallel()
	l := newTestAPI(t, "L", nil)
	f := newTestAPI(t, "F", nil)
	l.node.mu.Lock()
	info := l.node.leader
	l.node.mu.Unlock()
	f.node.set(func(n *fakeNode) {
		n.isLeader, n.leader = false, info
		n.secret = bytes.Repeat([]byte{0x17}, fsm.PeerSecretSize)
	})
	leases := grantLeases(t, l, 2, "10s")
	r := f.do(t, "POST", fmt.Sprintf("/v1/leases/%d/keepalive", leases[0].ID), "")
	if r.status != http.StatusOK {
		t.Fatalf("single: status %d: %s", r.status, r.body)
	}
	r = f.do(t, "POST", "/v1/leases/keepalive", fmt.Sprintf(`{"ids":[%d,%d]}`, leases[0].ID, leases[1].ID))
	var many api.KeepaliveManyResponse
	wantJSON(t, r, &many)
	if len(many.Leases) != 2 || len(many.NotFound) != 0 {
		t.Fatalf("many: %+v", many)
	}
	var internal, whole int
	for _, q := range l.requests() {
		switch {
		case strings.HasPrefix(q.uri, "/v1/internal/keepalive"):
			internal++
		case strings.HasSuffix(q.uri, "/keepalive"):
			whole++
		}
	}
	if internal == 0 || whole != 2 {
		t.Fatalf("leader received %d coalesced renewals and %d whole keepalives, want some and 2", internal, whole)
	}
}

// Test_Forward_H2C: a follower forwards over HTTP/1.1 until the leader
// says it accepts unencrypted HTTP/2, then over HTTP/2; answers are the
// same either way.
func Test_Forward_H2C(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	n := newFakeNode("L")
	a := httpapi.New(n, httpapi.Options{Registry: reg, PeerH2C: true})
	var mu sync.Mutex
	var protos []int
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		protos = append(protos, r.ProtoMajor)
		mu.Unlock()
		a.ServeHTTP(w, r)
	}))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	n.set(func(n *fakeNode) { n.leader.HTTPAddr = srv.Listener.Addr().String() })
	n.mu.Lock()
	info := n.leader
	n.mu.Unlock()

	f := newTestAPI(t, "F", nil)
	f.node.set(func(n *fakeNode) { n.isLeader, n.leader = false, info })
	for i := range 4 {
		r := f.do(t, "PUT", fmt.Sprintf("/v1/kv/k%d", i), "v")
		if r.status != http.StatusOK || r.header.Get(api.HeaderServedBy) != "L" {
			t.Fatalf("put %d: status %d served by %q: %s", i, r.status, r.header.Get(api.HeaderServedBy), r.body)
		}
	}
	r := f.do(t, "GET", "/v1/kv/k3", "")
	if r.status != http.StatusOK {
		t.Fatalf("get: %d %s", r.status, r.body)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(protos) != 5 || protos[0] != 1 || protos[1] != 2 || protos[4] != 2 {
		t.Errorf("protocols of the forwards: %v, want HTTP/1 then HTTP/2", protos)
	}
}

// Test_Forward_H2C_FollowsLeadership: forwards that share one HTTP/2
// connection to a leader that stalls are each cancelled when the follower
// sees a new leader, and resent to it (or answered outcome_unknown), as
// over HTTP/1.1.
func Test_Forward_H2C_FollowsLeadership(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.leader.putKV(t, "k", "v1")
	leases := grantLeases(t, p.leader, 1, "10s")
	p.leader.node.mu.Lock()
	newLeader := p.leader.node.leader
	p.leader.node.mu.Unlock()

	var mu sync.Mutex
	stalled, h2 := 0, 0
	done := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Coordd-Peer-Proto", "h2c")
		if r.URL.Path == "/v1/kv/teach" {
			return // the first answer tells the follower it speaks h2c
		}
		mu.Lock()
		stalled++
		if r.ProtoMajor == 2 {
			h2++
		}
		mu.Unlock()
		select {
		case <-done:
		case <-r.Context().Done():
		}
	}))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(func() { close(done); srv.Close() })
	addr := srv.Listener.Addr().String()
	p.follower.node.set(func(n *fakeNode) { n.leader = api.Member{ID: "S", HTTPAddr: addr, Leader: true} })
	// Teach the follower that S speaks h2c: a forward answered by S.
	p.follower.do(t, "GET", "/v1/kv/teach", "")

	get := p.follower.async(t, "GET", "/v1/kv/k")
	ka := p.follower.asyncWith(t, "POST", fmt.Sprintf("/v1/leases/%d/keepalive", leases[0].ID), "")
	put := p.follower.asyncWith(t, "PUT", "/v1/kv/k2", "v")
	eventually(t, 10*time.Second, "the stalled leader got the forwards", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return stalled == 3
	})
	mu.Lock()
	if h2 != 3 {
		t.Errorf("%d of 3 forwards over HTTP/2", h2)
	}
	mu.Unlock()
	p.follower.node.set(func(n *fakeNode) { n.leader = newLeader })
	for _, ch := range []<-chan response{get, ka} {
		if r := recv(t, ch, 5*time.Second); r.status != http.StatusOK || r.header.Get(api.HeaderServedBy) != "L" {
			t.Fatalf("status %d served by %q: %s", r.status, r.header.Get(api.HeaderServedBy), r.body)
		}
	}
	wantError(t, recv(t, put, 5*time.Second), http.StatusServiceUnavailable, api.CodeOutcomeUnknown)
}
