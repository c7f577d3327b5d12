package httpapi_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/fsm"
	"github.com/coordd/coordd/httpapi"
)

// TestBadRequest checks that malformed input is answered 400 bad_request
// in the JSON error shape, and that nothing was proposed for it.
func TestBadRequest(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	ta.putKV(t, "k", "v")
	cases := []struct{ method, path, body string }{
		// Unknown query parameters: a typo must not drop a condition.
		{"PUT", "/v1/kv/k?cass=1", "v"},
		{"GET", "/v1/kv/k?cass=1", ""},
		{"GET", "/v1/kv/k?cas=1", ""},
		{"DELETE", "/v1/kv/k?cass=1", ""},
		{"DELETE", "/v1/kv/k?raw", ""},
		{"GET", "/v1/status?verbose=1", ""},
		{"GET", "/v1/cluster/members?x=1", ""},
		{"POST", "/v1/cluster/members?x=1", `{"id":"n2","raft_addr":"h:1","http_addr":"h:2"}`},
		{"DELETE", "/v1/cluster/members/n2?x=1", ""},
		{"POST", "/v1/cluster/transfer-leadership?id=x", ""},
		// Numbers.
		{"PUT", "/v1/kv/k?cas=-1", "v"},
		{"PUT", "/v1/kv/k?cas=abc", "v"},
		{"PUT", "/v1/kv/k?cas=", "v"},
		{"PUT", "/v1/kv/k?cas=1.5", "v"},
		{"PUT", "/v1/kv/k?cas=18446744073709551616", "v"},
		{"DELETE", "/v1/kv/k?cas=-1", ""},
		{"GET", "/v1/kv/k?index=abc", ""},
		{"GET", "/v1/kv/k?index=-1", ""},
		{"GET", "/v1/kv/k?index=", ""},
		// Waits.
		{"GET", "/v1/kv/k?index=1&wait=abc", ""},
		{"GET", "/v1/kv/k?index=1&wait=0", ""},
		{"GET", "/v1/kv/k?index=1&wait=-1s", ""},
		{"GET", "/v1/kv/k?index=1&wait=11m", ""},
		{"GET", "/v1/kv/k?index=1&wait=10m1ms", ""},
		{"GET", "/v1/kv/k?wait=", ""},
		// Flags.
		{"GET", "/v1/kv/k?stale=maybe", ""},
		{"GET", "/v1/kv/k?raw=yes", ""},
		{"GET", "/v1/kv/?prefix=2", ""},
		{"DELETE", "/v1/kv/k?prefix=no", ""},
		// Incompatible combinations.
		{"GET", "/v1/kv/k?raw&prefix", ""},
		{"DELETE", "/v1/kv/k?prefix&cas=1", ""},
		// Keys.
		{"PUT", "/v1/kv/", "v"},
		{"GET", "/v1/kv/", ""},
		{"DELETE", "/v1/kv/", ""},
		{"GET", "/v1/kv/?raw", ""},
		// A key over MaxKeyBytes is 413 too_large: TestLimits_KeyTooLongIs413.
		{"PUT", "/v1/kv/a%FF", "v"},
		{"GET", "/v1/kv/a%FF", ""},
		{"GET", "/v1/kv/a%C3?prefix", ""},
		{"DELETE", "/v1/kv/%FF", ""},
		{"PUT", "/v1/kv/a%00b", "v"},
		{"GET", "/v1/kv/%00", ""},
		{"DELETE", "/v1/kv/a%00?prefix", ""},
		// Paths the mux would clean or redirect.
		{"PUT", "/v1/kv/a//b", "v"},
		{"GET", "/v1/kv/a//b", ""},
		{"GET", "/v1/kv//", ""},
		{"PUT", "/v1/kv/a/./b", "v"},
		{"GET", "/v1/kv/a/../k", ""},
		{"DELETE", "/v1/kv/a/../k", ""},
		{"DELETE", "/v1/kv/..", ""},
		{"GET", "/v1/kv/%2E%2E/k", ""},
		{"GET", "/v1/kv/a%2F%2Fb", ""},
		{"GET", "//v1/kv/k", ""},
		{"GET", "/v1/./status", ""},
		{"GET", "/v1/kv/.", ""},
		// Member joins.
		{"POST", "/v1/cluster/members", ""},
		{"POST", "/v1/cluster/members", "   "},
		{"POST", "/v1/cluster/members", "null"},
		{"POST", "/v1/cluster/members", "[]"},
		{"POST", "/v1/cluster/members", "{"},
		{"POST", "/v1/cluster/members", `{"id":"n2","raft_addr":"h:1","http_addr":"h:2","role":"x"}`},
		{"POST", "/v1/cluster/members", `{"id":"n2","raft_addr":"h:1","http_addr":"h:2"} {}`},
		{"POST", "/v1/cluster/members", `{"id":"n2","raft_addr":"h:1","http_addr":"h:2"}x`},
		{"POST", "/v1/cluster/members", `{"id":"n2","http_addr":"h:2"}`},
		{"POST", "/v1/cluster/members", `{"id":"n2","raft_addr":"","http_addr":"h:2"}`},
		{"POST", "/v1/cluster/members", `{"id":"n2","raft_addr":"h","http_addr":"h:2"}`},
		{"POST", "/v1/cluster/members", `{"id":"n2","raft_addr":"h:","http_addr":"h:2"}`},
		{"POST", "/v1/cluster/members", `{"id":"n2","raft_addr":"h:1"}`},
		{"POST", "/v1/cluster/members", `{"id":"n2","raft_addr":"0.0.0.0:7000","http_addr":"h:2"}`},
		{"POST", "/v1/cluster/members", `{"id":"n2","raft_addr":"h:1","http_addr":"0.0.0.0:8080"}`},
		{"POST", "/v1/cluster/members", `{"id":"n2","raft_addr":"[::]:7000","http_addr":"h:2"}`},
		{"POST", "/v1/cluster/members", `{"raft_addr":"h:1","http_addr":"h:2"}`},
		{"POST", "/v1/cluster/members", `{"id":"","raft_addr":"h:1","http_addr":"h:2"}`},
		{"POST", "/v1/cluster/members", `{"id":"` + strings.Repeat("n", 129) + `","raft_addr":"h:1","http_addr":"h:2"}`},
		{"POST", "/v1/cluster/members", `{"id":"n\u0000","raft_addr":"h:1","http_addr":"h:2"}`},
		{"POST", "/v1/cluster/members", `{"id":"n2","raft_addr":"h:1","http_addr":"h:2","voter":"yes"}`},
		{"POST", "/v1/cluster/members", `{"id":2,"raft_addr":"h:1","http_addr":"h:2"}`},
		// Leadership transfer.
		{"POST", "/v1/cluster/transfer-leadership", "{"},
		{"POST", "/v1/cluster/transfer-leadership", `{"to":"x"}`},
		{"POST", "/v1/cluster/transfer-leadership", `{"id":"x"}{"id":"y"}`},
	}
	for _, c := range cases {
		r := ta.do(t, c.method, c.path, c.body)
		t.Run(c.method+" "+c.path, func(t *testing.T) {
			wantError(t, r, http.StatusBadRequest, api.CodeBadRequest)
		})
	}
	if _, applies := ta.node.counts(); applies != 1 {
		t.Errorf("Apply called %d times, want 1 (only the setup put)", applies)
	}
	ta.node.mu.Lock()
	defer ta.node.mu.Unlock()
	if len(ta.node.joins) != 0 || len(ta.node.removes) != 0 || len(ta.node.transfers) != 0 {
		t.Errorf("bad requests reached the node: joins %v removes %v transfers %v", ta.node.joins, ta.node.removes, ta.node.transfers)
	}
}

