package httpapi_test

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/fsm"
	"github.com/coordd/coordd/httpapi"
)

// Regressions for bugs the first round of tests found.

func TestMalformedOrRepeatedQuery_IsRefusedNeverDropped(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	ta.putKV(t, "k", "v1")
	for _, req := range []struct{ m, p string }{
		{"PUT", "/v1/kv/k?cas=%ZZ"},
		{"PUT", "/v1/kv/k?cas=5;"},
		{"PUT", "/v1/kv/k?cas=0;"},
		{"PUT", "/v1/kv/k?cas=5&cas=7"},
		{"DELETE", "/v1/kv/k?cas=%ZZ"},
		{"GET", "/v1/kv/k?stale&stale=false"},
		{"GET", "/v1/status?%zz"},
	} {
		wantError(t, ta.do(t, req.m, req.p, "v2"), http.StatusBadRequest, api.CodeBadRequest)
	}
	if kv, _ := ta.getKV(t, "k"); string(kv.Value) != "v1" || kv.Version != 1 {
		t.Fatalf("a refused conditional write changed the key: %+v", kv)
	}
}

func TestBlockingQuery_RestoreBetweenStateAndResetCh_StillWakes(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	res := ta.node.put(t, "k", "v1")

	// Build a state where k is "restored" at a later index.
	st := fsm.New().State()
	for i := uint64(1); i <= 10; i++ {
		st, _ = fsm.ApplyCommand(st, i, 1, fsmCmd(fsm.KVPut{Key: "k", Value: []byte("restored")}))
	}
	ta.node.set(func(n *fakeNode) { n.resetHook = func() { ta.node.restore(t, st) } })

	start := time.Now()
	kv, r := ta.getKV(t, "k?index="+itoa(res.Index)+"&wait=5s")
	if r.status != http.StatusOK || string(kv.Value) != "restored" {
		t.Fatalf("blocking read after a restore: %d %s", r.status, r.body)
	}
	if el := time.Since(start); el > 4*time.Second {
		t.Fatalf("the restore did not wake the watcher (took %s)", el)
	}
}

func TestJoin_RefusesAddressesPeersCannotDial(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	for _, addr := range []string{":7000", "h:notaport", "h:99999", "h:0", "http://h", "0.0.0.0:1", "[::]:1", "u@h:1"} {
		body := `{"id":"n4","raft_addr":"` + addr + `","http_addr":"127.0.0.1:7104"}`
		wantError(t, ta.do(t, "POST", "/v1/cluster/members", body), http.StatusBadRequest, api.CodeBadRequest)
		body = `{"id":"n4","raft_addr":"127.0.0.1:7204","http_addr":"` + addr + `"}`
		wantError(t, ta.do(t, "POST", "/v1/cluster/members", body), http.StatusBadRequest, api.CodeBadRequest)
	}
	if r := ta.do(t, "POST", "/v1/cluster/members", `{"id":"n4","raft_addr":"[::1]:7204","http_addr":"node4.example:7104"}`); r.status != http.StatusOK {
		t.Fatalf("valid join: %d %s", r.status, r.body)
	}
}

func TestKVWithoutTrailingSlash_IsAJSONErrorNotARedirect(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	ta.putKV(t, "k", "v")
	for _, m := range []string{"GET", "PUT", "DELETE"} {
		wantError(t, ta.do(t, m, "/v1/kv?prefix", ""), http.StatusBadRequest, api.CodeBadRequest)
	}
	if _, r := ta.getKV(t, "k"); r.status != http.StatusOK {
		t.Fatalf("DELETE /v1/kv?prefix deleted keys: %d", r.status)
	}
}

func TestIdempotencyKey_ReachesTheCommandAndBadKeysAreRefused(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	first := ta.do(t, "PUT", "/v1/kv/k", "v", "Idempotency-Key", "req-1")
	retry := ta.do(t, "PUT", "/v1/kv/k", "v", "Idempotency-Key", "req-1")
	if first.status != http.StatusOK || retry.status != http.StatusOK || retry.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("retry: %d %v %s", retry.status, retry.header, retry.body)
	}
	if kv, _ := ta.getKV(t, "k"); kv.Version != 1 {
		t.Fatalf("a retried put applied twice: %+v", kv)
	}
	for _, bad := range []string{strings.Repeat("x", 257), "tab\there"} {
		wantError(t, ta.do(t, "PUT", "/v1/kv/k", "v", "Idempotency-Key", bad), http.StatusBadRequest, api.CodeBadRequest)
	}
}

