package httpapi_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/httpapi"
)

// pair is a leader and a follower whose node knows the leader's address.
type pair struct{ leader, follower *testAPI }

func newPair(t *testing.T) pair { t.Helper(); return newPairOpts(t, nil) }

// newPairOpts is newPair with both APIs built with opts (nil: defaults).
func newPairOpts(t *testing.T, opts *httpapi.Options) pair {
	t.Helper()
	l := newTestAPI(t, "L", opts)
	f := newTestAPI(t, "F", opts)
	l.node.mu.Lock()
	info := l.node.leader
	l.node.mu.Unlock()
	f.node.set(func(n *fakeNode) { n.isLeader, n.leader = false, info })
	return pair{leader: l, follower: f}
}

// forwarded returns the requests the leader received from the follower.
func (p pair) forwarded(t *testing.T) []seenRequest {
	t.Helper()
	var out []seenRequest
	for _, r := range p.leader.requests() {
		if r.header.Get("X-Coordd-Forwarded-By") != "" {
			if by := r.header.Get("X-Coordd-Forwarded-By"); by != "F" {
				t.Errorf("X-Coordd-Forwarded-By %q, want F", by)
			}
			out = append(out, r)
		}
	}
	return out
}

func forwardedTotal(ta *testAPI) float64 {
	mfs, _ := ta.reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "coordd_http_forwarded_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return -1
}

// wholeForwards is the option of a pair whose follower forwards every
// request whole (the encoded path, peerapply_test.go, off).
var wholeForwards = &httpapi.Options{NoEncodedForwarding: true}

func TestForwardPut(t *testing.T) {
	t.Parallel()
	p := newPairOpts(t, wholeForwards)
	body := "\x00\xffbinary\r\nbody" + strings.Repeat("z", 100_000)
	r := p.follower.do(t, "PUT", "/v1/kv/a%20b/c%2Fd?cas=0", body, "X-Custom", "kept", "X-Request-Id", "req-1")
	var w api.KVWriteResult
	wantJSON(t, r, &w)
	if w.Key != "a b/c/d" || w.Version != 1 {
		t.Fatalf("forwarded put: %+v", w)
	}
	if s := r.header.Get("X-Coordd-Served-By"); s != "L" {
		t.Errorf("X-Coordd-Served-By %q, want L", s)
	}
	fw := p.forwarded(t)
	if len(fw) != 1 {
		t.Fatalf("leader got %d forwarded requests", len(fw))
	}
	got := fw[0]
	if got.method != "PUT" || got.uri != "/v1/kv/a%20b/c%2Fd?cas=0" {
		t.Errorf("forwarded %s %s", got.method, got.uri)
	}
	if !bytes.Equal(got.body, []byte(body)) {
		t.Errorf("forwarded body of %d bytes differs from the %d sent", len(got.body), len(body))
	}
	if got.header.Get("X-Custom") != "kept" || got.header.Get("X-Request-Id") != "req-1" {
		t.Errorf("end-to-end headers not forwarded: %v", got.header)
	}
	// Written on the leader's node, not on the follower's.
	if e, ok := p.leader.node.fsm.State().Get("a b/c/d"); !ok || string(e.Value) != body {
		t.Errorf("leader state lacks the value")
	}
	if _, applies := p.follower.node.counts(); applies != 0 || p.follower.node.fsm.State().KVLen() != 0 {
		t.Errorf("follower applied locally")
	}
	if n := forwardedTotal(p.follower); n != 1 {
		t.Errorf("coordd_http_forwarded_total %v, want 1", n)
	}
}

