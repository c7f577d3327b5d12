package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/coordd/coordd/api"
)

func grantLease(t *testing.T, ta *testAPI, ttl string) uint64 {
	t.Helper()
	r := ta.do(t, "POST", "/v1/leases", `{"ttl":"`+ttl+`"}`)
	var l api.Lease
	if r.status != http.StatusOK || json.Unmarshal(r.body, &l) != nil || l.ID == 0 {
		t.Fatalf("grant: %d %s", r.status, r.body)
	}
	return l.ID
}

func TestKeepaliveMany_RenewsKnownLeasesAndListsTheRest(t *testing.T) {
	ta := newTestAPI(t, "n1", nil)
	a, b := grantLease(t, ta, "5s"), grantLease(t, ta, "7s")
	r := ta.do(t, "POST", "/v1/leases/keepalive", fmt.Sprintf(`{"ids":[%d,12345,%d]}`, a, b))
	var out api.KeepaliveManyResponse
	if r.status != http.StatusOK || decodeStrict(r.body, &out) != nil {
		t.Fatalf("keepalive many: %d %s", r.status, r.body)
	}
	if len(out.Leases) != 2 || out.Leases[0].ID != a || out.Leases[1].ID != b ||
		out.Leases[0].TTLMs != 5000 || out.Leases[1].RemainingMs != 7000 {
		t.Errorf("leases: %+v", out.Leases)
	}
	if len(out.NotFound) != 1 || out.NotFound[0] != 12345 {
		t.Errorf("not found: %v", out.NotFound)
	}
}

func TestKeepaliveMany_BadBodiesAre400(t *testing.T) {
	ta := newTestAPI(t, "n1", nil)
	for _, body := range []string{``, `{}`, `{"ids":[]}`, `{"ids":[0]}`, `{"ids":[-1]}`, `{"ids":"x"}`,
		`{"ids":[1],"x":1}`} { // too many ids is 413: TestLimits_KeepaliveBatchTooLargeIs413
		r := ta.do(t, "POST", "/v1/leases/keepalive", body)
		if r.status != http.StatusBadRequest {
			t.Errorf("body %.40q: %d %s, want 400", body, r.status, r.body)
			continue
		}
		if _, problem := checkErrorShape(r.status, r.header, r.body); problem != "" {
			t.Errorf("body %.40q: %s", body, problem)
		}
	}
}

// A lock or campaign with a ttl instead of a lease grants the lease and
// queues it in one entry; the answer names the new lease.
func TestCampaignWithTTL_GrantsTheLeaseInTheSameEntry(t *testing.T) {
	ta := newTestAPI(t, "n1", nil)
	r := ta.do(t, "POST", "/v1/locks/job", `{"ttl":"3s"}`)
	var out api.CampaignResponse
	if r.status != http.StatusOK || json.Unmarshal(r.body, &out) != nil {
		t.Fatalf("lock with ttl: %d %s", r.status, r.body)
	}
	if !out.Leader || out.Lease == 0 || out.Token != out.Lease || out.LeaseTTLMs != 3000 {
		t.Fatalf("answer: %+v", out)
	}
	g := ta.do(t, "GET", fmt.Sprintf("/v1/leases/%d", out.Lease), "")
	if g.status != http.StatusOK || !strings.Contains(string(g.body), `"name":"job"`) {
		t.Fatalf("the new lease: %d %s", g.status, g.body)
	}
	r = ta.do(t, "POST", "/v1/elections/e/campaign", `{"ttl_ms":2500,"value":"v"}`)
	if r.status != http.StatusOK || json.Unmarshal(r.body, &out) != nil || !out.Leader || out.LeaseTTLMs != 2500 {
		t.Fatalf("campaign with ttl_ms: %d %s", r.status, r.body)
	}
	for _, body := range []string{`{}`, `{"lease":1,"ttl":"2s"}`, `{"ttl":"2s","ttl_ms":2000}`, `{"ttl":"1ms"}`, `{"ttl":"forever"}`} {
		r := ta.do(t, "POST", "/v1/locks/job2", body)
		if r.status != http.StatusBadRequest {
			t.Errorf("lock %s: %d %s, want 400", body, r.status, r.body)
		}
	}
	// A refused campaign leaves no lease behind.
	before := ta.node.fsm.State().LeaseCount()
	r = ta.do(t, "POST", "/v1/locks/e", `{"ttl":"2s"}`)
	if r.status != http.StatusConflict && r.status != http.StatusBadRequest {
		t.Fatalf("lock on an election: %d %s", r.status, r.body)
	}
	if got := ta.node.fsm.State().LeaseCount(); got != before {
		t.Errorf("%d leases after a refused lock, want %d", got, before)
	}
}
