package httpapi_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/httpapi"
)

func TestHealthz(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	// Health does not depend on leadership or readiness.
	ta.node.set(func(n *fakeNode) { n.isLeader, n.hasLeader, n.readyErr = false, false, httpapi.ErrNoLeader })
	var body map[string]string
	wantJSON(t, ta.do(t, "GET", "/healthz", ""), &body)
	if body["status"] != "ok" || body["id"] != "n1" {
		t.Fatalf("healthz: %v", body)
	}
}

func TestReadyz(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	var body map[string]string
	wantJSON(t, ta.do(t, "GET", "/readyz", ""), &body)
	if body["status"] != "ready" || body["id"] != "n1" {
		t.Fatalf("readyz: %v", body)
	}
	for _, c := range []struct {
		err  error
		code string
	}{
		{httpapi.ErrCatchingUp, api.CodeCatchingUp},
		{httpapi.ErrNoLeader, api.CodeNoLeader},
		{httpapi.ErrLeaderNotReady, api.CodeLeaderNotReady},
		{httpapi.ErrShutdown, api.CodeShuttingDown},
		{fmt.Errorf("applied 3 of 10: %w", httpapi.ErrCatchingUp), api.CodeCatchingUp},
		// A 4xx classification still makes the node unready: 503.
		{fmt.Errorf("%w: odd", httpapi.ErrBadRequest), api.CodeBadRequest},
	} {
		ta.node.set(func(n *fakeNode) { n.readyErr = c.err })
		wantError(t, ta.do(t, "GET", "/readyz", ""), http.StatusServiceUnavailable, c.code)
	}
	ta.node.set(func(n *fakeNode) { n.readyErr = nil })
	wantJSON(t, ta.do(t, "GET", "/readyz", ""), nil)
}

func TestStatus(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	ta.putKV(t, "k", "v")
	ta.putKV(t, "k", "v")
	ta.node.set(func(n *fakeNode) {
		n.members = []api.Member{{ID: "n1", RaftAddr: "n1:7000", HTTPAddr: "n1:8080", Voter: true, Leader: true}}
	})
	var st api.Status
	wantJSON(t, ta.do(t, "GET", "/v1/status", ""), &st)
	if st.ID != "n1" || st.State != "Leader" || st.Leader == nil || st.Leader.ID != "n1" || !st.Ready ||
		st.AppliedIndex != 2 || st.CommitIndex != 2 || len(st.Members) != 1 || st.Members[0].HTTPAddr != "n1:8080" {
		t.Fatalf("status: %+v", st)
	}
	// A follower with no leader: "leader" is null.
	ta.node.set(func(n *fakeNode) { n.isLeader, n.hasLeader = false, false })
	r := ta.do(t, "GET", "/v1/status", "")
	st = api.Status{}
	wantJSON(t, r, &st)
	if st.State != "Follower" || st.Leader != nil || !strings.Contains(string(r.body), `"leader":null`) {
		t.Fatalf("follower status: %s", r.body)
	}
}

func TestMembersList(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	var ms []api.Member
	wantJSON(t, ta.do(t, "GET", "/v1/cluster/members", ""), &ms)
	if ms == nil || len(ms) != 0 {
		t.Fatalf("empty members: %v", ms)
	}
	want := []api.Member{
		{ID: "n1", RaftAddr: "n1:7000", HTTPAddr: "n1:8080", Voter: true, Leader: true},
		{ID: "n2", RaftAddr: "n2:7000", Voter: false},
	}
	ta.node.set(func(n *fakeNode) { n.members = want })
	// Listing works on a follower too, without forwarding.
	ta.node.set(func(n *fakeNode) { n.isLeader, n.hasLeader = false, false })
	ms = nil
	wantJSON(t, ta.do(t, "GET", "/v1/cluster/members", ""), &ms)
	if fmt.Sprint(ms) != fmt.Sprint(want) {
		t.Fatalf("members %+v, want %+v", ms, want)
	}
	ta.node.set(func(n *fakeNode) { n.membersErr = httpapi.ErrShutdown })
	wantError(t, ta.do(t, "GET", "/v1/cluster/members", ""), http.StatusServiceUnavailable, api.CodeShuttingDown)
}

