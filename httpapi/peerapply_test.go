package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/fsm"
	"github.com/coordd/coordd/httpapi"
)

// applyForwards counts the encoded commands the leader of p received, and
// the other forwards.
func applyForwards(t *testing.T, p pair) (encoded, other int) {
	t.Helper()
	for _, r := range p.forwarded(t) {
		if r.uri == "/v1/internal/apply" {
			encoded++
		} else {
			other++
		}
	}
	return encoded, other
}

// equivStep is one request of Test_EncodedForward_SameAnswerAsTheLeader;
// covered says the follower sends it encoded.
type equivStep struct {
	name, method, path, body string
	hdr                      []string
	covered                  bool
}

// Test_EncodedForward_SameAnswerAsTheLeader: every write a follower
// forwards as its encoded command is answered with the status, body and
// headers the leader gives the same request, in the same state: holders,
// queued candidates (position > 0), campaigns that grant their lease,
// proclaim, resign, release, puts, deletes with their previous value, and
// the domain errors (stale token, not holder, missing lease, CAS
// conflicts, a reused idempotency key) and idempotent replays.
func Test_EncodedForward_SameAnswerAsTheLeader(t *testing.T) {
	t.Parallel()
	direct, via := newPair(t), newPair(t)
	key := func(k string) []string { return []string{api.HeaderIdempotencyKey, k} }
	steps := []equivStep{
		{"grant 1", "POST", "/v1/leases", `{"ttl":"10s"}`, nil, false},
		{"grant 2", "POST", "/v1/leases", `{"ttl":"10s"}`, nil, false},
		{"lock holds", "POST", "/v1/locks/l", `{"lease":1,"value":"a"}`, nil, true},
		{"lock queues", "POST", "/v1/locks/l", `{"lease":2}`, nil, true},
		{"lock grants and queues", "POST", "/v1/locks/l", `{"ttl":"5s"}`, nil, true},
		{"semaphore", "POST", "/v1/locks/s", `{"lease":1,"limit":2,"lock_delay":"1s"}`, nil, true},
		{"semaphore limit mismatch", "POST", "/v1/locks/s", `{"lease":2,"limit":3}`, nil, true},
		{"lock of a missing lease", "POST", "/v1/locks/m", `{"lease":424242}`, nil, true},
		{"campaign", "POST", "/v1/elections/e/campaign", `{"lease":1,"value":"x"}`, nil, true},
		{"campaign kind mismatch", "POST", "/v1/elections/l/campaign", `{"lease":1}`, nil, true},
		{"campaign with a key", "POST", "/v1/elections/f/campaign", `{"lease":2,"value":"y"}`, key("c-1"), true},
		{"campaign replayed", "POST", "/v1/elections/f/campaign", `{"lease":2,"value":"y"}`, key("c-1"), true},
		{"proclaim", "POST", "/v1/elections/e/proclaim", `{"lease":1,"token":TOKEN_E,"value":"x2"}`, nil, true},
		{"proclaim stale token", "POST", "/v1/elections/e/proclaim", `{"lease":1,"token":1,"value":"x3"}`, nil, true},
		{"resign stale token", "POST", "/v1/elections/e/resign", `{"lease":1,"token":2}`, nil, true},
		{"resign not holder", "POST", "/v1/elections/e/resign", `{"lease":2,"token":TOKEN_E}`, nil, true},
		{"resign", "POST", "/v1/elections/e/resign", `{"lease":1,"token":TOKEN_E}`, key("r-1"), true},
		{"resign replayed", "POST", "/v1/elections/e/resign", `{"lease":1,"token":TOKEN_E}`, key("r-1"), true},
		{"release hands off", "DELETE", "/v1/locks/l", `{"lease":1,"token":TOKEN_L}`, nil, true},
		{"release again", "DELETE", "/v1/locks/l", `{"lease":1,"token":TOKEN_L}`, nil, true},
		{"withdraw", "DELETE", "/v1/locks/l", `{"lease":3}`, nil, true},
		{"put", "PUT", "/v1/kv/k", "v1", nil, true},
		{"put again", "PUT", "/v1/kv/k", "v2", nil, true},
		{"put cas conflict", "PUT", "/v1/kv/k?cas=1", "v3", nil, true},
		{"put create-only conflict", "PUT", "/v1/kv/k?cas=0", "v3", nil, true},
		{"put create-only", "PUT", "/v1/kv/dir/a?cas=0", "a", nil, true},
		{"put with a lease", "PUT", "/v1/kv/dir/b?lease=2", "b", nil, true},
		{"put with a missing lease", "PUT", "/v1/kv/dir/c?lease=77777", "c", nil, true},
		{"put with a key", "PUT", "/v1/kv/p", "pv", key("p-1"), true},
		{"put replayed", "PUT", "/v1/kv/p", "pv", key("p-1"), true},
		{"key reused", "PUT", "/v1/kv/p", "other", key("p-1"), true},
		{"put empty value", "PUT", "/v1/kv/empty", "", nil, true},
		{"delete cas conflict", "DELETE", "/v1/kv/k?cas=1", "", nil, true},
		{"delete", "DELETE", "/v1/kv/k", "", nil, true},
		{"delete missing", "DELETE", "/v1/kv/k", "", nil, true},
		{"delete cas missing", "DELETE", "/v1/kv/k?cas=3", "", nil, true},
		{"delete prefix", "DELETE", "/v1/kv/dir/?prefix", "", key("d-1"), true},
		{"delete prefix replayed", "DELETE", "/v1/kv/dir/?prefix", "", key("d-1"), true},
		{"bad request", "POST", "/v1/locks/l", `{"lease":1,"ttl":"1s"}`, nil, false},
		{"lock with wait, free", "POST", "/v1/locks/w", `{"lease":1,"wait":"1s"}`, nil, false},
		{"election read", "GET", "/v1/elections/e", "", nil, false},
	}
	tokens := map[string]string{}
	covered := 0
	for _, s := range steps {
		body := s.body
		for k, v := range tokens {
			body = strings.ReplaceAll(body, k, v)
		}
		want := direct.leader.do(t, s.method, s.path, body, s.hdr...)
		got := via.follower.do(t, s.method, s.path, body, s.hdr...)
		t.Logf("%s: %d %s", s.name, want.status, bytes.TrimSpace(want.body))
		if got.status != want.status || !bytes.Equal(got.body, want.body) {
			t.Errorf("%s: through the follower %d %s\nat the leader %d %s", s.name, got.status, got.body, want.status, want.body)
		}
		for _, h := range []string{headerContentType, api.HeaderReplayed, api.HeaderRetryAfter} {
			if got.header.Get(h) != want.header.Get(h) {
				t.Errorf("%s: %s %q through the follower, %q at the leader", s.name, h, got.header.Get(h), want.header.Get(h))
			}
		}
		if s.name != "bad request" && (got.header.Get(api.HeaderServedBy) != "L" || got.header.Get(api.HeaderForwardedBy) != "F") {
			t.Errorf("%s: served by %q, forwarded by %q", s.name, got.header.Get(api.HeaderServedBy), got.header.Get(api.HeaderForwardedBy))
		}
		if s.covered {
			covered++
		}
		if enc, other := applyForwards(t, via); enc != covered {
			t.Errorf("%s: %d encoded commands (%d other forwards), want %d", s.name, enc, other, covered)
		}
		var c api.CampaignResponse
		if s.method == "POST" && json.Unmarshal(want.body, &c) == nil && c.Leader && c.Token != 0 {
			tokens["TOKEN_"+strings.ToUpper(c.Name)] = fmt.Sprint(c.Token)
		}
	}
	if len(tokens) < 2 {
		t.Fatalf("tokens seen: %v", tokens)
	}
	if n := peerMetric(via.follower, "coordd_forward_encoded_total"); n != float64(covered) {
		t.Errorf("coordd_forward_encoded_total %v, want %d", n, covered)
	}
	// The follower wrote nothing itself; both leaders hold the same state.
	if _, applies := via.follower.node.counts(); applies != 0 {
		t.Errorf("the follower applied %d commands", applies)
	}
	if d, v := direct.leader.node.fsm.State().Digest(), via.leader.node.fsm.State().Digest(); d != v {
		t.Errorf("leader states differ: %v vs %v", d, v)
	}
}