// TestKeyLengthLimit checks the boundary: MaxKeyBytes is allowed.
func TestKeyLengthLimit(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	key := strings.Repeat("k", httpapi.MaxKeyBytes)
	if res := ta.putKV(t, key, "v"); res.Key != key {
		t.Fatalf("put returned key of %d bytes", len(res.Key))
	}
	kv, _ := ta.getKV(t, key)
	if kv.Key != key || string(kv.Value) != "v" {
		t.Fatalf("got %d-byte key, value %q", len(kv.Key), kv.Value)
	}
}

func TestNotFound(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	r := ta.do(t, "GET", "/v1/kv/missing", "")
	d := wantError(t, r, http.StatusNotFound, api.CodeKeyNotFound)
	if !strings.Contains(d.Message, "missing") {
		t.Errorf("message %q does not name the key", d.Message)
	}
	if r.header.Get("X-Coordd-Index") == "" {
		t.Errorf("404 on a key has no X-Coordd-Index to block on")
	}
	wantError(t, ta.do(t, "GET", "/v1/kv/missing?stale", ""), http.StatusNotFound, api.CodeKeyNotFound)
	wantError(t, ta.do(t, "GET", "/v1/kv/missing?raw", ""), http.StatusNotFound, api.CodeKeyNotFound)
	wantError(t, ta.do(t, "DELETE", "/v1/kv/missing", ""), http.StatusNotFound, api.CodeKeyNotFound)

	for _, p := range []string{"/", "/v2/kv/k", "/v1", "/v1/", "/v1/kvx/k", "/v1/status/x", "/v1/cluster",
		"/v1/cluster/members/", "/healthz/x", "/metrics/x", "/v1/cluster/members/n1/x"} {
		for _, m := range []string{"GET", "PUT", "DELETE", "POST"} {
			wantError(t, ta.do(t, m, p, ""), http.StatusNotFound, api.CodeNotFound)
		}
	}
}