func TestForwardDelete(t *testing.T) {
	t.Parallel()
	p := newPairOpts(t, wholeForwards)
	w := p.leader.putKV(t, "k", "v")
	p.leader.putKV(t, "dir/a", "v")
	p.leader.putKV(t, "dir/b", "v")
	var d api.KVDeleteResult
	wantJSON(t, p.follower.do(t, "DELETE", fmt.Sprintf("/v1/kv/k?cas=%d", w.ModifyIndex), ""), &d)
	if d.Deleted != 1 || d.Prev == nil || string(d.Prev.Value) != "v" {
		t.Fatalf("forwarded delete: %+v", d)
	}
	d = api.KVDeleteResult{}
	wantJSON(t, p.follower.do(t, "DELETE", "/v1/kv/dir/?prefix", ""), &d)
	if d.Deleted != 2 {
		t.Fatalf("forwarded prefix delete: %+v", d)
	}
	if p.leader.node.fsm.State().KVLen() != 0 {
		t.Errorf("leader still has %d keys", p.leader.node.fsm.State().KVLen())
	}
	fw := p.forwarded(t)
	if len(fw) != 2 || fw[0].method != "DELETE" || fw[1].uri != "/v1/kv/dir/?prefix" {
		t.Errorf("forwarded: %+v", fw)
	}
}

func TestForwardLinearizableGet(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.leader.putKV(t, "k", "from-leader")
	p.leader.do(t, "PUT", "/v1/kv/bin", "\x00\xff")
	p.follower.node.put(t, "k", "stale-local") // the follower's own (old) view

	kv, r := p.follower.getKV(t, "k")
	if string(kv.Value) != "from-leader" || r.header.Get("X-Coordd-Consistency") != "linearizable" || r.header.Get("X-Coordd-Served-By") != "L" {
		t.Fatalf("forwarded get: %+v %v", kv, r.header)
	}
	r = p.follower.do(t, "GET", "/v1/kv/bin?raw", "")
	if r.status != 200 || string(r.body) != "\x00\xff" || r.header.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("forwarded raw get: %d %q %v", r.status, r.body, r.header)
	}
	list, _ := listKV(t, p.follower, "?prefix")
	if len(list) != 2 {
		t.Fatalf("forwarded listing: %v", keysOf(list))
	}
	// A 404 comes back as a 404 with its JSON.
	wantError(t, p.follower.do(t, "GET", "/v1/kv/missing", ""), http.StatusNotFound, api.CodeKeyNotFound)

	if b, _ := p.follower.node.counts(); b != 0 {
		t.Errorf("follower called ReadBarrier %d times", b)
	}
	if b, _ := p.leader.node.counts(); b != 4 {
		t.Errorf("leader called ReadBarrier %d times, want 4", b)
	}
	if len(p.forwarded(t)) != 4 {
		t.Errorf("forwarded %d reads", len(p.forwarded(t)))
	}
}

func TestForwardCopiesErrors(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	w := p.leader.putKV(t, "k", "v")
	r := p.follower.do(t, "PUT", "/v1/kv/k?cas=0", "x")
	if got := casIndex(t, r); got != w.ModifyIndex {
		t.Fatalf("forwarded 409: current_index %d", got)
	}
	if r.header.Get("X-Coordd-Served-By") != "L" {
		t.Errorf("409 not from the leader: %v", r.header)
	}
	// A 503 from the leader keeps its Retry-After.
	p.leader.node.set(func(n *fakeNode) { n.applyErr = httpapi.ErrLeaderNotReady })
	wantError(t, p.follower.do(t, "PUT", "/v1/kv/k", "x"), http.StatusServiceUnavailable, api.CodeLeaderNotReady)
	// A 400 raised by the leader (not caught by the follower) is copied too.
	p.leader.node.set(func(n *fakeNode) { n.applyErr = fmt.Errorf("%w: nope", httpapi.ErrBadRequest) })
	wantError(t, p.follower.do(t, "PUT", "/v1/kv/k", "x"), http.StatusBadRequest, api.CodeBadRequest)
}

// TestForwardValidatesFirst: the follower rejects bad input itself.
func TestForwardValidatesFirst(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	wantError(t, p.follower.do(t, "PUT", "/v1/kv/k?cass=1", "x"), http.StatusBadRequest, api.CodeBadRequest)
	wantError(t, p.follower.do(t, "GET", "/v1/kv/a//b", ""), http.StatusBadRequest, api.CodeBadRequest)
	wantError(t, p.follower.do(t, "POST", "/v1/kv/k", ""), http.StatusMethodNotAllowed, api.CodeMethod)
	if n := len(p.leader.requests()); n != 0 {
		t.Errorf("leader got %d requests", n)
	}
}