func TestMembersJoin(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	for _, c := range []struct {
		body  string
		voter bool
	}{
		{`{"id":"n2","raft_addr":"10.0.0.2:7000","http_addr":"10.0.0.2:8080"}`, true},
		{`{"id":"n3","raft_addr":"n3.example:7000","http_addr":"n3.example:8080","voter":true}`, true},
		{` {"voter":false,"http_addr":"[fe80::1]:8080","raft_addr":"[fe80::1]:7000","id":"n4"} ` + "\n", false},
	} {
		var ms []api.Member
		wantJSON(t, ta.do(t, "POST", "/v1/cluster/members", c.body), &ms)
		last := ms[len(ms)-1]
		if last.Voter != c.voter {
			t.Errorf("%s: member %+v", c.body, last)
		}
	}
	n := ta.node
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.joins) != 3 {
		t.Fatalf("joins: %+v", n.joins)
	}
	j := n.joins[0]
	if j.ID != "n2" || j.RaftAddr != "10.0.0.2:7000" || j.HTTPAddr != "10.0.0.2:8080" {
		t.Errorf("decoded join: %+v", j)
	}
	// Absent "voter" reaches the node as nil, which means voter (see
	// JoinRequest); present values are passed through.
	if j.Voter != nil && !*j.Voter {
		t.Errorf("absent voter passed as false")
	}
	if v := n.joins[1].Voter; v == nil || !*v {
		t.Errorf("voter:true passed as %v", v)
	}
	if v := n.joins[2].Voter; v == nil || *v {
		t.Errorf("voter:false passed as %v", v)
	}
	if n.joins[2].ID != "n4" || n.joins[2].RaftAddr != "[fe80::1]:7000" {
		t.Errorf("join 3: %+v", n.joins[2])
	}
}

func TestMembersRemove(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	var body map[string]string
	wantJSON(t, ta.do(t, "DELETE", "/v1/cluster/members/n%202", ""), &body)
	if body["removed"] != "n 2" {
		t.Fatalf("remove: %v", body)
	}
	ta.node.mu.Lock()
	defer ta.node.mu.Unlock()
	if fmt.Sprint(ta.node.removes) != "[n 2]" {
		t.Errorf("removes %q", ta.node.removes)
	}
}

func TestTransferLeadership(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	for _, body := range []string{"", "  \n", "{}", `{"id":"n3"}`, `{"id":""}`} {
		var resp map[string]string
		wantJSON(t, ta.do(t, "POST", "/v1/cluster/transfer-leadership", body), &resp)
		if resp["previous"] != "n1" || resp["leader"] != "n1" {
			t.Errorf("%q: %v", body, resp)
		}
	}
	ta.node.mu.Lock()
	got := fmt.Sprintf("%q", ta.node.transfers)
	ta.node.mu.Unlock()
	if got != `["" "" "" "n3" ""]` {
		t.Errorf("transfers %s", got)
	}
	// With no leader known afterwards the response has no "leader".
	ta.node.set(func(n *fakeNode) { n.hasLeader = false })
	var resp map[string]string
	wantJSON(t, ta.do(t, "POST", "/v1/cluster/transfer-leadership", ""), &resp)
	if _, ok := resp["leader"]; ok || resp["previous"] != "n1" {
		t.Errorf("after transfer without leader: %v", resp)
	}
	ta.node.set(func(n *fakeNode) { n.xferErr = httpapi.ErrUnknownMember })
	wantError(t, ta.do(t, "POST", "/v1/cluster/transfer-leadership", `{"id":"zz"}`), http.StatusNotFound, api.CodeUnknownMember)
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	ta.putKV(t, "k", "v")
	ta.getKV(t, "k")
	ta.do(t, "GET", "/v1/kv/missing", "")
	ta.do(t, "GET", "/nope", "")
	ta.do(t, "GET", "/v1/kv/a//b", "")
	r := ta.do(t, "GET", "/metrics", "")
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
		t.Fatalf("metrics: %d %s", r.status, r.header.Get("Content-Type"))
	}
	text := string(r.body)
	for _, want := range []string{
		`coordd_http_requests_total{code="200",route="PUT /v1/kv/{key...}"} 1`,
		`coordd_http_requests_total{code="200",route="GET /v1/kv/{key...}"} 1`,
		`coordd_http_requests_total{code="404",route="GET /v1/kv/{key...}"} 1`,
		`coordd_http_requests_total{code="404",route="unmatched"} 1`,
		`coordd_http_requests_total{code="400",route="unmatched"} 1`,
		`coordd_http_request_duration_seconds_count{route="PUT /v1/kv/{key...}"} 1`,
		`coordd_http_forwarded_total 0`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// The scrape itself is counted by the next one.
	r = ta.do(t, "GET", "/metrics", "")
	if !strings.Contains(string(r.body), `coordd_http_requests_total{code="200",route="GET /metrics"} 1`) {
		t.Errorf("metrics scrape not counted")
	}
}

// TestMetricsRegistry: two APIs need two registries; a shared one panics.
func TestMetricsRegistry(t *testing.T) {
	t.Parallel()
	a := newTestAPI(t, "n1", nil)
	defer func() {
		if recover() == nil {
			t.Errorf("registering the metrics twice did not panic")
		}
	}()
	httpapi.New(newFakeNode("n2"), httpapi.Options{Registry: a.reg})
}
