package server_test

import (
	"bytes"
	"fmt"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/fsm"
	"github.com/coordd/coordd/internal/testcluster"
)

// Test_Cluster_FollowerForwardsEncodedCommands: in a real cluster, once
// the peer secret is set, a follower sends a write's encoded command to
// the leader (coordd_forward_encoded_total, no fallback), and its answers
// are the leader's: a lock's holder and its queued candidate, a stale
// token, a CAS conflict, an idempotent replay.
func Test_Cluster_FollowerForwardsEncodedCommands(t *testing.T) {
	t.Parallel()
	c := testcluster.New(t, 3)
	testcluster.Poll(t, 20*time.Second, func() error {
		for _, n := range c.Nodes {
			if len(n.Server().PeerSecret()) != fsm.PeerSecretSize {
				return fmt.Errorf("%s has no peer secret yet", n.ID)
			}
		}
		return nil
	})
	f := c.Followers()[0]
	putRetry(t, c, f, "k", "v")
	var lock api.CampaignResponse
	r := call(t, c, http.MethodPost, f.URL()+"/v1/locks/l", `{"ttl":"10s"}`)
	r.JSON(t, &lock)
	if !lock.Leader || lock.Token == 0 || r.Header.Get(api.HeaderServedBy) != c.Leader().ID || r.Header.Get(api.HeaderForwardedBy) != f.ID {
		t.Fatalf("lock through the follower: %d %s %v", r.Status, r.Body, r.Header)
	}
	var queued api.CampaignResponse
	call(t, c, http.MethodPost, f.URL()+"/v1/locks/l", `{"ttl":"10s"}`).JSON(t, &queued)
	if queued.Leader || queued.Position != 1 || len(queued.Election.Candidates) != 1 {
		t.Fatalf("second lock: %+v", queued)
	}
	r = call(t, c, http.MethodDelete, f.URL()+"/v1/locks/l", fmt.Sprintf(`{"lease":%d,"token":%d}`, lock.Lease, lock.Token+100))
	if r.Status != http.StatusConflict || !bytes.Contains(r.Body, []byte(api.CodeStaleToken)) {
		t.Fatalf("release with a stale token: %d %s", r.Status, r.Body)
	}
	r = call(t, c, http.MethodPut, f.URL()+"/v1/kv/k?cas=0", "w")
	if r.Status != http.StatusConflict || !bytes.Contains(r.Body, []byte(api.CodeCASConflict)) {
		t.Fatalf("create-only put of an existing key: %d %s", r.Status, r.Body)
	}
	first := call(t, c, http.MethodPut, f.URL()+"/v1/kv/idem", "1", api.HeaderIdempotencyKey, "once")
	again := call(t, c, http.MethodPut, f.URL()+"/v1/kv/idem", "1", api.HeaderIdempotencyKey, "once")
	if first.Status != http.StatusOK || !bytes.Equal(first.Body, again.Body) || again.Header.Get(api.HeaderReplayed) != "true" {
		t.Fatalf("replay: %d %s then %d %s", first.Status, first.Body, again.Status, again.Body)
	}
	m := call(t, c, http.MethodGet, f.URL()+"/metrics", "")
	enc := regexp.MustCompile(`(?m)^coordd_forward_encoded_total (\d+)`).FindSubmatch(m.Body)
	if enc == nil || string(enc[1]) == "0" || !bytes.Contains(m.Body, []byte("coordd_forward_encoded_fallbacks_total 0")) {
		t.Fatalf("follower metrics: encoded %q, fallbacks line present: %t", enc, bytes.Contains(m.Body, []byte("coordd_forward_encoded_fallbacks_total 0")))
	}
}