func TestStaleReadIsLocal(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.leader.putKV(t, "k", "leader")
	p.follower.node.put(t, "k", "follower")
	p.follower.node.set(func(n *fakeNode) {
		n.staleness = httpapi.Staleness{KnownLeader: true, LastContact: 20 * time.Millisecond}
	})
	before := len(p.leader.requests())
	kv, r := p.follower.getKV(t, "k?stale")
	if string(kv.Value) != "follower" || r.header.Get("X-Coordd-Served-By") != "F" || r.header.Get("X-Coordd-Last-Contact") != "20" {
		t.Fatalf("stale read: %+v %v", kv, r.header)
	}
	wantError(t, p.follower.do(t, "GET", "/v1/kv/only-on-leader?stale", ""), http.StatusNotFound, api.CodeKeyNotFound)
	if len(p.leader.requests()) != before {
		t.Errorf("stale read reached the leader")
	}
	// Even with no leader at all.
	p.follower.node.set(func(n *fakeNode) { n.hasLeader = false })
	if kv, _ := p.follower.getKV(t, "k?stale"); string(kv.Value) != "follower" {
		t.Fatalf("stale read without leader: %+v", kv)
	}
}

// TestForwardNoLoop: a forwarded request reaching a non-leader is refused,
// not forwarded again.
func TestForwardNoLoop(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	for _, c := range []struct{ m, path, body string }{
		{"PUT", "/v1/kv/k", "v"},
		{"GET", "/v1/kv/k", ""},
		{"DELETE", "/v1/kv/k", ""},
		{"POST", "/v1/cluster/transfer-leadership", ""},
	} {
		r := p.follower.do(t, c.m, c.path, c.body, forwardedBy("X", c.m, c.path)...)
		d := wantError(t, r, http.StatusServiceUnavailable, api.CodeNotLeader)
		if d.Leader != "L" {
			t.Errorf("%s %s: not_leader names %q, want L", c.m, c.path, d.Leader)
		}
	}
	if n := len(p.leader.requests()); n != 0 {
		t.Errorf("leader got %d requests", n)
	}

	// Two nodes that each think the other leads: one hop, then 503.
	q := newPair(t)
	q.leader.node.mu.Lock()
	q.leader.node.isLeader = false
	q.leader.node.mu.Unlock()
	q.follower.node.mu.Lock()
	finfo := api.Member{ID: "F", HTTPAddr: q.follower.hostPort()}
	q.follower.node.mu.Unlock()
	q.leader.node.set(func(n *fakeNode) { n.leader = finfo })
	wantError(t, q.follower.do(t, "PUT", "/v1/kv/k", "v"), http.StatusServiceUnavailable, api.CodeNotLeader)
	if nf, nl := len(q.follower.requests()), len(q.leader.requests()); nf != 1 || nl != 1 {
		t.Errorf("requests: follower %d leader %d, want 1 and 1", nf, nl)
	}
}

func TestForwardNoLeader(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.follower.node.set(func(n *fakeNode) { n.hasLeader = false })
	for _, c := range []struct{ m, path, body string }{
		{"PUT", "/v1/kv/k", "v"},
		{"GET", "/v1/kv/k", ""},
		{"GET", "/v1/kv/?prefix&index=1&wait=1s", ""},
		{"DELETE", "/v1/kv/k", ""},
		{"POST", "/v1/cluster/members", `{"id":"n2","raft_addr":"h:1","http_addr":"h:2"}`},
		{"DELETE", "/v1/cluster/members/n2", ""},
		{"POST", "/v1/cluster/transfer-leadership", `{"id":"x"}`},
	} {
		r := p.follower.do(t, c.m, c.path, c.body)
		wantError(t, r, http.StatusServiceUnavailable, api.CodeNoLeader)
		if r.header.Get("Retry-After") != "1" {
			t.Errorf("Retry-After %q", r.header.Get("Retry-After"))
		}
	}
	// A leader whose HTTP address is not known yet.
	p.follower.node.set(func(n *fakeNode) { n.hasLeader, n.leader = true, api.Member{ID: "L"} })
	d := wantError(t, p.follower.do(t, "PUT", "/v1/kv/k", "v"), http.StatusServiceUnavailable, api.CodeNotLeader)
	if d.Leader != "L" {
		t.Errorf("leader %q", d.Leader)
	}
	if n := len(p.leader.requests()); n != 0 {
		t.Errorf("leader got %d requests", n)
	}
}

