package httpapi_test

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/coordd/coordd/fsm"
	"github.com/coordd/coordd/httpapi"
)

// TestProperty_EveryProposalDecodesAndApplies: for random configurations
// (limits at the edges of what the server accepts) and random requests,
// every command a handler proposes passes fsm.Check (the decoder and
// validation Apply runs) and applies without panic (the fake node applies
// it through FSM.Apply; a panic would be a 500), and no request gets a 500.
func TestProperty_EveryProposalDecodesAndApplies(t *testing.T) {
	t.Parallel()
	limits := []int{-1, 0, 1, 2, 3, 1000, fsm.MaxLimit}
	ttls := []string{`"ttl":"1s"`, `"ttl":"-1s"`, `"ttl":"0s"`, `"ttl":"999999h"`, `"ttl_ms":1`, `"ttl_ms":-5`,
		`"ttl_ms":9223372036854775807`, `"ttl":"1ns"`, `"ttl":"24h"`, `"ttl":"25h"`}
	delays := []string{``, `,"lock_delay":"1s"`, `,"lock_delay":"-1s"`, `,"lock_delay":"25h"`, `,"lock_delay":"2562047h"`}
	names := []string{"e", "l", "sem"}
	for seed := range uint64(6) {
		rng := rand.New(rand.NewPCG(seed, 61))
		opts := &httpapi.Options{
			MaxLeasesPerToken: limits[rng.IntN(len(limits))],
			MaxCandidates:     limits[rng.IntN(len(limits))],
			MaxValueBytes:     []int{0, 1, 16, 1 << 20}[rng.IntN(4)],
			RateLimit:         -1,
		}
		ta := newTestAPI(t, "n1", opts)
		pick := func(xs []string) string { return xs[rng.IntN(len(xs))] }
		u64 := func() uint64 {
			return []uint64{0, 1, 2, 5, rng.Uint64N(ta.node.fsm.State().Index() + 2), 1<<63 + 1}[rng.IntN(6)]
		}
		for step := range 300 {
			var method, path, body string
			switch rng.IntN(9) {
			case 0:
				method, path, body = "POST", "/v1/leases", "{"+pick(ttls)+"}"
			case 1:
				kind := pick([]string{"/v1/elections/%s/campaign", "/v1/locks/%s"})
				lease := fmt.Sprintf(`"lease":%d`, u64())
				if rng.IntN(2) == 0 {
					lease = pick(ttls)
				}
				method, path = "POST", fmt.Sprintf(kind, pick(names))
				body = fmt.Sprintf(`{%s,"value":"%s","limit":%d%s}`, lease, strings.Repeat("v", rng.IntN(20)),
					[]int{0, 1, 2, -1, fsm.MaxHolders, fsm.MaxHolders + 1, 1 << 62}[rng.IntN(7)], pick(delays))
			case 2:
				method, path = "POST", fmt.Sprintf("/v1/elections/%s/resign", pick(names))
				body = fmt.Sprintf(`{"lease":%d,"token":%d}`, u64(), u64())
			case 3:
				method, path = "DELETE", fmt.Sprintf("/v1/locks/%s", pick(names))
				body = fmt.Sprintf(`{"lease":%d,"token":%d}`, u64(), u64())
			case 4:
				method, path = "POST", fmt.Sprintf("/v1/elections/%s/proclaim", pick(names))
				body = fmt.Sprintf(`{"lease":%d,"token":%d,"value":"p"}`, u64(), u64())
			case 5:
				method, path = "DELETE", fmt.Sprintf("/v1/leases/%d", u64())
			case 6:
				method, path = "PUT", fmt.Sprintf("/v1/kv/%s?lease=%d", pick([]string{"a", "b/c"}), u64())
				if rng.IntN(2) == 0 {
					path = fmt.Sprintf("/v1/kv/a?cas=%d", u64())
				}
				body = strings.Repeat("x", rng.IntN(40))
			case 7:
				method, path = "DELETE", pick([]string{"/v1/kv/a", "/v1/kv/b?prefix", "/v1/kv/?prefix"})
			case 8:
				method, path = "POST", fmt.Sprintf("/v1/leases/%d/keepalive", u64())
			}
			req := httptest.NewRequest(method, path, strings.NewReader(body))
			if rng.IntN(4) == 0 {
				req.Header.Set("Idempotency-Key", fmt.Sprint("k", rng.IntN(3)))
			}
			w := httptest.NewRecorder()
			ta.api.ServeHTTP(w, req)
			if w.Code == http.StatusInternalServerError {
				t.Fatalf("seed %d step %d (opts %+v): %s %s %s: 500 %s", seed, step, *opts, method, path, body, w.Body)
			}
		}
		ta.node.mu.Lock()
		applied := append([]fsm.Command(nil), ta.node.applied...)
		ta.node.mu.Unlock()
		if len(applied) < 50 {
			t.Fatalf("seed %d: only %d commands proposed", seed, len(applied))
		}
		for _, c := range applied {
			if err := fsm.Check(c); err != nil {
				t.Fatalf("seed %d: a handler proposed %s that Check refuses: %v", seed, c.Type, err)
			}
		}
	}
}
