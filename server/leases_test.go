package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/fencing"
	"github.com/coordd/coordd/internal/testcluster"
	"github.com/coordd/coordd/server"
)

// call sends a request, retrying while the answer says nothing was done
// and a retry is safe (no leader yet, leadership moving).
func call(t *testing.T, c *testcluster.Cluster, method, url, body string, hdr ...string) *testcluster.Response {
	t.Helper()
	return c.Call(method, url, body, hdr...)
}

func grant(t *testing.T, c *testcluster.Cluster, n *testcluster.Node, ttl string) api.Lease {
	t.Helper()
	r := call(t, c, http.MethodPost, n.URL()+"/v1/leases", `{"ttl":"`+ttl+`"}`)
	if r.Status != http.StatusOK {
		t.Fatalf("grant: %d %s", r.Status, r.Body)
	}
	var l api.Lease
	r.JSON(t, &l)
	return l
}

func campaign(t *testing.T, c *testcluster.Cluster, n *testcluster.Node, name string, lease uint64, value, wait string) (api.CampaignResponse, *testcluster.Response) {
	t.Helper()
	r := call(t, c, http.MethodPost, n.URL()+"/v1/elections/"+name+"/campaign",
		fmt.Sprintf(`{"lease":%d,"value":%q,"wait":%q}`, lease, value, wait))
	var cr api.CampaignResponse
	if r.Status == http.StatusOK {
		r.JSON(t, &cr)
	}
	return cr, r
}

// keepAlive keeps a lease alive through any running node until stop.
func keepAlive(t *testing.T, c *testcluster.Cluster, id uint64, every time.Duration, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(every):
			}
			nodes := c.Running()
			if len(nodes) == 0 {
				continue
			}
			n := nodes[i%len(nodes)]
			_, _ = c.TryWith(http.MethodPost, fmt.Sprintf("%s/v1/leases/%d/keepalive", n.URL(), id), "")
		}
	}()
	return &wg
}

func Test_Leases_GrantKeepaliveInspectRevoke(t *testing.T) {
	t.Parallel()
	c := testcluster.New(t, 3)
	f := c.Followers()[0]
	l := grant(t, c, f, "5s")
	if l.ID == 0 || l.TTLMs != 5000 || l.RemainingMs <= 0 || l.RemainingMs > 5000 {
		t.Fatalf("grant: %+v", l)
	}
	r := call(t, c, http.MethodPost, fmt.Sprintf("%s/v1/leases/%d/keepalive", f.URL(), l.ID), "")
	var k api.Lease
	r.JSON(t, &k)
	if r.Status != http.StatusOK || k.RemainingMs < 4900 {
		t.Fatalf("keepalive: %d %s", r.Status, r.Body)
	}
	// Attach a key and an election, and see them on the lease.
	call(t, c, http.MethodPut, fmt.Sprintf("%s/v1/kv/session/a?lease=%d", f.URL(), l.ID), "x")
	campaign(t, c, f, "svc", l.ID, "me", "")
	r = call(t, c, http.MethodGet, fmt.Sprintf("%s/v1/leases/%d", f.URL(), l.ID), "")
	var got api.Lease
	r.JSON(t, &got)
	if len(got.Attached) != 2 {
		t.Fatalf("attached: %s", r.Body)
	}
	// Revoke releases both in the same entry.
	if r = call(t, c, http.MethodDelete, fmt.Sprintf("%s/v1/leases/%d", f.URL(), l.ID), ""); r.Status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.Status, r.Body)
	}
	if r = call(t, c, http.MethodGet, f.URL()+"/v1/kv/session/a", ""); r.Status != http.StatusNotFound {
		t.Fatalf("attached key after revoke: %d", r.Status)
	}
	var e api.Election
	call(t, c, http.MethodGet, f.URL()+"/v1/elections/svc", "").JSON(t, &e)
	if e.Leader != nil {
		t.Fatalf("leader after revoke: %+v", e.Leader)
	}
	r = call(t, c, http.MethodPost, fmt.Sprintf("%s/v1/leases/%d/keepalive", f.URL(), l.ID), "")
	if r.Status != http.StatusNotFound || r.ErrorCode() != api.CodeLeaseNotFound {
		t.Fatalf("keepalive of a revoked lease: %d %s", r.Status, r.Body)
	}
}