// headerContentType is the Content-Type header's name.
const headerContentType = "Content-Type"

// Test_EncodedForward_ReplayAcrossNodes: a write sent with an
// Idempotency-Key to the leader, then retried through a follower (and the
// reverse), is applied once and replayed with the first answer.
func Test_EncodedForward_ReplayAcrossNodes(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	first := p.leader.do(t, "PUT", "/v1/kv/x", "1", api.HeaderIdempotencyKey, "k1")
	again := p.follower.do(t, "PUT", "/v1/kv/x", "1", api.HeaderIdempotencyKey, "k1")
	if first.status != http.StatusOK || again.status != http.StatusOK || !bytes.Equal(first.body, again.body) || again.header.Get(api.HeaderReplayed) != "true" {
		t.Fatalf("first %d %s, retry through the follower %d %s (replayed %q)", first.status, first.body, again.status, again.body, again.header.Get(api.HeaderReplayed))
	}
	first = p.follower.do(t, "POST", "/v1/locks/q", `{"ttl":"10s"}`, api.HeaderIdempotencyKey, "k2")
	again = p.leader.do(t, "POST", "/v1/locks/q", `{"ttl":"10s"}`, api.HeaderIdempotencyKey, "k2")
	if first.status != http.StatusOK || !bytes.Equal(first.body, again.body) || again.header.Get(api.HeaderReplayed) != "true" {
		t.Fatalf("first through the follower %d %s, retry at the leader %d %s", first.status, first.body, again.status, again.body)
	}
	if n := p.leader.node.fsm.State().LeaseCount(); n != 1 {
		t.Errorf("%d leases, want 1: the campaign was applied twice", n)
	}
}

