package server_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/internal/testcluster"
	"github.com/coordd/coordd/server"
)

// A client over its rate limit gets 429s while the node keeps serving
// everyone else: other clients' writes through the same follower, health
// checks, metrics, and the noisy client itself once it slows down. A write
// forwarded by a follower counts against the client once, where it
// entered, not again on the leader.
func TestRateLimitedNodeStaysHealthy(t *testing.T) {
	t.Parallel()
	c := testcluster.New(t, 3, func(cfg *server.Config) {
		cfg.RateLimit, cfg.RateBurst = 1, 20
	})
	fs := c.Followers()
	f1, f2 := fs[0], fs[1]
	noisy := []string{"Authorization", "Bearer noisy-client"}
	quiet := []string{"Authorization", "Bearer quiet-client"}

	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	var badRetry []string
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 30 {
				r, err := c.TryWith(http.MethodPut, fmt.Sprintf("%s/v1/kv/noisy-%d-%d", f1.URL(), g, i), "x", noisy...)
				if err != nil {
					t.Errorf("noisy client: %v", err)
					return
				}
				mu.Lock()
				statuses[r.Status]++
				if r.Status == http.StatusTooManyRequests && (r.Header.Get("Retry-After") == "" || r.ErrorCode() != api.CodeRateLimited) {
					badRetry = append(badRetry, fmt.Sprintf("%s %s", r.Header.Get("Retry-After"), r.Body))
				}
				mu.Unlock()
			}
		}()
	}
	// Meanwhile the quiet client writes through both followers: 30
	// writes, more than one bucket's burst of 20, all accepted because
	// each follower counts its own and the leader counts none.
	for i := range 30 {
		n := f1
		if i%2 == 1 {
			n = f2
		}
		r, err := c.TryWith(http.MethodPut, fmt.Sprintf("%s/v1/kv/quiet-%d", n.URL(), i), "v", quiet...)
		if err != nil {
			t.Fatalf("quiet client write %d: %v", i, err)
		}
		if r.Status != http.StatusOK {
			t.Fatalf("quiet client write %d through %s: %d %s", i, n.ID, r.Status, r.Body)
		}
	}
	wg.Wait()

	if statuses[http.StatusTooManyRequests] == 0 {
		t.Errorf("the noisy client was never limited: %v", statuses)
	}
	for st, n := range statuses {
		if st != http.StatusOK && st != http.StatusTooManyRequests {
			t.Errorf("noisy client got %d %d times, want only 200 or 429", st, n)
		}
	}
	if len(badRetry) > 0 {
		t.Errorf("429 without Retry-After or rate_limited: %q", badRetry[0])
	}
	// Health checks and metrics are never limited; every node is ready.
	c.WaitReady(c.Nodes...)
	r := c.Do(http.MethodGet, f1.URL()+"/metrics", "")
	if r.Status != http.StatusOK || !strings.Contains(string(r.Body), `coordd_http_refused_total{reason="rate_limited"}`) {
		t.Errorf("metrics: %d, refused counter missing", r.Status)
	}
	// The noisy client is served again once its bucket refills (1/s).
	testcluster.Poll(t, 15*time.Second, func() error {
		r, err := c.TryWith(http.MethodPut, f1.URL()+"/v1/kv/noisy-after", "x", noisy...)
		if err != nil {
			return err
		}
		if r.Status != http.StatusOK {
			return fmt.Errorf("noisy client still refused: %d %s", r.Status, r.Body)
		}
		return nil
	})
	// And the leader serves a client of its own.
	leader := c.Leader()
	if r := c.Do(http.MethodGet, leader.URL()+"/v1/kv/quiet-29", ""); r.Status != http.StatusOK {
		t.Errorf("read through the leader: %d %s", r.Status, r.Body)
	}
}