func Test_Elections_ResignHandsOverToTheNextCandidateAtOnce(t *testing.T) {
	t.Parallel()
	c := testcluster.New(t, 3)
	n := c.Followers()[0]
	a, b := grant(t, c, n, "10s"), grant(t, c, n, "10s")
	ca, _ := campaign(t, c, n, "db", a.ID, "A", "")
	cb, _ := campaign(t, c, n, "db", b.ID, "B", "")
	if !ca.Leader || cb.Leader || cb.Position != 1 {
		t.Fatalf("campaigns: %+v / %+v", ca, cb)
	}
	r := call(t, c, http.MethodPost, n.URL()+"/v1/elections/db/resign", fmt.Sprintf(`{"lease":%d,"token":%d}`, a.ID, ca.Token))
	var e api.Election
	r.JSON(t, &e)
	// The resign's own answer already names the next leader: same entry.
	if r.Status != http.StatusOK || e.Leader == nil || e.Leader.Lease != b.ID || e.Leader.Token <= ca.Token || e.Leader.Value != "B" {
		t.Fatalf("after resign: %d %s", r.Status, r.Body)
	}
	// Proclaim keeps the token; a stale token is refused.
	r = call(t, c, http.MethodPost, n.URL()+"/v1/elections/db/proclaim", fmt.Sprintf(`{"lease":%d,"token":%d,"value":"B2"}`, b.ID, e.Leader.Token))
	var p api.Election
	r.JSON(t, &p)
	if p.Leader == nil || p.Leader.Value != "B2" || p.Leader.Token != e.Leader.Token {
		t.Fatalf("proclaim: %s", r.Body)
	}
	r = call(t, c, http.MethodPost, n.URL()+"/v1/elections/db/proclaim", fmt.Sprintf(`{"lease":%d,"token":%d,"value":"x"}`, b.ID, ca.Token))
	if r.Status != http.StatusConflict || r.ErrorCode() != api.CodeStaleToken {
		t.Fatalf("stale proclaim: %d %s", r.Status, r.Body)
	}
	// The fencing check agrees.
	var fc api.FencingCheck
	call(t, c, http.MethodGet, fmt.Sprintf("%s/v1/fencing/db?token=%d", n.URL(), ca.Token), "").JSON(t, &fc)
	if fc.Current || fc.Token != e.Leader.Token {
		t.Fatalf("fencing check of the old token: %+v", fc)
	}
	call(t, c, http.MethodGet, fmt.Sprintf("%s/v1/fencing/db?token=%d", n.URL(), e.Leader.Token), "").JSON(t, &fc)
	if !fc.Current {
		t.Fatalf("fencing check of the current token: %+v", fc)
	}
}

func Test_Elections_HolderStopsKeepingAlive_StandbyLeadsAfterTheTTLNotBefore(t *testing.T) {
	t.Parallel()
	c := testcluster.New(t, 3)
	n := c.Followers()[0]
	a := grant(t, c, n, "1s")
	granted := time.Now()
	ca, _ := campaign(t, c, n, "svc", a.ID, "A", "")
	b := grant(t, c, n, "10s")
	stop := make(chan struct{})
	wg := keepAlive(t, c, b.ID, time.Second, stop)
	defer func() { close(stop); wg.Wait() }()

	// B waits for leadership; A never keeps alive.
	cb, r := campaign(t, c, n, "svc", b.ID, "B", "10s")
	led := time.Since(granted)
	if r.Status != http.StatusOK || !cb.Leader || cb.Token <= ca.Token {
		t.Fatalf("standby campaign: %d %s", r.Status, r.Body)
	}
	if led < time.Second {
		t.Fatalf("standby led %s after the holder's grant, before its 1s TTL", led)
	}
	t.Logf("holder stopped: standby led %s after the holder's last grant (TTL 1s)", led.Round(time.Millisecond))
}

