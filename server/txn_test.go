package server_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/internal/testcluster"
)

// postRetry posts body to url, retrying while the cluster has no ready
// leader (nothing was applied then), with an Idempotency-Key so that a
// retry after an unknown outcome cannot apply twice.
func postRetry(t *testing.T, c *testcluster.Cluster, url, body, key string) *testcluster.Response {
	t.Helper()
	var r *testcluster.Response
	testcluster.Poll(t, 20*time.Second, func() error {
		var err error
		r, err = c.TryWith(http.MethodPost, url, body, api.HeaderIdempotencyKey, key)
		if err != nil {
			return err
		}
		switch r.ErrorCode() {
		case api.CodeNoLeader, api.CodeNotLeader, api.CodeLeaderNotReady, api.CodeOutcomeUnknown, api.CodeForwardFailed:
			return fmt.Errorf("retryable: %s", r.Body)
		}
		return nil
	})
	return r
}

// Test_Cluster_Txn_AppliedAtomicallyEverywhere_AndFencedAcrossAHandOff
// sends transactions through a follower, kills the leader, and checks
// that every node holds each transaction's writes all together; then that
// a lock holder's fenced writes pass while it holds the lock and are
// refused with the new holder's token once it lost it.
func Test_Cluster_Txn_AppliedAtomicallyEverywhere_AndFencedAcrossAHandOff(t *testing.T) {
	t.Parallel()
	c := testcluster.New(t, 3)
	f := c.Followers()[0]
	for i := range 5 {
		body := fmt.Sprintf(`{"if":[{"target":"version","key":"epoch","op":"=","number":%d}],
			"then":[{"op":"put","key":"epoch","value":"%d"},{"op":"put","key":"cfg/a","value":"a%d"},{"op":"put","key":"cfg/b","value":"b%d"}]}`, i, i+1, i+1, i+1)
		r := postRetry(t, c, f.URL()+"/v1/txn", body, fmt.Sprint("txn-", i))
		var res api.TxnResponse
		r.JSON(t, &res)
		if r.Status != http.StatusOK || !res.Succeeded || len(res.Results) != 3 {
			t.Fatalf("txn %d: %d %s", i, r.Status, r.Body)
		}
		if i == 2 {
			c.Kill(c.Leader())
		}
	}
	for _, n := range c.Running() {
		testcluster.Poll(t, 10*time.Second, func() error {
			for _, k := range []string{"epoch", "cfg/a", "cfg/b"} {
				kv, r := getKV(t, c, n.URL()+"/v1/kv/"+k+"?stale")
				if r.Status != http.StatusOK || kv.Version != 5 {
					return fmt.Errorf("%s: %s at version %d (%d %s)", n.ID, k, kv.Version, r.Status, r.Body)
				}
			}
			return nil
		})
	}

	// Fencing: lease A holds lock "db", lease B waits.
	grant := func() uint64 {
		var l api.Lease
		postRetry(t, c, c.Running()[0].URL()+"/v1/leases", `{"ttl":"60s"}`, fmt.Sprint("grant-", time.Now().UnixNano())).JSON(t, &l)
		return l.ID
	}
	a, b := grant(), grant()
	var ca api.CampaignResponse
	postRetry(t, c, c.Running()[0].URL()+"/v1/locks/db", fmt.Sprintf(`{"lease":%d}`, a), "lock-a").JSON(t, &ca)
	if !ca.Leader {
		t.Fatalf("lease %d did not take the free lock: %+v", a, ca)
	}
	put := func(token uint64, v string) *testcluster.Response {
		var r *testcluster.Response
		testcluster.Poll(t, 20*time.Second, func() error {
			var err error
			r, err = c.TryWith(http.MethodPut, c.Running()[1].URL()+fmt.Sprintf("/v1/kv/db/cfg?fence=db:%d", token), v,
				api.HeaderIdempotencyKey, fmt.Sprint("fenced-", token, v))
			if err == nil && (r.ErrorCode() == api.CodeNoLeader || r.ErrorCode() == api.CodeNotLeader || r.ErrorCode() == api.CodeLeaderNotReady) {
				err = fmt.Errorf("retryable: %s", r.Body)
			}
			return err
		})
		return r
	}
	if r := put(ca.Token, "from-a"); r.Status != http.StatusOK {
		t.Fatalf("holder's fenced put: %d %s", r.Status, r.Body)
	}
	// B queues; A resigns; B holds the lock.
	postRetry(t, c, c.Running()[0].URL()+"/v1/locks/db", fmt.Sprintf(`{"lease":%d}`, b), "lock-b")
	rr, err := c.TryWith(http.MethodDelete, c.Running()[0].URL()+"/v1/locks/db", fmt.Sprintf(`{"lease":%d,"token":%d}`, a, ca.Token))
	if err != nil || rr.Status != http.StatusOK {
		t.Fatalf("unlock: %v %+v", err, rr)
	}
	var el api.Election
	testcluster.Poll(t, 10*time.Second, func() error {
		r := c.Do(http.MethodGet, c.Running()[0].URL()+"/v1/locks/db", "")
		r.JSON(t, &el)
		if el.Leader == nil || el.Leader.Lease != b {
			return fmt.Errorf("lock not handed to %d: %s", b, r.Body)
		}
		return nil
	})
	r := put(ca.Token, "late-from-a")
	if r.Status != http.StatusConflict || r.ErrorCode() != api.CodeStaleToken {
		t.Fatalf("deposed holder's fenced put: %d %s", r.Status, r.Body)
	}
	var e api.ErrorBody
	r.JSON(t, &e)
	if e.Error.CurrentToken == nil || *e.Error.CurrentToken != el.Leader.Token {
		t.Fatalf("stale_token names %v, want the new holder's token %d", e.Error.CurrentToken, el.Leader.Token)
	}
	if kv, _ := getKV(t, c, c.Running()[0].URL()+"/v1/kv/db/cfg"); string(kv.Value) != "from-a" {
		t.Fatalf("db/cfg = %q", kv.Value)
	}
}