// Test_EncodedForward_LeaderLostMidFlight: an encoded write in flight to a
// leader that stalls is resent to the new leader only if it carries an
// Idempotency-Key; one without gets outcome_unknown and never reaches the
// new leader (it may have been applied by the lost one).
func Test_EncodedForward_LeaderLostMidFlight(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.leader.node.mu.Lock()
	newLeader := p.leader.node.leader
	p.leader.node.mu.Unlock()
	for _, c := range []struct {
		name, m, path, body string
		hdr                 []string
		resent              bool
	}{
		{"put with key", "PUT", "/v1/kv/k2", "v", []string{api.HeaderIdempotencyKey, "key-1"}, true},
		{"put", "PUT", "/v1/kv/k3", "v", nil, false},
		{"lock", "POST", "/v1/locks/x", `{"ttl":"10s"}`, nil, false},
		{"delete", "DELETE", "/v1/kv/k2", "", nil, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			addr, got := stalledLeader(t)
			p.follower.node.set(func(n *fakeNode) { n.leader = api.Member{ID: "S", HTTPAddr: addr, Leader: true} })
			before := len(p.leader.requests())
			ch := p.follower.asyncWith(t, c.m, c.path, c.body, c.hdr...)
			eventually(t, 10*time.Second, "the stalled leader got the request", func() bool { return got() == 1 })
			mustNotReturn(t, ch)
			p.follower.node.set(func(n *fakeNode) { n.leader = newLeader })
			r := recv(t, ch, 5*time.Second)
			reached := p.leader.requests()[before:]
			if c.resent {
				if r.status != http.StatusOK || r.header.Get(api.HeaderServedBy) != "L" || len(reached) != 1 || reached[0].uri != "/v1/internal/apply" {
					t.Fatalf("status %d served by %q, new leader got %d requests: %s", r.status, r.header.Get(api.HeaderServedBy), len(reached), r.body)
				}
				return
			}
			if d := wantError(t, r, http.StatusServiceUnavailable, api.CodeOutcomeUnknown); d.Leader != "S" {
				t.Errorf("names leader %q, want S", d.Leader)
			}
			if len(reached) != 0 {
				t.Errorf("the new leader got %d requests: a write without a key was resent", len(reached))
			}
		})
	}
	if _, ok := p.leader.node.fsm.State().Get("k3"); ok {
		t.Errorf("k3 was written by the new leader")
	}
}