func Test_Elections_RaftLeaderKilled_HeldLeaseSurvivesAndKeepsItsToken(t *testing.T) {
	t.Parallel()
	c := testcluster.New(t, 3)
	f := c.Followers()[0]
	a := grant(t, c, f, "2s")
	ca, _ := campaign(t, c, f, "svc", a.ID, "A", "")
	stop := make(chan struct{})
	wg := keepAlive(t, c, a.ID, 400*time.Millisecond, stop)
	defer func() { close(stop); wg.Wait() }()

	time.Sleep(500 * time.Millisecond)
	c.Kill(c.Leader())
	c.Leader()
	time.Sleep(3 * time.Second) // more than the TTL, across the failover
	var e api.Election
	r := call(t, c, http.MethodGet, c.Running()[0].URL()+"/v1/elections/svc", "")
	r.JSON(t, &e)
	if e.Leader == nil || e.Leader.Lease != a.ID || e.Leader.Token != ca.Token {
		t.Fatalf("after the failover: %s (want lease %d token %d)", r.Body, a.ID, ca.Token)
	}
}

func Test_Leases_RepeatedLeaderChanges_DoNotKeepAnAbandonedLeaseAlive(t *testing.T) {
	t.Parallel()
	c := testcluster.New(t, 3, func(cfg *server.Config) { cfg.LeaseCheckpointInterval = 300 * time.Millisecond })
	n := c.Running()[0]
	l := grant(t, c, n, "2s")
	abandoned := time.Now()
	// Bound: TTL + checkpoint interval + failover + extension (600 ms).
	bound := 2*time.Second + 300*time.Millisecond + time.Second + 600*time.Millisecond
	gone := false
	for time.Since(abandoned) < 3*bound && !gone {
		// Hand leadership around every 700 ms: without checkpoints every
		// new leader would restart the lease's full TTL.
		call(t, c, http.MethodPost, c.Running()[0].URL()+"/v1/cluster/transfer-leadership", "")
		time.Sleep(700 * time.Millisecond)
		r := call(t, c, http.MethodGet, fmt.Sprintf("%s/v1/leases/%d", c.Running()[0].URL(), l.ID), "")
		gone = r.Status == http.StatusNotFound
	}
	took := time.Since(abandoned)
	if !gone {
		t.Fatalf("abandoned lease still alive after %s of leader changes (bound %s)", took, bound)
	}
	t.Logf("abandoned 2s lease expired %s after its grant despite a leader change every 700ms (bound %s)", took.Round(time.Millisecond), bound)
	if took > bound+time.Second {
		t.Fatalf("expired after %s, past the documented bound %s", took, bound)
	}
}