func TestMethodNotAllowed(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	cases := []struct {
		method, path string
		allow        []string
	}{
		{"POST", "/v1/kv/k", []string{"GET", "PUT", "DELETE"}},
		{"PATCH", "/v1/kv/k", []string{"GET", "PUT", "DELETE"}},
		{"OPTIONS", "/v1/kv/k", []string{"GET", "PUT", "DELETE"}},
		{"PUT", "/v1/status", []string{"GET"}},
		{"DELETE", "/v1/status", []string{"GET"}},
		{"PUT", "/v1/cluster/members", []string{"GET", "POST"}},
		{"GET", "/v1/cluster/members/n2", []string{"DELETE"}},
		{"GET", "/v1/cluster/transfer-leadership", []string{"POST"}},
		{"POST", "/healthz", []string{"GET"}},
		{"POST", "/readyz", []string{"GET"}},
		{"POST", "/metrics", []string{"GET"}},
	}
	for _, c := range cases {
		t.Run(c.method+" "+c.path, func(t *testing.T) {
			r := ta.do(t, c.method, c.path, "")
			wantError(t, r, http.StatusMethodNotAllowed, api.CodeMethod)
			allow := r.header.Get("Allow")
			for _, m := range c.allow {
				if !strings.Contains(allow, m) {
					t.Errorf("Allow %q lacks %s", allow, m)
				}
			}
			if strings.Contains(allow, c.method) {
				t.Errorf("Allow %q lists the refused method %s", allow, c.method)
			}
		})
	}
}