// Test_EncodedForward_LeaderRefusesFallsBackToAWholeForward: a leader
// that cannot authenticate the follower (no shared secret yet) refuses
// the encoded command with 403; the follower forwards the client's
// request whole, and the client gets the leader's answer.
func Test_EncodedForward_LeaderRefusesFallsBackToAWholeForward(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.follower.node.set(func(n *fakeNode) { n.secret = bytes.Repeat([]byte{0x17}, fsm.PeerSecretSize) })
	var w api.KVWriteResult
	wantJSON(t, p.follower.do(t, "PUT", "/v1/kv/k", "v"), &w)
	wantError(t, p.follower.do(t, "PUT", "/v1/kv/k?cas=5", "v"), http.StatusConflict, api.CodeCASConflict)
	var internal, whole int
	for _, q := range p.leader.requests() {
		switch q.uri {
		case "/v1/internal/apply":
			internal++
		case "/v1/kv/k", "/v1/kv/k?cas=5":
			whole++
		}
	}
	if internal != 2 || whole != 2 {
		t.Fatalf("leader received %d encoded commands and %d whole requests, want 2 and 2", internal, whole)
	}
	if n := peerMetric(p.follower, "coordd_forward_encoded_fallbacks_total"); n != 2 {
		t.Errorf("coordd_forward_encoded_fallbacks_total %v, want 2", n)
	}
	if e, ok := p.leader.node.fsm.State().Get("k"); !ok || e.Version != 1 {
		t.Errorf("key k: %+v, want version 1 (written once)", e)
	}
}

// Test_EncodedForward_Off: with the option off, with ACLs, or for a
// campaign that may wait, a follower forwards the client's request whole.
func Test_EncodedForward_Off(t *testing.T) {
	t.Parallel()
	p := newPairOpts(t, &httpapi.Options{NoEncodedForwarding: true})
	wantJSON(t, p.follower.do(t, "PUT", "/v1/kv/k", "v"), &api.KVWriteResult{})
	q := newPair(t)
	wantJSON(t, q.follower.do(t, "POST", "/v1/locks/w", `{"ttl":"10s","wait":"1s"}`), &api.CampaignResponse{})
	for _, x := range []pair{p, q} {
		if enc, other := applyForwards(t, x); enc != 0 || other != 1 {
			t.Errorf("%d encoded commands, %d whole forwards; want 0 and 1", enc, other)
		}
	}
}

// Test_PeerApply_OnlyFromNodes: the internal endpoint refuses a caller
// that is not an authenticated node, a command of a type no handler
// forwards, a malformed one, and one whose idempotency key is not the
// request's; a follower answers not_leader.
func Test_PeerApply_OnlyFromNodes(t *testing.T) {
	t.Parallel()
	l := newTestAPI(t, "L", nil)
	put := fsmCmd(fsm.KVPut{Key: "k", Value: []byte("v")})
	body := string(put.Encode())
	const path = "/v1/internal/apply"
	wantError(t, l.do(t, "POST", path, body), http.StatusForbidden, api.CodePermissionDenied)
	wantError(t, l.do(t, "POST", path, body, "X-Coordd-Forwarded-By", "F"), http.StatusForbidden, api.CodePermissionDenied)
	auth := forwardedBy("F", "POST", path)
	wantError(t, l.do(t, "POST", path, "garbage", auth...), http.StatusBadRequest, api.CodeBadRequest)
	grant := fsmCmd(fsm.LeaseGrant{TTL: 1000})
	wantError(t, l.do(t, "POST", path, string(grant.Encode()), auth...), http.StatusBadRequest, api.CodeBadRequest)
	keyed := put
	keyed.IdempotencyKey = "k-1"
	wantError(t, l.do(t, "POST", path, string(keyed.Encode()), auth...), http.StatusBadRequest, api.CodeBadRequest)
	wantError(t, l.do(t, "POST", path, body, append(auth, api.HeaderIdempotencyKey, "k-2")...), http.StatusBadRequest, api.CodeBadRequest)
	if _, applies := l.node.counts(); applies != 0 {
		t.Fatalf("%d commands applied", applies)
	}
	r := l.do(t, "POST", path, string(keyed.Encode()), append(auth, api.HeaderIdempotencyKey, "k-1")...)
	if r.status != http.StatusOK || r.header.Get(headerContentType) != "application/x-coordd-peer" {
		t.Fatalf("status %d %s", r.status, r.body)
	}
	l.node.set(func(n *fakeNode) { n.isLeader = false })
	wantError(t, l.do(t, "POST", path, body, auth...), http.StatusServiceUnavailable, api.CodeNotLeader)

	acl := newTestAPI(t, "A", &httpapi.Options{ACL: true})
	r = acl.do(t, "POST", path, body, auth...)
	if r.status != http.StatusForbidden && r.status != http.StatusUnauthorized {
		t.Fatalf("with ACLs: status %d %s", r.status, r.body)
	}
}