func Test_Elections_ObserversSeeEveryLeaderInOrderAndNoLeader(t *testing.T) {
	t.Parallel()
	c := testcluster.New(t, 3)
	n := c.Followers()[0]
	a, b := grant(t, c, n, "10s"), grant(t, c, n, "10s")
	ca, _ := campaign(t, c, n, "obs", a.ID, "A", "")
	campaign(t, c, n, "obs", b.ID, "B", "")

	// An SSE observer on the other follower.
	req, _ := http.NewRequest(http.MethodGet, c.Followers()[1].URL()+"/v1/elections/obs", nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events := make(chan api.StreamEvent, 100)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				var ev api.StreamEvent
				if json.Unmarshal([]byte(data), &ev) == nil {
					events <- ev
				}
			}
		}
		close(events)
	}()
	next := func(want func(api.StreamEvent) bool) api.StreamEvent {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					t.Fatal("stream ended")
				}
				if want(ev) {
					return ev
				}
			case <-deadline:
				t.Fatal("no matching event")
			}
		}
	}
	first := next(func(ev api.StreamEvent) bool { return ev.Leader != nil && ev.Leader.Lease == a.ID })
	call(t, c, http.MethodPost, n.URL()+"/v1/elections/obs/resign", fmt.Sprintf(`{"lease":%d,"token":%d}`, a.ID, ca.Token))
	second := next(func(ev api.StreamEvent) bool { return ev.Leader != nil && ev.Leader.Lease == b.ID })
	if second.Leader.Token <= first.Leader.Token || second.Changes <= first.Changes {
		t.Fatalf("tokens or changes did not increase: %+v then %+v", first, second)
	}
	if second.Changes != first.Changes+1 {
		t.Fatalf("a hand-off counted %d changes, want 1", second.Changes-first.Changes)
	}
	// A new value is a change too; a blocking query from the first state
	// reports the hand-off it did not see as coalesced.
	call(t, c, http.MethodPost, n.URL()+"/v1/elections/obs/proclaim", fmt.Sprintf(`{"lease":%d,"token":%d,"value":"B2"}`, b.ID, second.Leader.Token))
	third := next(func(ev api.StreamEvent) bool { return ev.Leader != nil && ev.Leader.Value == "B2" })
	var e api.Election
	r := call(t, c, http.MethodGet, fmt.Sprintf("%s/v1/elections/obs?index=%d&wait=5s&changes=%d", n.URL(), first.Index, first.Changes), "")
	r.JSON(t, &e)
	if e.Leader == nil || e.Leader.Value != "B2" || e.Changes != third.Changes || e.Coalesced != 1 {
		t.Fatalf("blocking query: %s", r.Body)
	}
	// The last holder leaves: no leader, and the name, which nobody holds
	// or waits for, is gone at once (its counters restart if it is made
	// again).
	call(t, c, http.MethodDelete, fmt.Sprintf("%s/v1/leases/%d", n.URL(), b.ID), "")
	none := next(func(ev api.StreamEvent) bool { return ev.Leader == nil })
	if !none.KnownLeader || none.Changes != 0 {
		t.Fatalf("no-leader event: %+v", none)
	}
	r = call(t, c, http.MethodGet, fmt.Sprintf("%s/v1/elections/obs?index=%d&wait=5s", n.URL(), third.Index), "")
	r.JSON(t, &e)
	if e.Leader != nil || len(e.Candidates) != 0 || e.Index <= third.Index {
		t.Fatalf("blocking query after the release: %s", r.Body)
	}
}

func Test_Idempotency_RetriedGrantAndCampaignApplyOnce(t *testing.T) {
	t.Parallel()
	c := testcluster.New(t, 3)
	n := c.Followers()[0]
	r1 := call(t, c, http.MethodPost, n.URL()+"/v1/leases", `{"ttl":"10s"}`, "Idempotency-Key", "grant-1")
	r2 := call(t, c, http.MethodPost, c.Followers()[1].URL()+"/v1/leases", `{"ttl":"10s"}`, "Idempotency-Key", "grant-1")
	var l1, l2 api.Lease
	r1.JSON(t, &l1)
	r2.JSON(t, &l2)
	if l1.ID != l2.ID || r2.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("retried grant: %s / %s %v", r1.Body, r2.Body, r2.Header)
	}
	var all []api.Lease
	call(t, c, http.MethodGet, n.URL()+"/v1/leases", "").JSON(t, &all)
	if len(all) != 1 {
		t.Fatalf("%d leases after a retried grant", len(all))
	}
	other := grant(t, c, n, "10s")
	campaign(t, c, n, "q", other.ID, "", "")
	body := fmt.Sprintf(`{"lease":%d}`, l1.ID)
	call(t, c, http.MethodPost, n.URL()+"/v1/elections/q/campaign", body, "Idempotency-Key", "camp-1")
	call(t, c, http.MethodPost, n.URL()+"/v1/elections/q/campaign", body, "Idempotency-Key", "camp-1")
	var e api.Election
	call(t, c, http.MethodGet, n.URL()+"/v1/elections/q", "").JSON(t, &e)
	if len(e.Candidates) != 1 {
		t.Fatalf("retried campaign queued %d times", len(e.Candidates))
	}
}