func TestForwardLeaderUnreachable(t *testing.T) {
	t.Parallel()
	// A "leader" that hangs up on every connection. Holding the port (a
	// closed one could be reused by another test's server) keeps this
	// deterministic.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	addr := ln.Addr().String()
	f := newTestAPI(t, "F", nil)
	f.node.set(func(n *fakeNode) {
		n.isLeader, n.leader = false, api.Member{ID: "L", HTTPAddr: addr}
	})
	for _, c := range []struct{ m, path, body, code string }{
		{"GET", "/v1/kv/k", "", api.CodeForwardFailed},
		{"GET", "/v1/kv/?prefix", "", api.CodeForwardFailed},
		{"HEAD", "/v1/kv/k", "", ""},
		{"PUT", "/v1/kv/k", "v", api.CodeOutcomeUnknown},
		{"DELETE", "/v1/kv/k", "", api.CodeOutcomeUnknown},
		{"POST", "/v1/cluster/members", `{"id":"n2","raft_addr":"h:1","http_addr":"h:2"}`, api.CodeOutcomeUnknown},
	} {
		r := f.do(t, c.m, c.path, c.body)
		if c.m == "HEAD" {
			if r.status != http.StatusServiceUnavailable {
				t.Errorf("HEAD: %d", r.status)
			}
			continue
		}
		d := wantError(t, r, http.StatusServiceUnavailable, c.code)
		if d.Leader != "L" || !strings.Contains(d.Message, addr) {
			t.Errorf("%s %s: %+v", c.m, c.path, d)
		}
	}
}

// TestForwardOnNotLeaderFromApply: the node believed it led, but Apply (or
// the read barrier) says it does not: nothing was proposed, so the request
// is forwarded once to the leader it now knows.
func TestForwardOnNotLeaderFromApply(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.leader.putKV(t, "k", "v1")
	p.follower.node.set(func(n *fakeNode) {
		n.isLeader, n.applyErr, n.barrierErr = true, httpapi.ErrNotLeader, fmt.Errorf("barrier: %w", httpapi.ErrNotLeader)
	})
	w := api.KVWriteResult{}
	wantJSON(t, p.follower.do(t, "PUT", "/v1/kv/k", "v2"), &w)
	if w.Version != 2 {
		t.Fatalf("forwarded put: %+v", w)
	}
	if kv, r := p.follower.getKV(t, "k"); string(kv.Value) != "v2" || r.header.Get("X-Coordd-Served-By") != "L" {
		t.Fatalf("forwarded get: %+v", kv)
	}
	var d api.KVDeleteResult
	wantJSON(t, p.follower.do(t, "DELETE", "/v1/kv/k", ""), &d)
	if d.Deleted != 1 {
		t.Fatalf("forwarded delete: %+v", d)
	}
	if b, a := p.follower.node.counts(); a != 2 || b != 1 {
		t.Errorf("follower: %d applies %d barriers, want 2 and 1", a, b)
	}
	if n := len(p.forwarded(t)); n != 3 {
		t.Errorf("forwarded %d requests, want 3", n)
	}
	if n := forwardedTotal(p.follower); n != 3 {
		t.Errorf("coordd_http_forwarded_total %v", n)
	}
}

func TestForwardSchemeInAddress(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.follower.node.set(func(n *fakeNode) { n.leader.HTTPAddr = p.leader.srv.URL })
	p.leader.putKV(t, "k", "v")
	if kv, _ := p.follower.getKV(t, "k"); string(kv.Value) != "v" {
		t.Fatalf("%+v", kv)
	}
}