// FuzzPeerApplyBody: whatever an authenticated node sends to the apply
// endpoint, the leader never panics nor answers 5xx: it applies a command
// of a forwarded type (200 with an answer the follower decodes), or
// refuses it with 400.
func FuzzPeerApplyBody(f *testing.F) {
	for _, p := range []fsm.Payload{
		fsm.KVPut{Key: "k", Value: []byte("v")}, fsm.KVDelete{Key: "d/", Prefix: true},
		fsm.Campaign{Kind: fsm.KindLock, Name: "l", NewLeaseTTL: 5000}, fsm.Resign{Name: "l", Lease: 1},
		fsm.Proclaim{Name: "e", Lease: 1, Token: 2, Value: []byte("x")}, fsm.LeaseGrant{TTL: 1000},
	} {
		f.Add(fsmCmd(p).Encode(), "")
	}
	f.Add([]byte{0xC0, 2}, "k")
	f.Add([]byte{2, 1, 3, 0xC0, 2, 1}, "")
	ta := newTestAPI(f, "L", nil)
	const path = "/v1/internal/apply"
	f.Fuzz(func(t *testing.T, body []byte, key string) {
		req := httptest.NewRequest("POST", path, bytes.NewReader(body))
		hdr := forwardedBy("F", "POST", path)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		if key != "" {
			req.Header.Set(api.HeaderIdempotencyKey, key)
		}
		w := httptest.NewRecorder()
		ta.api.ServeHTTP(w, req)
		switch {
		case w.Code == http.StatusOK:
			if w.Header().Get(headerContentType) != "application/x-coordd-peer" || w.Body.Len() < 2 || w.Body.Bytes()[0] != 1 && w.Body.Bytes()[0] != 2 {
				t.Fatalf("200 with %q %x", w.Header().Get(headerContentType), w.Body.Bytes())
			}
			if w.Body.Bytes()[0] == 2 {
				return // a batch's answer (FuzzDecodeBatchAnswer)
			}
			if _, err := fsm.DecodeResult(w.Body.Bytes()[1+uvarintLen(w.Body.Bytes()[1:]):]); err != nil {
				t.Fatalf("answer does not decode: %v", err)
			}
		case w.Code == http.StatusBadRequest, w.Code == http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("status %d: %s", w.Code, w.Body.Bytes())
		}
	})
}

// uvarintLen is the length of the uvarint b starts with.
func uvarintLen(b []byte) int {
	for i, c := range b {
		if c < 0x80 {
			return i + 1
		}
	}
	return len(b)
}

