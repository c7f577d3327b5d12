package httpapi_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/coordd/coordd/fsm"
	"github.com/coordd/coordd/httpapi"
)

// BenchmarkForwardedWrite measures a write sent to a follower and
// forwarded to the leader (both APIs over fake nodes in this process, so
// the figures are the HTTP and forwarding cost of both nodes and the
// client, not Raft's): a lock acquired with an existing lease and a KV
// put, forwarded whole or as the encoded command.
func BenchmarkForwardedWrite(b *testing.B) {
	for _, mode := range []struct {
		name string
		off  bool
	}{{"whole", true}, {"encoded", false}} {
		for _, op := range []string{"lock", "put"} {
			b.Run(mode.name+"/"+op, func(b *testing.B) {
				opts := &httpapi.Options{NoEncodedForwarding: mode.off, RateLimit: -1}
				l, f := newTestAPI(b, "L", opts), newTestAPI(b, "F", opts)
				l.node.mu.Lock()
				info := l.node.leader
				l.node.mu.Unlock()
				f.node.set(func(n *fakeNode) { n.isLeader, n.leader = false, info })
				if r := l.do(b, "POST", "/v1/leases", `{"ttl":"1h"}`); r.status != http.StatusOK {
					b.Fatalf("grant: %d %s", r.status, r.body)
				}
				b.ReportAllocs()
				b.ResetTimer()
				for i := range b.N {
					var r response
					if op == "lock" {
						r = f.do(b, "POST", fmt.Sprintf("/v1/locks/bench-%d", i), `{"lease":1}`)
					} else {
						r = f.do(b, "PUT", fmt.Sprintf("/v1/kv/bench-%d", i%1000), "value-of-some-64-bytes-0123456789012345678901234567890123456789")
					}
					if r.status != http.StatusOK {
						b.Fatalf("%d %s", r.status, r.body)
					}
				}
			})
		}
	}
}

// BenchmarkLeaderServesForward measures the leader's side alone (its
// ServeHTTP, no network): a forwarded lock acquisition as the client's
// whole request, and as the encoded command.
func BenchmarkLeaderServesForward(b *testing.B) {
	for _, encoded := range []bool{false, true} {
		name := map[bool]string{false: "whole", true: "encoded"}[encoded]
		b.Run(name+"/lock", func(b *testing.B) {
			l := newTestAPI(b, "L", &httpapi.Options{RateLimit: -1})
			if r := l.do(b, "POST", "/v1/leases", `{"ttl":"1h"}`); r.status != http.StatusOK {
				b.Fatalf("grant: %d %s", r.status, r.body)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				lockName := fmt.Sprintf("bench-%d", i)
				var req *http.Request
				if encoded {
					cmd := fsmCmd(fsm.Campaign{Kind: fsm.KindLock, Name: lockName, Lease: 1,
						MaxLeases: httpapi.DefaultMaxLeasesPerToken, MaxCandidates: httpapi.DefaultMaxCandidates})
					req = httptest.NewRequest("POST", "/v1/internal/apply", bytes.NewReader(cmd.Encode()))
					req.Header.Set(headerContentType, "application/x-coordd-peer")
				} else {
					req = httptest.NewRequest("POST", "/v1/locks/"+lockName, strings.NewReader(`{"lease":1}`))
				}
				hdr := forwardedBy("F", "POST", req.URL.RequestURI())
				for j := 0; j+1 < len(hdr); j += 2 {
					req.Header.Set(hdr[j], hdr[j+1])
				}
				w := httptest.NewRecorder()
				l.api.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("%d %s", w.Code, w.Body.Bytes())
				}
			}
		})
	}
}