func Test_LeasesAndElections_BadInputGetsClear4xx(t *testing.T) {
	t.Parallel()
	c := testcluster.New(t, 3)
	n := c.Running()[0]
	l := grant(t, c, n, "10s")
	cl, _ := campaign(t, c, n, "x", l.ID, "", "")
	cases := []struct {
		method, path, body string
		status             int
		code               string
	}{
		{"POST", "/v1/leases", `{"ttl":"10ms"}`, 400, api.CodeBadTTL},
		{"POST", "/v1/leases", `{"ttl":"100h"}`, 400, api.CodeBadTTL},
		{"POST", "/v1/leases", `{"ttl":"soon"}`, 400, api.CodeBadRequest},
		{"POST", "/v1/leases", `{"ttl":"1s","ttl_ms":1000}`, 400, api.CodeBadRequest},
		{"POST", "/v1/leases", `{}`, 400, api.CodeBadTTL},
		{"POST", "/v1/leases/999999/keepalive", "", 404, api.CodeLeaseNotFound},
		{"POST", "/v1/leases/abc/keepalive", "", 400, api.CodeBadRequest},
		{"DELETE", "/v1/leases/999999", "", 404, api.CodeLeaseNotFound},
		{"GET", "/v1/leases/0", "", 400, api.CodeBadRequest},
		{"POST", "/v1/elections/x/campaign", `{"lease":999999}`, 404, api.CodeLeaseNotFound},
		{"POST", "/v1/elections/x/campaign", `{}`, 400, api.CodeBadRequest},
		{"POST", "/v1/elections/x/campaign", fmt.Sprintf(`{"lease":%d,"wait":"forever"}`, l.ID), 400, api.CodeBadRequest},
		{"POST", "/v1/elections/x/campaign", fmt.Sprintf(`{"lease":%d,"limit":2}`, l.ID), 400, api.CodeBadRequest},
		{"POST", "/v1/elections/" + strings.Repeat("n", 300) + "/campaign", fmt.Sprintf(`{"lease":%d}`, l.ID), 413, api.CodeTooLarge},
		{"POST", "/v1/elections/x/resign", fmt.Sprintf(`{"lease":%d,"token":%d}`, l.ID, cl.Token-1), 409, api.CodeStaleToken},
		{"POST", "/v1/elections/x/resign", fmt.Sprintf(`{"lease":999999,"token":%d}`, cl.Token), 409, api.CodeNotHolder},
		{"POST", "/v1/elections/nope/resign", fmt.Sprintf(`{"lease":%d,"token":1}`, l.ID), 404, api.CodeElectionNotFound},
		{"POST", "/v1/elections/x/proclaim", fmt.Sprintf(`{"lease":%d}`, l.ID), 400, api.CodeBadRequest},
		{"POST", "/v1/locks/x", fmt.Sprintf(`{"lease":%d}`, l.ID), 409, api.CodeKindMismatch},
		{"GET", "/v1/fencing/x", "", 400, api.CodeBadRequest},
		{"PUT", "/v1/kv/k?lease=999999", "v", 404, api.CodeLeaseNotFound},
	}
	for _, tc := range cases {
		r := call(t, c, tc.method, n.URL()+tc.path, tc.body)
		if r.Status != tc.status || r.ErrorCode() != tc.code {
			t.Errorf("%s %s %s: %d %s, want %d %s", tc.method, tc.path, tc.body, r.Status, r.Body, tc.status, tc.code)
		}
	}
}

func Test_Fencing_GuardAndCheckEndpointRejectTheDeposedHolder(t *testing.T) {
	t.Parallel()
	c := testcluster.New(t, 3)
	n := c.Followers()[0]
	lockTok := func(lease uint64, wait string) uint64 {
		t.Helper()
		var cr api.CampaignResponse
		r := call(t, c, http.MethodPost, n.URL()+"/v1/locks/report", fmt.Sprintf(`{"lease":%d,"wait":%q}`, lease, wait))
		r.JSON(t, &cr)
		if !cr.Leader {
			t.Fatalf("lock not acquired: %s", r.Body)
		}
		return cr.Token
	}
	guard := fencing.NewGuard(fencing.NewMemoryStore())
	ctx := context.Background()
	// A holds the lock with a short lease and writes; then A "pauses".
	a := grant(t, c, n, "1s")
	ta := lockTok(a.ID, "")
	if err := guard.Check(ctx, "report", fencing.Token(ta)); err != nil {
		t.Fatal(err)
	}
	// B waits for the lock and gets it once A's lease expires.
	b := grant(t, c, n, "10s")
	tb := lockTok(b.ID, "10s")
	if tb <= ta {
		t.Fatalf("B's token %d not above A's %d", tb, ta)
	}
	if err := guard.Check(ctx, "report", fencing.Token(tb)); err != nil {
		t.Fatal(err)
	}
	// A wakes up and writes with its old token: refused by the resource,
	// and the cluster says the token is no longer current.
	if err := guard.Check(ctx, "report", fencing.Token(ta)); !errors.Is(err, fencing.ErrStaleToken) {
		t.Fatalf("deposed holder's write: %v", err)
	}
	var fc api.FencingCheck
	call(t, c, http.MethodGet, fmt.Sprintf("%s/v1/fencing/report?token=%d", n.URL(), ta), "").JSON(t, &fc)
	if fc.Current || fc.Token != tb {
		t.Fatalf("check endpoint: %+v", fc)
	}
}