// Test_EncodedForward_OlderLeaderFallsBackToAWholeForward: a leader of an
// older version, which has no /v1/internal/apply (404 not_found, as its
// router answers), gets the client's request whole, and the client the
// leader's answer, not the 404.
func Test_EncodedForward_OlderLeaderFallsBackToAWholeForward(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	old := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/internal/apply" {
			w.Header().Set(headerContentType, "application/json")
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintln(w, `{"error":{"code":"not_found","message":"no such endpoint: POST /v1/internal/apply"}}`)
			return
		}
		p.leader.srv.Config.Handler.ServeHTTP(w, r)
	}))
	t.Cleanup(old.Close)
	p.follower.node.set(func(n *fakeNode) { n.leader.HTTPAddr = old.Listener.Addr().String() })
	var w api.KVWriteResult
	wantJSON(t, p.follower.do(t, "PUT", "/v1/kv/k", "v"), &w)
	wantJSON(t, p.follower.do(t, "POST", "/v1/locks/l", `{"ttl":"10s"}`), &api.CampaignResponse{})
	if enc, other := applyForwards(t, p); enc != 0 || other != 2 {
		t.Fatalf("the leader's API got %d encoded commands and %d whole requests, want 0 and 2", enc, other)
	}
	if n := peerMetric(p.follower, "coordd_forward_encoded_fallbacks_total"); n != 2 {
		t.Errorf("coordd_forward_encoded_fallbacks_total %v, want 2", n)
	}
}

// Test_EncodedForward_Coalesced_AnswersEveryClientOnce: writes that many
// clients send a follower at once reach the leader in fewer batches, keyed
// and unkeyed apart, and each client gets its own answer: its key and
// version, its own CAS conflict, its replay.
func Test_EncodedForward_Coalesced_AnswersEveryClientOnce(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.leader.putKV(t, "taken", "x")
	const clients = 64
	errs := make(chan string, clients)
	var chs []<-chan response
	for i := range clients {
		switch i % 4 {
		case 0:
			chs = append(chs, p.follower.asyncWith(t, "PUT", fmt.Sprintf("/v1/kv/c%d", i), "v"))
		case 1:
			chs = append(chs, p.follower.asyncWith(t, "PUT", "/v1/kv/taken?cas=0", "y"))
		case 2:
			chs = append(chs, p.follower.asyncWith(t, "PUT", fmt.Sprintf("/v1/kv/c%d", i), "v", api.HeaderIdempotencyKey, fmt.Sprintf("k%d", i)))
		default:
			chs = append(chs, p.follower.asyncWith(t, "POST", fmt.Sprintf("/v1/locks/l%d", i), `{"ttl":"10s"}`))
		}
	}
	for i, ch := range chs {
		r := recv(t, ch, 10*time.Second)
		switch i % 4 {
		case 0, 2:
			var w api.KVWriteResult
			if r.status != http.StatusOK || decodeStrict(r.body, &w) != nil || w.Key != fmt.Sprintf("c%d", i) || w.Version != 1 {
				errs <- fmt.Sprintf("put %d: %d %s", i, r.status, r.body)
			}
		case 1:
			if r.status != http.StatusConflict || !strings.Contains(string(r.body), api.CodeCASConflict) {
				errs <- fmt.Sprintf("cas %d: %d %s", i, r.status, r.body)
			}
		default:
			var c api.CampaignResponse
			if r.status != http.StatusOK || decodeStrict(r.body, &c) != nil || c.Name != fmt.Sprintf("l%d", i) || !c.Leader {
				errs <- fmt.Sprintf("lock %d: %d %s", i, r.status, r.body)
			}
		}
		if r.header.Get(api.HeaderServedBy) != "L" || r.header.Get(api.HeaderForwardedBy) != "F" {
			errs <- fmt.Sprintf("%d: served by %q forwarded by %q", i, r.header.Get(api.HeaderServedBy), r.header.Get(api.HeaderForwardedBy))
		}
	}
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	// A retry of a keyed write is replayed.
	r := p.follower.do(t, "PUT", "/v1/kv/c2", "v", api.HeaderIdempotencyKey, "k2")
	if r.status != http.StatusOK || r.header.Get(api.HeaderReplayed) != "true" {
		t.Errorf("replay: %d %s %v", r.status, r.body, r.header)
	}
	enc, other := applyForwards(t, p)
	batches := peerMetric(p.follower, "coordd_forward_encoded_batches_total")
	if other != 0 || enc == 0 || enc > clients+1 || float64(enc) != batches {
		t.Errorf("the leader got %d batches (follower counted %v) and %d other forwards for %d writes", enc, batches, other, clients+1)
	}
	t.Logf("%d writes in %d batches", clients+1, enc)
}