// casIndex decodes the error body and returns current_index, failing if it
// is absent (a conflict on a missing key must say 0, not leave it out).
func casIndex(t *testing.T, r response) uint64 {
	t.Helper()
	d := wantError(t, r, http.StatusConflict, api.CodeCASConflict)
	var raw struct {
		Error map[string]json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(r.body, &raw); err != nil {
		t.Fatal(err)
	}
	if _, ok := raw.Error["current_index"]; !ok || d.CurrentIndex == nil {
		t.Fatalf("409 without current_index: %s", r.body)
	}
	return *d.CurrentIndex
}

func TestCASConflict(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	w := ta.putKV(t, "k", "v1")
	ta.putKV(t, "other", "x")

	if got := casIndex(t, ta.do(t, "PUT", fmt.Sprintf("/v1/kv/k?cas=%d", w.ModifyIndex+7), "v2")); got != w.ModifyIndex {
		t.Errorf("PUT wrong cas: current_index %d, want %d", got, w.ModifyIndex)
	}
	if got := casIndex(t, ta.do(t, "PUT", "/v1/kv/k?cas=0", "v2")); got != w.ModifyIndex {
		t.Errorf("create-only on existing key: current_index %d, want %d", got, w.ModifyIndex)
	}
	if got := casIndex(t, ta.do(t, "PUT", "/v1/kv/missing?cas=5", "v")); got != 0 {
		t.Errorf("cas on missing key: current_index %d, want 0", got)
	}
	if got := casIndex(t, ta.do(t, "DELETE", fmt.Sprintf("/v1/kv/k?cas=%d", w.ModifyIndex+1), "")); got != w.ModifyIndex {
		t.Errorf("DELETE wrong cas: current_index %d, want %d", got, w.ModifyIndex)
	}
	if got := casIndex(t, ta.do(t, "DELETE", "/v1/kv/missing?cas=3", "")); got != 0 {
		t.Errorf("DELETE cas on missing key: current_index %d, want 0", got)
	}
	// The key is untouched by the failed writes.
	kv, _ := ta.getKV(t, "k")
	if string(kv.Value) != "v1" || kv.ModifyIndex != w.ModifyIndex || kv.Version != 1 {
		t.Errorf("after conflicts: %+v", kv)
	}
	wantError(t, ta.do(t, "GET", "/v1/kv/missing", ""), http.StatusNotFound, api.CodeKeyNotFound)
}

func TestTooLarge(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", &httpapi.Options{MaxRequestBytes: 1000, MaxValueBytes: 500})
	// At the value limit: accepted.
	ta.putKV(t, "ok", strings.Repeat("v", 500))

	wantError(t, ta.do(t, "PUT", "/v1/kv/k", strings.Repeat("v", 501)), http.StatusRequestEntityTooLarge, api.CodeTooLarge)
	wantError(t, ta.do(t, "PUT", "/v1/kv/k", strings.Repeat("v", 1001)), http.StatusRequestEntityTooLarge, api.CodeTooLarge)
	wantError(t, ta.do(t, "PUT", "/v1/kv/k", strings.Repeat("v", 100_000)), http.StatusRequestEntityTooLarge, api.CodeTooLarge)
	big := `{"id":"n2","raft_addr":"h:1","http_addr":"h:2","x":"` + strings.Repeat("x", 2000) + `"}`
	wantError(t, ta.do(t, "POST", "/v1/cluster/members", big), http.StatusRequestEntityTooLarge, api.CodeTooLarge)
	wantError(t, ta.do(t, "POST", "/v1/cluster/transfer-leadership", big), http.StatusRequestEntityTooLarge, api.CodeTooLarge)
	wantError(t, ta.do(t, "GET", "/v1/kv/k", ""), http.StatusNotFound, api.CodeKeyNotFound)

	// Defaults: a value over DefaultMaxValueBytes is refused.
	td := newTestAPI(t, "n2", nil)
	wantError(t, td.do(t, "PUT", "/v1/kv/k", strings.Repeat("v", httpapi.DefaultMaxValueBytes+1)), http.StatusRequestEntityTooLarge, api.CodeTooLarge)
	td.putKV(t, "k", strings.Repeat("v", httpapi.DefaultMaxValueBytes))
}

// TestUnavailable checks the 503 mapping of the Node's sentinel errors,
// bare and wrapped, for writes (Apply) and linearizable reads (ReadBarrier).
func TestUnavailable(t *testing.T) {
	t.Parallel()
	cases := []struct {
		err  error
		code string
	}{
		{httpapi.ErrNoLeader, api.CodeNoLeader},
		{httpapi.ErrLeaderNotReady, api.CodeLeaderNotReady},
		{httpapi.ErrOutcomeUnknown, api.CodeOutcomeUnknown},
		{httpapi.ErrShutdown, api.CodeShuttingDown},
		{httpapi.ErrCatchingUp, api.CodeCatchingUp},
		{fmt.Errorf("apply: %w: deadline", httpapi.ErrOutcomeUnknown), api.CodeOutcomeUnknown},
		{fmt.Errorf("wrapped: %w", httpapi.ErrShutdown), api.CodeShuttingDown},
	}
	for _, c := range cases {
		t.Run(c.err.Error(), func(t *testing.T) {
			t.Parallel()
			ta := newTestAPI(t, "n1", nil)
			ta.putKV(t, "k", "v")
			ta.node.set(func(n *fakeNode) { n.applyErr, n.barrierErr = c.err, c.err })
			for _, req := range []struct{ m, p, b string }{
				{"PUT", "/v1/kv/k", "v2"},
				{"PUT", "/v1/kv/k?cas=1", "v2"},
				{"DELETE", "/v1/kv/k", ""},
				{"DELETE", "/v1/kv/?prefix", ""},
				{"GET", "/v1/kv/k", ""},
				{"GET", "/v1/kv/?prefix", ""},
				{"GET", "/v1/kv/k?raw", ""},
			} {
				wantError(t, ta.do(t, req.m, req.p, req.b), http.StatusServiceUnavailable, c.code)
			}
			// A stale read needs no barrier.
			if kv, _ := ta.getKV(t, "k?stale"); string(kv.Value) != "v" {
				t.Errorf("stale read: %+v", kv)
			}
			if d := wantError(t, ta.do(t, "PUT", "/v1/kv/k", "v2"), http.StatusServiceUnavailable, c.code); c.code == api.CodeOutcomeUnknown && !strings.Contains(d.Message, "read before retrying") {
				t.Errorf("outcome_unknown message does not say how to retry: %q", d.Message)
			}
		})
	}
}

// TestNotLeaderFromNode: the node thinks it leads, but Apply and
// ReadBarrier say otherwise and the leader it knows is itself. The request
// is forwarded once (to itself), then answered 503 not_leader, not looped.
func TestNotLeaderFromNode(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	ta.node.set(func(n *fakeNode) { n.applyErr, n.barrierErr = httpapi.ErrNotLeader, httpapi.ErrNotLeader })
	wantError(t, ta.do(t, "PUT", "/v1/kv/k", "v"), http.StatusServiceUnavailable, api.CodeNotLeader)
	wantError(t, ta.do(t, "GET", "/v1/kv/k", ""), http.StatusServiceUnavailable, api.CodeNotLeader)
	wantError(t, ta.do(t, "DELETE", "/v1/kv/k", ""), http.StatusServiceUnavailable, api.CodeNotLeader)
	if _, applies := ta.node.counts(); applies != 4 {
		t.Errorf("Apply called %d times, want 4 (twice per write: once, then once more after one forward)", applies)
	}
	if got := len(ta.requests()); got != 6 {
		t.Errorf("server saw %d requests, want 6 (3 + 3 forwarded once)", got)
	}
	// With no leader known it is not forwarded at all.
	ta.node.set(func(n *fakeNode) { n.hasLeader = false })
	wantError(t, ta.do(t, "PUT", "/v1/kv/k", "v"), http.StatusServiceUnavailable, api.CodeNoLeader)
}

func TestInternalError(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	ta.putKV(t, "k", "v")
	boom := errors.New("disk on fire")
	ta.node.set(func(n *fakeNode) { n.applyErr, n.barrierErr = boom, boom })
	d := wantError(t, ta.do(t, "PUT", "/v1/kv/k", "v2"), http.StatusInternalServerError, api.CodeInternal)
	if !strings.Contains(d.Message, "disk on fire") {
		t.Errorf("message %q", d.Message)
	}
	wantError(t, ta.do(t, "GET", "/v1/kv/k", ""), http.StatusInternalServerError, api.CodeInternal)
	wantError(t, ta.do(t, "DELETE", "/v1/kv/k", ""), http.StatusInternalServerError, api.CodeInternal)
	ta.node.set(func(n *fakeNode) { n.membersErr, n.joinErr = boom, boom })
	wantError(t, ta.do(t, "GET", "/v1/cluster/members", ""), http.StatusInternalServerError, api.CodeInternal)
	wantError(t, ta.do(t, "POST", "/v1/cluster/members", `{"id":"n2","raft_addr":"h:1","http_addr":"h:2"}`),
		http.StatusInternalServerError, api.CodeInternal)
}

// TestPanicInNode: a panic inside the node is answered 500 internal and the
// server keeps serving.
func TestPanicInNode(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	ta.putKV(t, "k", "v")
	for _, c := range []struct{ in, method, path, body string }{
		{"Apply", "PUT", "/v1/kv/k", "v2"},
		{"Apply", "DELETE", "/v1/kv/k", ""},
		{"ReadBarrier", "GET", "/v1/kv/k", ""},
		{"State", "GET", "/v1/kv/k?stale", ""},
		{"IsLeader", "PUT", "/v1/kv/k", "v2"},
		{"Status", "GET", "/v1/status", ""},
		{"Join", "POST", "/v1/cluster/members", `{"id":"n2","raft_addr":"h:1","http_addr":"h:2"}`},
		{"ID", "GET", "/healthz", ""},
	} {
		t.Run(c.in, func(t *testing.T) {
			ta.node.set(func(n *fakeNode) { n.panicIn = c.in })
			d := wantError(t, ta.do(t, c.method, c.path, c.body), http.StatusInternalServerError, api.CodeInternal)
			if !strings.Contains(d.Message, "injected panic") {
				t.Errorf("message %q", d.Message)
			}
			ta.node.set(func(n *fakeNode) { n.panicIn = "" })
			if kv, _ := ta.getKV(t, "k"); string(kv.Value) != "v" {
				t.Fatalf("after panic: %+v", kv)
			}
		})
	}
	ta.putKV(t, "k", "v3")
	if kv, _ := ta.getKV(t, "k"); string(kv.Value) != "v3" {
		t.Fatalf("after panics: %+v", kv)
	}
}

// TestDomainErrorsFromNode: membership errors from the node map to 404.
func TestDomainErrorsFromNode(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	ta.node.set(func(n *fakeNode) { n.removeErr = fmt.Errorf("remove n9: %w", httpapi.ErrUnknownMember) })
	wantError(t, ta.do(t, "DELETE", "/v1/cluster/members/n9", ""), http.StatusNotFound, api.CodeUnknownMember)
	ta.node.set(func(n *fakeNode) { n.removeErr = fmt.Errorf("x: %w", fsm.ErrMemberNotFound) })
	wantError(t, ta.do(t, "DELETE", "/v1/cluster/members/n9", ""), http.StatusNotFound, api.CodeUnknownMember)
	ta.node.set(func(n *fakeNode) { n.xferErr = fmt.Errorf("%w: n9 is not a voter", httpapi.ErrBadRequest) })
	wantError(t, ta.do(t, "POST", "/v1/cluster/transfer-leadership", `{"id":"n9"}`), http.StatusBadRequest, api.CodeBadRequest)
	ta.node.set(func(n *fakeNode) { n.joinErr = httpapi.ErrNoLeader })
	wantError(t, ta.do(t, "POST", "/v1/cluster/members", `{"id":"n2","raft_addr":"h:1","http_addr":"h:2"}`),
		http.StatusServiceUnavailable, api.CodeNoLeader)
}