func Test_Leases_ManyExpiringAtOnce_AreBatchedAndWritesGoOn(t *testing.T) {
	t.Parallel()
	c := testcluster.New(t, 3)
	n := c.Leader()
	const leases = 1000
	var wg sync.WaitGroup
	ids := make(chan uint64, leases)
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < leases; i += 16 {
				r, err := c.Try(http.MethodPost, n.URL()+"/v1/leases", `{"ttl":"2s"}`)
				if err != nil || r.Status != http.StatusOK {
					t.Errorf("grant %d: %v %v", i, err, r)
					return
				}
				var l api.Lease
				r.JSON(t, &l)
				ids <- l.ID
			}
		}()
	}
	wg.Wait()
	close(ids)
	granted := time.Now()
	// Writes go on while they all expire.
	var slowest time.Duration
	writes := 0
	for time.Since(granted) < 15*time.Second {
		start := time.Now()
		r := call(t, c, http.MethodPut, n.URL()+"/v1/kv/during-expiry", fmt.Sprint(writes))
		if r.Status != http.StatusOK {
			t.Fatalf("write during mass expiry: %d %s", r.Status, r.Body)
		}
		slowest = max(slowest, time.Since(start))
		writes++
		var all []api.Lease
		call(t, c, http.MethodGet, n.URL()+"/v1/leases", "").JSON(t, &all)
		if len(all) == 0 {
			break
		}
	}
	var all []api.Lease
	call(t, c, http.MethodGet, n.URL()+"/v1/leases", "").JSON(t, &all)
	if len(all) != 0 {
		t.Fatalf("%d leases still alive 15s after a 2s TTL", len(all))
	}
	t.Logf("%d leases expired within %s of their grant; %d writes meanwhile, slowest %s",
		leases, time.Since(granted).Round(time.Millisecond), writes, slowest.Round(time.Millisecond))
}

func Test_Locks_LockDelayAfterAFailureThenTheWaiterGetsIt(t *testing.T) {
	t.Parallel()
	c := testcluster.New(t, 3)
	n := c.Followers()[0]
	a, b := grant(t, c, n, "10s"), grant(t, c, n, "10s")
	var ca api.CampaignResponse
	call(t, c, http.MethodPost, n.URL()+"/v1/locks/job", fmt.Sprintf(`{"lease":%d,"lock_delay":"1s"}`, a.ID)).JSON(t, &ca)
	if !ca.Leader {
		t.Fatalf("first lock: %+v", ca)
	}
	done := make(chan api.CampaignResponse, 1)
	go func() {
		var cb api.CampaignResponse
		r, err := c.Try(http.MethodPost, n.URL()+"/v1/locks/job", fmt.Sprintf(`{"lease":%d,"wait":"10s"}`, b.ID))
		if err == nil && r.Status == http.StatusOK {
			_ = json.Unmarshal(r.Body, &cb)
		}
		done <- cb
	}()
	time.Sleep(200 * time.Millisecond) // let B queue
	failed := time.Now()
	call(t, c, http.MethodDelete, fmt.Sprintf("%s/v1/leases/%d", n.URL(), a.ID), "") // A fails
	cb := <-done
	waited := time.Since(failed)
	if !cb.Leader || cb.Token <= ca.Token {
		t.Fatalf("waiter after the lock-delay: %+v", cb)
	}
	if waited < time.Second {
		t.Fatalf("waiter got the lock %s after the holder failed, inside the 1s lock-delay", waited)
	}
	t.Logf("lock-delay 1s: waiter got the lock %s after the holder failed", waited.Round(time.Millisecond))
}