// TestForwardBlockingQuery: a follower forwards a linearizable blocking
// query and streams the leader's answer back when it wakes.
func TestForwardBlockingQuery(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	w := p.leader.putKV(t, "k", "v1")
	before := p.leader.node.resets()
	ch := p.follower.async(t, "GET", fmt.Sprintf("/v1/kv/k?index=%d&wait=30s", w.ModifyIndex))
	waitBlocked(t, p.leader.node, before)
	mustNotReturn(t, ch)
	res := p.leader.node.put(t, "k", "v2")
	r := recv(t, ch, 10*time.Second)
	if kv := decodeKV(t, r); string(kv.Value) != "v2" || indexHeader(t, r) != res.Index {
		t.Fatalf("woke with %+v", kv)
	}
}

func TestForwardCluster(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	body := `{"id":"n2","raft_addr":"h:1","http_addr":"h:2","voter":false}`
	var ms []api.Member
	wantJSON(t, p.follower.do(t, "POST", "/v1/cluster/members", body), &ms)
	wantJSON(t, p.follower.do(t, "DELETE", "/v1/cluster/members/n2", ""), nil)
	wantJSON(t, p.follower.do(t, "POST", "/v1/cluster/transfer-leadership", `{"id":"F"}`), nil)
	// Listing members is answered locally.
	wantJSON(t, p.follower.do(t, "GET", "/v1/cluster/members", ""), nil)
	n := p.leader.node
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.joins) != 1 || n.joins[0].ID != "n2" || n.joins[0].Voter == nil || *n.joins[0].Voter {
		t.Errorf("joins on leader: %+v", n.joins)
	}
	if fmt.Sprint(n.removes) != "[n2]" || fmt.Sprint(n.transfers) != "[F]" {
		t.Errorf("removes %v transfers %v", n.removes, n.transfers)
	}
	fw := p.forwarded(t)
	if len(fw) != 3 || string(fw[0].body) != body {
		t.Errorf("forwarded: %d, first body %q", len(fw), fw[0].body)
	}
}

// stalledLeader is a "leader" that accepts requests and never answers
// them (a paused process), until the test ends.
func stalledLeader(t *testing.T) (addr string, got func() int) {
	t.Helper()
	var mu sync.Mutex
	n := 0
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		mu.Unlock()
		select {
		case <-done:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(done); srv.Close() })
	return srv.Listener.Addr().String(), func() int {
		mu.Lock()
		defer mu.Unlock()
		return n
	}
}

// Test_Forward_FollowsLeadership: a forward to a leader that stalls is
// cancelled the moment the follower sees another leader. What is safe to
// repeat (a read, a keepalive, a write with an Idempotency-Key) is sent to
// the new leader and answered by it; a write that may have reached the
// stalled leader gets outcome_unknown at once; none waits for a timeout.
func Test_Forward_FollowsLeadership(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.leader.putKV(t, "k", "v1")
	var grant api.Lease
	wantJSON(t, p.leader.do(t, "POST", "/v1/leases", `{"ttl":"10s"}`), &grant)
	p.leader.node.mu.Lock()
	newLeader := p.leader.node.leader
	p.leader.node.mu.Unlock()
	for _, c := range []struct {
		name, m, path, body string
		hdr                 []string
		code                string // "" for 200 from the new leader
	}{
		{"get", "GET", "/v1/kv/k", "", nil, ""},
		{"keepalive", "POST", fmt.Sprintf("/v1/leases/%d/keepalive", grant.ID), "", nil, ""},
		{"put with key", "PUT", "/v1/kv/k2", "v", []string{api.HeaderIdempotencyKey, "key-1"}, ""},
		{"put", "PUT", "/v1/kv/k3", "v", nil, api.CodeOutcomeUnknown},
		{"lock without wait", "POST", "/v1/locks/x", `{"ttl":"10s"}`, nil, api.CodeOutcomeUnknown},
	} {
		t.Run(c.name, func(t *testing.T) {
			addr, got := stalledLeader(t)
			p.follower.node.set(func(n *fakeNode) { n.leader = api.Member{ID: "S", HTTPAddr: addr, Leader: true} })
			ch := p.follower.asyncWith(t, c.m, c.path, c.body, c.hdr...)
			eventually(t, 10*time.Second, "the stalled leader got the request", func() bool { return got() == 1 })
			mustNotReturn(t, ch)
			p.follower.node.set(func(n *fakeNode) { n.leader = newLeader })
			r := recv(t, ch, 5*time.Second)
			if c.code == "" {
				if r.status != http.StatusOK || r.header.Get(api.HeaderServedBy) != "L" {
					t.Fatalf("status %d served by %q: %s", r.status, r.header.Get(api.HeaderServedBy), r.body)
				}
				return
			}
			if d := wantError(t, r, http.StatusServiceUnavailable, c.code); d.Leader != "S" {
				t.Errorf("names leader %q, want S", d.Leader)
			}
		})
	}
}

