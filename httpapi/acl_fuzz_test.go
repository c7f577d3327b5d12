package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/coordd/coordd/acl"
	"github.com/coordd/coordd/fsm"
	"github.com/coordd/coordd/httpapi"
)

const (
	fuzzMgmtSecret = "fuzz-management-secret"
	fuzzAppSecret  = "fuzz-app-secret-0001"
)

// FuzzACLRequest serves fuzzed requests through an API with ACLs on and
// checks that
//   - nothing panics or is answered 5xx, and every error is a JSON error;
//   - a request without a known token is never served (2xx) but on the
//     open routes (health checks; the bootstrap, here refused as done);
//   - a request refused 401 or 403 proposes nothing;
//   - the app token (kv write on "app/", lease write) never writes a key
//     outside "app/" and never reads or changes tokens.
//
// who picks the credentials: 0 none, 1 the management token, 2 the app
// token, 3 a wrong one, else auth is sent as the Authorization header.
func FuzzACLRequest(f *testing.F) {
	for _, s := range []struct {
		method, path, query, body string
		who                       uint8
	}{
		{"PUT", "/v1/kv/app/x", "", "v", 2},
		{"PUT", "/v1/kv/other", "", "v", 2},
		{"GET", "/v1/kv/app/", "prefix", "", 2},
		{"GET", "/v1/kv/", "prefix", "", 2},
		{"DELETE", "/v1/kv/app/", "prefix", "", 2},
		{"DELETE", "/v1/kv/", "prefix", "", 2},
		{"POST", "/v1/acl/tokens", "", `{"description":"d","rules":[{"resource":"kv","prefix":"x","access":"read"}]}`, 1},
		{"POST", "/v1/acl/tokens", "", `{"management":true}`, 2},
		{"POST", "/v1/acl/tokens", "", `{"rules":[{"resource":"kv","access":"write"}],"secret_id":"abcdefghijklmnopq"}`, 1},
		{"POST", "/v1/acl/tokens", "", `{"rules":[{"resource":"kv","access":"write"}],"secret_id":"` + fuzzAppSecret + `"}`, 1},
		{"GET", "/v1/acl/tokens", "", "", 1},
		{"GET", "/v1/acl/tokens", "stale", "", 2},
		{"GET", "/v1/acl/tokens/00112233445566778899aabbccddeeff", "", "", 1},
		{"DELETE", "/v1/acl/tokens/00112233445566778899aabbccddeeff", "", "", 1},
		{"DELETE", "/v1/acl/tokens/%2e%2e", "", "", 1},
		{"GET", "/v1/acl/token/self", "", "", 2},
		{"POST", "/v1/acl/bootstrap", "", "", 0},
		{"POST", "/v1/acl/bootstrap", "", `{"secret_id":"x"}`, 0},
		{"POST", "/v1/leases", "", `{"ttl":"10s"}`, 2},
		{"POST", "/v1/leases/1/keepalive", "", "", 2},
		{"POST", "/v1/locks/app/l", "", `{"ttl":"1s"}`, 2},
		{"GET", "/v1/status", "", "", 3},
		{"GET", "/healthz", "", "", 0},
		{"GET", "/metrics", "", "", 1},
	} {
		f.Add(s.method, s.path, s.query, s.body, s.who, "")
	}
	f.Add("GET", "/v1/kv/app/x", "", "", uint8(9), "Bearer "+fuzzAppSecret)
	f.Add("GET", "/v1/kv/app/x", "", "", uint8(9), "bearer   "+fuzzAppSecret+"  ")
	f.Add("GET", "/v1/kv/app/x", "", "", uint8(9), "Basic "+fuzzAppSecret)
	f.Add("GET", "/v1/kv/app/x", "", "", uint8(9), fuzzAppSecret)
	f.Fuzz(func(t *testing.T, method, path, query, body string, who uint8, auth string) {
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		u := "http://coordd" + path
		if query != "" {
			u += "?" + query
		}
		req, err := http.NewRequest(method, u, strings.NewReader(body))
		if err != nil {
			return
		}
		switch who {
		case 0:
		case 1:
			req.Header.Set("Authorization", "Bearer "+fuzzMgmtSecret)
		case 2:
			req.Header.Set("Authorization", "Bearer "+fuzzAppSecret)
		case 3:
			req.Header.Set("Authorization", "Bearer wrong-secret-000000")
		default:
			if !printableHeader(auth) {
				return
			}
			req.Header.Set("Authorization", auth)
		}
		node := newFakeNode("n1")
		node.applyLocal(fsmCmd(fsm.ACLBootstrap{Token: fsm.ACLToken{AccessorID: "00112233445566778899aabbccddeeff", SecretHash: acl.HashSecret(fuzzMgmtSecret), Description: "boot", Management: true}}))
		node.applyLocal(fsmCmd(fsm.ACLTokenCreate{Token: fsm.ACLToken{AccessorID: "ffeeddccbbaa99887766554433221100",
			SecretHash: acl.HashSecret(fuzzAppSecret), Rules: []acl.Rule{
				{Resource: acl.KV, Prefix: "app/", Access: acl.Write}, {Resource: acl.Lease, Access: acl.Write},
				{Resource: acl.Lock, Prefix: "app/", Access: acl.Write}}}}))
		node.put(t, "app/x", "1")
		node.put(t, "other", "2")
		known := req.Header.Get("Authorization") != "" && node.State() != nil && func() bool {
			tok := strings.TrimSpace(req.Header.Get("Authorization"))
			scheme, secret, found := strings.Cut(tok, " ")
			if !found || !strings.EqualFold(scheme, "bearer") {
				return false
			}
			_, k := node.State().ACLTokenBySecret(strings.TrimSpace(secret))
			return k
		}()
		applied := node.index
		h := httpapi.New(node, httpapi.Options{ACL: true, MaxRequestBytes: 4096, MaxValueBytes: 1024, MaxSnapshotBytes: 1 << 16})
		res, b := fuzzServe(t, h, req)
		ok := res.StatusCode >= 200 && res.StatusCode < 300
		open := path == "/healthz" || path == "/readyz"
		if ok && !known && !open {
			t.Fatalf("%s %q without a known token was served: %d %s", method, u, res.StatusCode, b)
		}
		node.applyMu.Lock()
		idx := node.index
		node.applyMu.Unlock()
		if (res.StatusCode == http.StatusUnauthorized || res.StatusCode == http.StatusForbidden) && idx != applied {
			t.Fatalf("%s %q: answered %d but proposed a command", method, u, res.StatusCode)
		}
		if who == 2 && ok {
			if strings.HasPrefix(path, "/v1/acl/tokens") {
				t.Fatalf("the app token reached %s %q: %d", method, u, res.StatusCode)
			}
			if e, found := node.State().Get("other"); !found || string(e.Value) != "2" {
				t.Fatalf("the app token changed a key outside app/: %s %q", method, u)
			}
		}
	})
}
