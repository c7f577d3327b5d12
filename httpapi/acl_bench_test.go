package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/coordd/coordd/acl"
	"github.com/coordd/coordd/fsm"
	"github.com/coordd/coordd/httpapi"
)

// BenchmarkAuthorize measures what access control adds to a request: a
// GET of one key through the API over a fake node, with ACLs off, and on
// with a token of 1, 16 or 256 rules (out of 1,000 tokens).
func BenchmarkAuthorize(b *testing.B) {
	for _, c := range []struct {
		name  string
		acl   bool
		rules int
	}{{"off", false, 0}, {"on/rules=1", true, 1}, {"on/rules=16", true, 16}, {"on/rules=256", true, 256}} {
		b.Run(c.name, func(b *testing.B) {
			node := newFakeNode("n1")
			node.put(b, "app/k", "v")
			secret := "bench-secret-000000000"
			for i := range 1000 {
				id := strings.Repeat("0", 28) + string("0123456789abcdef"[i/256%16]) + string("0123456789abcdef"[i/16%16]) + string("0123456789abcdef"[i%16]) + "0"
				var rules []acl.Rule
				for j := range c.rules {
					rules = append(rules, acl.Rule{Resource: acl.KV, Prefix: "p" + string(rune('a'+j%26)) + strings.Repeat("x", j/26), Access: acl.Read})
				}
				if len(rules) > 0 {
					rules[len(rules)-1] = acl.Rule{Resource: acl.KV, Prefix: "app/", Access: acl.Read}
				}
				s := secret
				if i > 0 {
					s = secret + id
				}
				node.applyLocal(fsmCmd(fsm.ACLTokenCreate{Token: fsm.ACLToken{AccessorID: id, SecretHash: acl.HashSecret(s), Rules: rules}}))
			}
			h := httpapi.New(node, httpapi.Options{ACL: c.acl, Registry: prometheus.NewRegistry(), RateLimit: -1})
			req := httptest.NewRequest(http.MethodGet, "/v1/kv/app/k?stale", nil)
			req.Header.Set("Authorization", "Bearer "+secret)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
			}
		})
	}
}
