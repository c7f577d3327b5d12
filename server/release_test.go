package server_test

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/fsm"
	"github.com/coordd/coordd/internal/testcluster"
)

// Test_Leases_RevokeOfALeaseHoldingMoreThanOneEntryReleases: a lease that
// holds more keys than one entry releases (fsm.ReleasePerEntry) is gone
// at once when revoked, and the leader releases the rest of its keys in
// further entries until none is left, on every member.
func Test_Leases_RevokeOfALeaseHoldingMoreThanOneEntryReleases(t *testing.T) {
	t.Parallel()
	c := testcluster.New(t, 3)
	n := c.Leader()
	l := grant(t, c, n, "30s")
	keys := fsm.ReleasePerEntry*2 + 100
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < keys; i += 16 {
				r, err := c.Try(http.MethodPut, fmt.Sprintf("%s/v1/kv/big/%05d?lease=%d", n.URL(), i, l.ID), "v")
				if err != nil || r.Status != http.StatusOK {
					t.Errorf("put %d: %v %v", i, err, r)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if r := call(t, c, http.MethodDelete, fmt.Sprintf("%s/v1/leases/%d", n.URL(), l.ID), ""); r.Status != http.StatusOK {
		t.Fatalf("revoke: %d %s", r.Status, r.Body)
	}
	if r, _ := c.Try(http.MethodGet, fmt.Sprintf("%s/v1/leases/%d", n.URL(), l.ID), ""); r == nil || r.Status != http.StatusNotFound {
		t.Fatalf("the lease is still there after its revoke: %v", r)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, m := range c.Running() {
		for {
			var got []api.KV
			call(t, c, http.MethodGet, m.URL()+"/v1/kv/big/?prefix&stale", "").JSON(t, &got)
			if len(got) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d of the lease's %d keys still there 10 s after its revoke", m.URL(), len(got), keys)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