func TestNotLeaderAfterForwarding_NamesTheLeader(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n2", nil)
	ta.node.set(func(n *fakeNode) {
		n.applyErr = httpapi.ErrNotLeader
		n.leader = api.Member{ID: "n1", HTTPAddr: "127.0.0.1:1", Leader: true}
	})
	d := wantError(t, ta.do(t, "PUT", "/v1/kv/k", "v", forwardedBy("n3", "PUT", "/v1/kv/k")...), http.StatusServiceUnavailable, api.CodeNotLeader)
	if d.Leader != "n1" {
		t.Fatalf("leader = %q, want n1", d.Leader)
	}
}

func TestReadyz_IsAlways503WhenNotReady(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	ta.node.set(func(n *fakeNode) { n.readyErr = errors.New("disk on fire") })
	wantError(t, ta.do(t, "GET", "/readyz", ""), http.StatusServiceUnavailable, api.CodeInternal)
}

func itoa(v uint64) string { return strconv.FormatUint(v, 10) }

func TestForwardedCampaign_MayWaitLongerThanTheWriteTimeout(t *testing.T) {
	t.Parallel()
	opts := &httpapi.Options{WriteTimeout: 100 * time.Millisecond}
	l, f := newTestAPI(t, "L", opts), newTestAPI(t, "F", &httpapi.Options{WriteTimeout: 100 * time.Millisecond})
	l.node.mu.Lock()
	info := l.node.leader
	l.node.mu.Unlock()
	f.node.set(func(n *fakeNode) { n.isLeader, n.leader = false, info })

	a := l.node.applyLocal(fsmCmd(fsm.LeaseGrant{TTL: 10000})).Lease.ID
	b := l.node.applyLocal(fsmCmd(fsm.LeaseGrant{TTL: 10000})).Lease.ID
	tok := l.node.applyLocal(fsmCmd(fsm.Campaign{Kind: fsm.KindElection, Name: "e", Lease: a})).Campaign.Token
	go func() {
		time.Sleep(5500 * time.Millisecond) // past the hop limit of a request that does not block (write timeout + 5 s)
		l.node.applyLocal(fsmCmd(fsm.Resign{Name: "e", Lease: a, Token: tok}))
	}()
	r := f.do(t, "POST", "/v1/elections/e/campaign", fmt.Sprintf(`{"lease":%d,"wait":"10s"}`, b))
	var cr api.CampaignResponse
	wantJSON(t, r, &cr)
	if !cr.Leader || cr.Token <= tok {
		t.Fatalf("forwarded waiting campaign: %d %s", r.status, r.body)
	}
}

func TestSnapshotGet_StreamsTheWholeStateFromTheLeader(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.leader.putKV(t, "a", "1")
	p.leader.node.applyLocal(fsmCmd(fsm.LeaseGrant{TTL: 5000}))
	r := p.follower.do(t, "GET", "/v1/snapshot", "")
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("snapshot: %d %v", r.status, r.header)
	}
	st, err := fsm.ReadState(bytes.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	want := p.leader.node.fsm.State()
	if st.Index() != want.Index() || st.KVLen() != 1 || st.LeaseCount() != 1 {
		t.Fatalf("snapshot state: index %d keys %d leases %d", st.Index(), st.KVLen(), st.LeaseCount())
	}
	if r.header.Get("X-Coordd-Index") != itoa(want.Index()) {
		t.Fatalf("X-Coordd-Index %q", r.header.Get("X-Coordd-Index"))
	}
	wantError(t, p.leader.do(t, "GET", "/v1/snapshot?x=1", ""), http.StatusBadRequest, api.CodeBadRequest)
}

// TestIdempotencyKey_ReusedForAnotherBodyIs422: a retry is the same
// request; the same key with another body is refused with 422
// idempotency_key_reused and changes nothing, and the first request's
// retry is still answered from its record.
func TestIdempotencyKey_ReusedForAnotherBodyIs422(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	first := ta.do(t, "PUT", "/v1/kv/k", "v1", "Idempotency-Key", "job-1")
	if first.status != http.StatusOK {
		t.Fatalf("first: %d %s", first.status, first.body)
	}
	wantError(t, ta.do(t, "PUT", "/v1/kv/k", "v2", "Idempotency-Key", "job-1"), http.StatusUnprocessableEntity, api.CodeIdempotencyReused)
	wantError(t, ta.do(t, "PUT", "/v1/kv/other", "v1", "Idempotency-Key", "job-1"), http.StatusUnprocessableEntity, api.CodeIdempotencyReused)
	retry := ta.do(t, "PUT", "/v1/kv/k", "v1", "Idempotency-Key", "job-1")
	if retry.status != http.StatusOK || retry.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("retry: %d %v %s", retry.status, retry.header, retry.body)
	}
	if kv, _ := ta.getKV(t, "k"); string(kv.Value) != "v1" || kv.Version != 1 {
		t.Fatalf("k = %+v", kv)
	}
}