// Test_Forward_LeaderLost_NoLeaderWithinLeaderWait: a forward in flight
// when the follower loses its leader, and a request that finds none, are
// answered no_leader once LeaderWait has passed since the loss (unless a
// new leader appears first, which then serves them).
func Test_Forward_LeaderLost_NoLeaderWithinLeaderWait(t *testing.T) {
	t.Parallel()
	l := newTestAPI(t, "L", nil)
	f := newTestAPI(t, "F", &httpapi.Options{LeaderWait: 200 * time.Millisecond})
	l.putKV(t, "k", "v1")
	addr, got := stalledLeader(t)
	f.node.set(func(n *fakeNode) { n.isLeader, n.leader = false, api.Member{ID: "S", HTTPAddr: addr, Leader: true} })
	ch := f.async(t, "GET", "/v1/kv/k")
	eventually(t, 10*time.Second, "the stalled leader got the request", func() bool { return got() == 1 })
	f.node.set(func(n *fakeNode) { n.hasLeader = false })
	wantError(t, recv(t, ch, 5*time.Second), http.StatusServiceUnavailable, api.CodeNoLeader)
	wantError(t, f.do(t, "PUT", "/v1/kv/k", "v2"), http.StatusServiceUnavailable, api.CodeNoLeader)

	// A new leader elected within LeaderWait serves the request.
	f.node.set(func(n *fakeNode) { n.hasLeader, n.leader = true, api.Member{ID: "S", HTTPAddr: addr, Leader: true} })
	f = newTestAPI(t, "F2", &httpapi.Options{LeaderWait: time.Minute})
	f.node.set(func(n *fakeNode) { n.isLeader, n.hasLeader = false, false })
	ch = f.async(t, "GET", "/v1/kv/k")
	mustNotReturn(t, ch)
	l.node.mu.Lock()
	info := l.node.leader
	l.node.mu.Unlock()
	f.node.set(func(n *fakeNode) { n.hasLeader, n.leader = true, info })
	if r := recv(t, ch, 5*time.Second); r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
}

// Test_Forward_CampaignWithoutWait_IsBoundedByTheWriteTimeout: a forward
// is bounded by the request's own deadline: a lock without wait by the
// write timeout (plus a second), not by MaxWait.
func Test_Forward_CampaignWithoutWait_IsBoundedByTheWriteTimeout(t *testing.T) {
	t.Parallel()
	addr, _ := stalledLeader(t)
	f := newTestAPI(t, "F", &httpapi.Options{WriteTimeout: 100 * time.Millisecond})
	f.node.set(func(n *fakeNode) { n.isLeader, n.leader = false, api.Member{ID: "S", HTTPAddr: addr, Leader: true} })
	wantError(t, f.do(t, "POST", "/v1/locks/x", `{"ttl":"10s"}`), http.StatusServiceUnavailable, api.CodeOutcomeUnknown)
	wantError(t, f.do(t, "POST", "/v1/elections/x/campaign", `{"ttl":"10s","wait":"1s"}`), http.StatusServiceUnavailable, api.CodeOutcomeUnknown)
}

// asyncWith runs a request with a body and headers in the background.
func (ta *testAPI) asyncWith(t *testing.T, method, path, body string, hdr ...string) <-chan response {
	t.Helper()
	ch := make(chan response, 1)
	go func() {
		req, err := http.NewRequest(method, ta.srv.URL+path, strings.NewReader(body))
		if err != nil {
			ch <- response{status: -1, body: []byte(err.Error())}
			return
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			ch <- response{status: -1, body: []byte(err.Error())}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			ch <- response{status: -1, body: []byte(err.Error())}
			return
		}
		ch <- response{status: resp.StatusCode, header: resp.Header, body: b}
	}()
	return ch
}
