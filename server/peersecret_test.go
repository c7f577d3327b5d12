package server_test

import (
	"bytes"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/fsm"
	"github.com/coordd/coordd/internal/testcluster"
)

// Test_PeerSecret_EveryMemberHasTheSameOne_AJoinerToo_ARestoreKeepsIt: the
// secret nodes sign their forwards with is set once by the first leader,
// replicated to every member (one that joins later included), kept by a
// restore; forwarded writes are trusted (none counted as untrusted) and a
// client's X-Coordd-Forwarded-By is counted.
func Test_PeerSecret_EveryMemberHasTheSameOne_AJoinerToo_ARestoreKeepsIt(t *testing.T) {
	t.Parallel()
	c := testcluster.New(t, 3)
	var secret []byte
	testcluster.Poll(t, 20*time.Second, func() error {
		secret = c.Leader().Server().PeerSecret()
		if len(secret) != fsm.PeerSecretSize {
			return fmt.Errorf("leader's secret: %d bytes", len(secret))
		}
		return nil
	})
	j := c.AddJoining(c.Leader(), false)
	for _, n := range append(c.Nodes, j) {
		testcluster.Poll(t, 20*time.Second, func() error {
			if !bytes.Equal(n.Server().PeerSecret(), secret) {
				return fmt.Errorf("%s has another secret", n.ID)
			}
			return nil
		})
	}
	f := c.Followers()[0]
	putRetry(t, c, f, "k", "v") // forwarded, signed
	backup := saveBackup(t, c, f)
	restoreBackup(t, c, f, backup, "?bump=0")
	for _, n := range c.Nodes {
		if !bytes.Equal(n.Server().PeerSecret(), secret) {
			t.Fatalf("%s: the secret changed in a restore", n.ID)
		}
	}
	// A client that claims to be a node is counted where it entered.
	r := call(t, c, http.MethodPut, f.URL()+"/v1/kv/k", "v2", api.HeaderForwardedBy, "n1")
	if r.Status != http.StatusOK {
		t.Fatalf("put with a client's forwarded-by: %d %s", r.Status, r.Body)
	}
	m := call(t, c, http.MethodGet, f.URL()+"/metrics", "")
	if !bytes.Contains(m.Body, []byte("coordd_http_untrusted_forwarded_total 1")) {
		t.Fatalf("the client's header is not counted once on %s", f.ID)
	}
	l := call(t, c, http.MethodGet, c.Leader().URL()+"/metrics", "")
	if !bytes.Contains(l.Body, []byte("coordd_http_untrusted_forwarded_total 0")) {
		t.Fatal("the leader counted a node's forward as untrusted")
	}
}