// metricOf reads one unlabelled metric from a node's /metrics.
func metricOf(t *testing.T, c *testcluster.Cluster, n *testcluster.Node, name string) float64 {
	t.Helper()
	r := call(t, c, http.MethodGet, n.URL()+"/metrics", "")
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindSubmatch(r.Body)
	if m == nil {
		t.Fatalf("no %s in the metrics of %s", name, n.ID)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return v
}

// A keepalive of many checkpointed leases commits their renewals a batch
// to an entry, not an entry a lease: with one entry a lease, a 10,000-lease
// call on a loaded machine outlasted its client's timeout, so its leases
// were not renewed and expired (coordbench -mode million at 250k).
func Test_KeepaliveMany_RenewsCheckpointedLeasesInBatches(t *testing.T) {
	t.Parallel()
	c := testcluster.New(t, 3, func(cfg *server.Config) { cfg.LeaseCheckpointInterval = 200 * time.Millisecond })
	leader := c.Leader()
	const n = 2100 // three entries of at most 1,000
	ids := make([]uint64, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := range 32 {
		wg.Go(func() {
			for i := w; i < n; i += 32 {
				r, err := c.TryWith(http.MethodPost, leader.URL()+"/v1/leases", `{"ttl":"30s"}`)
				if err != nil || r.Status != http.StatusOK {
					errs <- fmt.Errorf("grant %d: %v %v", i, r, err)
					return
				}
				var l api.Lease
				if err := json.Unmarshal(r.Body, &l); err != nil {
					errs <- err
					return
				}
				ids[i] = l.ID
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	testcluster.Poll(t, 20*time.Second, func() error {
		st := leader.Server().State()
		for _, id := range ids {
			if l, ok := st.Lease(id); !ok || l.Remaining == 0 {
				return fmt.Errorf("lease %d not checkpointed yet", id)
			}
		}
		return nil
	})
	revoked := ids[7]
	if r := call(t, c, http.MethodDelete, fmt.Sprintf("%s/v1/leases/%d", leader.URL(), revoked), ""); r.Status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.Status, r.Body)
	}
	index0 := leader.Server().State().Index()
	commits0 := metricOf(t, c, leader, "coordd_lease_renew_commits_total")
	renewed0 := metricOf(t, c, leader, "coordd_lease_renewed_total")

	const unknown = 1 << 40
	body, _ := json.Marshal(api.KeepaliveManyRequest{IDs: append(slices.Clone(ids), unknown)})
	r := call(t, c, http.MethodPost, leader.URL()+"/v1/leases/keepalive", string(body))
	var res api.KeepaliveManyResponse
	if r.Status != http.StatusOK {
		t.Fatalf("keepalive: %d %s", r.Status, r.Body)
	}
	r.JSON(t, &res)
	if !slices.Equal(res.NotFound, []uint64{revoked, unknown}) || len(res.Leases) != n-1 {
		t.Fatalf("keepalive: %d renewed, not found %v; want %d and [%d %d]", len(res.Leases), res.NotFound, n-1, revoked, unknown)
	}
	commits := metricOf(t, c, leader, "coordd_lease_renew_commits_total") - commits0
	renewed := metricOf(t, c, leader, "coordd_lease_renewed_total") - renewed0
	if commits != 3 || renewed != n-1 {
		t.Fatalf("renewing %d checkpointed leases took %.0f entries and renewed %.0f; want 3 and %d", n-1, commits, renewed, n-1)
	}
	// Every replica applied the renewals: each lease has a new epoch (a
	// renew, or a checkpoint after it: none before the renew, which
	// cleared the remainder).
	testcluster.Poll(t, 10*time.Second, func() error {
		for _, nd := range c.Running() {
			for _, id := range ids {
				if l, ok := nd.Server().State().Lease(id); ok && l.Epoch <= index0 {
					return fmt.Errorf("%s: lease %d not renewed: %+v", nd.ID, id, l)
				}
			}
		}
		return nil
	})
}
