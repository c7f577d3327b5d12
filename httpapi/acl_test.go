package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/httpapi"
)

// aclAPI is an API with ACLs on over a leading fake node, bootstrapped: it
// returns the management secret.
func aclAPI(t *testing.T) (*testAPI, string) {
	t.Helper()
	ta := newTestAPI(t, "n1", &httpapi.Options{ACL: true})
	r := ta.do(t, "POST", "/v1/acl/bootstrap", "")
	if r.status != http.StatusOK {
		t.Fatalf("bootstrap: %d %s", r.status, r.body)
	}
	var tok api.ACLToken
	if err := json.Unmarshal(r.body, &tok); err != nil || !tok.Management || tok.SecretID == "" {
		t.Fatalf("bootstrap answer %s: %v", r.body, err)
	}
	return ta, tok.SecretID
}

func bearerHdr(secret string) []string { return []string{"Authorization", "Bearer " + secret} }

func createToken(t *testing.T, ta *testAPI, mgmt string, body string) api.ACLToken {
	t.Helper()
	r := ta.do(t, "POST", "/v1/acl/tokens", body, bearerHdr(mgmt)...)
	if r.status != http.StatusOK {
		t.Fatalf("create token %s: %d %s", body, r.status, r.body)
	}
	var tok api.ACLToken
	if err := json.Unmarshal(r.body, &tok); err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestACL_NoTokenWrongTokenAndMissingRuleAreRefused(t *testing.T) {
	ta, mgmt := aclAPI(t)
	app := createToken(t, ta, mgmt, `{"description":"app","rules":[{"resource":"kv","prefix":"app/","access":"write"},{"resource":"kv","prefix":"app/secret/","access":"deny"}]}`)

	r := ta.do(t, "PUT", "/v1/kv/app/x", "v")
	wantError(t, r, http.StatusUnauthorized, api.CodeUnauthenticated)
	if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("401 without WWW-Authenticate: %v", r.header)
	}
	wantError(t, ta.do(t, "PUT", "/v1/kv/app/x", "v", bearerHdr("cdt_wrong-secret-0000000000")...), http.StatusUnauthorized, api.CodeInvalidToken)
	wantError(t, ta.do(t, "PUT", "/v1/kv/other", "v", bearerHdr(app.SecretID)...), http.StatusForbidden, api.CodePermissionDenied)
	wantError(t, ta.do(t, "GET", "/v1/kv/app/secret/k", "", bearerHdr(app.SecretID)...), http.StatusForbidden, api.CodePermissionDenied)
	wantError(t, ta.do(t, "GET", "/v1/kv/app/?prefix", "", bearerHdr(app.SecretID)...), http.StatusForbidden, api.CodePermissionDenied)
	wantError(t, ta.do(t, "GET", "/v1/status", "", bearerHdr(app.SecretID)...), http.StatusForbidden, api.CodePermissionDenied)
	wantError(t, ta.do(t, "GET", "/v1/acl/tokens", "", bearerHdr(app.SecretID)...), http.StatusForbidden, api.CodePermissionDenied)
	wantError(t, ta.do(t, "POST", "/v1/acl/tokens", `{"management":true}`, bearerHdr(app.SecretID)...), http.StatusForbidden, api.CodePermissionDenied)
	if r := ta.do(t, "PUT", "/v1/kv/app/x", "v", bearerHdr(app.SecretID)...); r.status != http.StatusOK {
		t.Fatalf("allowed write: %d %s", r.status, r.body)
	}
	if r := ta.do(t, "GET", "/v1/kv/app/x?raw", "", bearerHdr(app.SecretID)...); r.status != http.StatusOK || string(r.body) != "v" {
		t.Fatalf("allowed read: %d %s", r.status, r.body)
	}
	for _, p := range []string{"/healthz"} {
		if r := ta.do(t, "GET", p, ""); r.status == http.StatusUnauthorized {
			t.Fatalf("%s needs a token", p)
		}
	}
	// The secret is shown once: lists and reads never carry it.
	for _, path := range []string{"/v1/acl/tokens", "/v1/acl/tokens/" + app.AccessorID} {
		r := ta.do(t, "GET", path, "", bearerHdr(mgmt)...)
		if r.status != http.StatusOK || strings.Contains(string(r.body), app.SecretID) || strings.Contains(string(r.body), "secret_id") {
			t.Fatalf("GET %s: %d %s", path, r.status, r.body)
		}
	}
	// A deleted token is refused at once.
	if r := ta.do(t, "DELETE", "/v1/acl/tokens/"+app.AccessorID, "", bearerHdr(mgmt)...); r.status != http.StatusOK {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	wantError(t, ta.do(t, "PUT", "/v1/kv/app/x", "v", bearerHdr(app.SecretID)...), http.StatusUnauthorized, api.CodeInvalidToken)
	wantError(t, ta.do(t, "DELETE", "/v1/acl/tokens/"+app.AccessorID, "", bearerHdr(mgmt)...), http.StatusNotFound, api.CodeTokenNotFound)
}

func TestACL_EveryRouteNeedsATokenButHealthChecksAndBootstrap(t *testing.T) {
	ta := newTestAPI(t, "n1", &httpapi.Options{ACL: true})
	routes := [][2]string{
		{"GET", "/v1/kv/a"}, {"PUT", "/v1/kv/a"}, {"DELETE", "/v1/kv/a"}, {"GET", "/v1/kv"},
		{"POST", "/v1/leases"}, {"GET", "/v1/leases"}, {"GET", "/v1/leases/1"}, {"DELETE", "/v1/leases/1"},
		{"POST", "/v1/leases/1/keepalive"}, {"POST", "/v1/leases/keepalive"},
		{"GET", "/v1/elections"}, {"GET", "/v1/elections/e"}, {"POST", "/v1/elections/e/campaign"},
		{"POST", "/v1/elections/e/resign"}, {"POST", "/v1/elections/e/proclaim"},
		{"GET", "/v1/locks"}, {"GET", "/v1/locks/l"}, {"POST", "/v1/locks/l"}, {"DELETE", "/v1/locks/l"},
		{"GET", "/v1/fencing/l"}, {"GET", "/v1/snapshot"}, {"POST", "/v1/snapshot"},
		{"GET", "/v1/debug/lease-clock"}, {"POST", "/v1/debug/lease-clock"}, {"GET", "/v1/status"},
		{"GET", "/v1/cluster/members"}, {"POST", "/v1/cluster/members"}, {"DELETE", "/v1/cluster/members/n2"},
		{"POST", "/v1/cluster/transfer-leadership"}, {"GET", "/metrics"},
		{"GET", "/v1/acl/tokens"}, {"POST", "/v1/acl/tokens"}, {"GET", "/v1/acl/tokens/x"},
		{"DELETE", "/v1/acl/tokens/x"}, {"GET", "/v1/acl/token/self"},
	}
	for _, rt := range routes {
		r := ta.do(t, rt[0], rt[1], "")
		if r.status != http.StatusUnauthorized {
			t.Errorf("%s %s without a token: %d %s", rt[0], rt[1], r.status, r.body)
		}
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		if r := ta.do(t, "GET", p, ""); r.status == http.StatusUnauthorized || r.status == http.StatusForbidden {
			t.Errorf("GET %s: %d", p, r.status)
		}
	}
	// Without ACLs, nothing needs a token.
	open := newTestAPI(t, "n1", nil)
	if r := open.do(t, "PUT", "/v1/kv/a", "v"); r.status != http.StatusOK {
		t.Fatalf("no ACLs: %d %s", r.status, r.body)
	}
}

func TestACL_BootstrapOnlyOnce(t *testing.T) {
	ta, mgmt := aclAPI(t)
	wantError(t, ta.do(t, "POST", "/v1/acl/bootstrap", ""), http.StatusConflict, api.CodeACLBootstrapped)
	r := ta.do(t, "GET", "/v1/acl/token/self", "", bearerHdr(mgmt)...)
	if r.status != http.StatusOK || !strings.Contains(string(r.body), `"management":true`) {
		t.Fatalf("self: %d %s", r.status, r.body)
	}
	// A token cannot delete itself (it may be the last management token).
	var self api.ACLToken
	json.Unmarshal(r.body, &self)
	wantError(t, ta.do(t, "DELETE", "/v1/acl/tokens/"+self.AccessorID, "", bearerHdr(mgmt)...), http.StatusBadRequest, api.CodeBadRequest)
	// A chosen secret works, and a bad one is refused.
	ta2 := newTestAPI(t, "n1", &httpapi.Options{ACL: true})
	wantError(t, ta2.do(t, "POST", "/v1/acl/bootstrap", `{"secret_id":"short"}`), http.StatusBadRequest, api.CodeBadRequest)
	if r := ta2.do(t, "POST", "/v1/acl/bootstrap", `{"secret_id":"my-chosen-management-secret"}`); r.status != http.StatusOK {
		t.Fatalf("bootstrap with a secret: %d %s", r.status, r.body)
	}
	if r := ta2.do(t, "GET", "/v1/status", "", bearerHdr("my-chosen-management-secret")...); r.status != http.StatusOK {
		t.Fatalf("status with the chosen secret: %d %s", r.status, r.body)
	}
}

func TestACL_IdempotencyKeysAreScopedToTheToken(t *testing.T) {
	ta, mgmt := aclAPI(t)
	rules := `{"rules":[{"resource":"kv","prefix":"","access":"write"}]}`
	a, b := createToken(t, ta, mgmt, rules), createToken(t, ta, mgmt, rules)
	hdr := func(secret string) []string { return append(bearerHdr(secret), "Idempotency-Key", "k1") }
	if r := ta.do(t, "PUT", "/v1/kv/x", "from-a", hdr(a.SecretID)...); r.status != http.StatusOK {
		t.Fatalf("a: %d %s", r.status, r.body)
	}
	r := ta.do(t, "PUT", "/v1/kv/x", "from-b", hdr(b.SecretID)...)
	if r.status != http.StatusOK || r.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("b's request with a's key was replayed: %d %v %s", r.status, r.header, r.body)
	}
	if e, _ := ta.node.State().Get("x"); string(e.Value) != "from-b" {
		t.Fatalf("x = %q: b's write was dropped as a duplicate of a's", e.Value)
	}
	if r := ta.do(t, "PUT", "/v1/kv/x", "from-a", hdr(a.SecretID)...); r.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("a's retry was not replayed: %v", r.header)
	}
}

func TestACL_MadeUpTokensShareTheirAddresssRateLimit(t *testing.T) {
	ta := newTestAPI(t, "n1", &httpapi.Options{ACL: true, RateLimit: 1, RateBurst: 2})
	codes := map[int]int{}
	for i := range 6 {
		r := ta.do(t, "GET", "/v1/kv/a", "", bearerHdr(fmt.Sprintf("made-up-token-%012d", i))...)
		codes[r.status]++
	}
	if codes[http.StatusTooManyRequests] < 3 {
		t.Fatalf("six made-up tokens from one address in a burst of 2: %v", codes)
	}
}

func TestACL_BadTokenDefinitionsAre400(t *testing.T) {
	ta, mgmt := aclAPI(t)
	for _, body := range []string{
		`{"rules":[{"resource":"disk","access":"read"}]}`,
		`{"rules":[{"resource":"kv","access":"admin"}]}`,
		`{"rules":[{"resource":"operator","prefix":"x","access":"read"}]}`,
		`{"management":true,"rules":[{"resource":"kv","access":"read"}]}`,
		`{"secret_id":"has spaces in it, no good"}`,
		`{"unknown":1}`,
	} {
		r := ta.do(t, "POST", "/v1/acl/tokens", body, bearerHdr(mgmt)...)
		wantError(t, r, http.StatusBadRequest, api.CodeBadRequest)
	}
}

func TestACL_ALeaseCanBeUsedOnlyByTheTokenThatGrantedIt(t *testing.T) {
	ta, mgmt := aclAPI(t)
	rules := `{"rules":[{"resource":"lease","access":"write"},{"resource":"lock","prefix":"","access":"write"}]}`
	alice, bob := createToken(t, ta, mgmt, rules), createToken(t, ta, mgmt, rules)
	r := ta.do(t, "POST", "/v1/leases", `{"ttl":"10s"}`, bearerHdr(alice.SecretID)...)
	if r.status != http.StatusOK {
		t.Fatalf("grant: %d %s", r.status, r.body)
	}
	var l struct{ ID uint64 }
	json.Unmarshal(r.body, &l)
	if r := ta.do(t, "POST", "/v1/locks/jobs", fmt.Sprintf(`{"lease":%d}`, l.ID), bearerHdr(alice.SecretID)...); r.status != http.StatusOK {
		t.Fatalf("lock: %d %s", r.status, r.body)
	}
	for _, c := range [][3]string{
		{"POST", fmt.Sprintf("/v1/leases/%d/keepalive", l.ID), ""},
		{"DELETE", fmt.Sprintf("/v1/leases/%d", l.ID), ""},
		{"GET", fmt.Sprintf("/v1/leases/%d", l.ID), ""},
		{"POST", "/v1/leases/keepalive", fmt.Sprintf(`{"ids":[%d]}`, l.ID)},
		{"DELETE", "/v1/locks/jobs", fmt.Sprintf(`{"lease":%d,"token":%d}`, l.ID, l.ID+1)},
		{"POST", "/v1/locks/other", fmt.Sprintf(`{"lease":%d}`, l.ID)},
	} {
		wantError(t, ta.do(t, c[0], c[1], c[2], bearerHdr(bob.SecretID)...), http.StatusForbidden, api.CodePermissionDenied)
	}
	if r := ta.do(t, "GET", "/v1/leases", "", bearerHdr(bob.SecretID)...); r.status != http.StatusOK || strings.TrimSpace(string(r.body)) != "[]" {
		t.Fatalf("bob lists: %d %s", r.status, r.body)
	}
	if r := ta.do(t, "POST", fmt.Sprintf("/v1/leases/%d/keepalive", l.ID), "", bearerHdr(alice.SecretID)...); r.status != http.StatusOK {
		t.Fatalf("alice keepalive: %d %s", r.status, r.body)
	}
	if r := ta.do(t, "POST", fmt.Sprintf("/v1/leases/%d/keepalive", l.ID), "", bearerHdr(mgmt)...); r.status != http.StatusOK {
		t.Fatalf("management keepalive: %d %s", r.status, r.body)
	}
}

func TestLimits_LeasesPerTokenAndCandidatesPerNameAre429(t *testing.T) {
	ta, mgmt := aclAPI(t)
	_ = mgmt
	ta = newTestAPI(t, "n1", &httpapi.Options{MaxLeasesPerToken: 2, MaxCandidates: 2})
	for i := range 2 {
		if r := ta.do(t, "POST", "/v1/leases", `{"ttl":"10s"}`); r.status != http.StatusOK {
			t.Fatalf("grant %d: %d %s", i, r.status, r.body)
		}
	}
	wantError(t, ta.do(t, "POST", "/v1/leases", `{"ttl":"10s"}`), http.StatusTooManyRequests, api.CodeTooManyLeases)
	wantError(t, ta.do(t, "POST", "/v1/locks/x", `{"ttl":"10s"}`), http.StatusTooManyRequests, api.CodeTooManyLeases)
	ta.do(t, "DELETE", "/v1/leases/1", "")
	ta.do(t, "DELETE", "/v1/leases/2", "")
	for i := range 2 {
		if r := ta.do(t, "POST", "/v1/locks/x", `{"ttl":"10s"}`); r.status != http.StatusOK {
			t.Fatalf("candidate %d: %d %s", i, r.status, r.body)
		}
	}
	// The third candidate: its lease is refused with the campaign.
	ta3 := newTestAPI(t, "n1", &httpapi.Options{MaxCandidates: 2})
	for i := range 2 {
		ta3.do(t, "POST", "/v1/locks/x", `{"ttl":"10s"}`)
		_ = i
	}
	wantError(t, ta3.do(t, "POST", "/v1/locks/x", `{"ttl":"10s"}`), http.StatusTooManyRequests, api.CodeTooManyCandidates)
	if n := ta3.node.State().LeaseCount(); n != 2 {
		t.Fatalf("%d leases after a refused campaign, want 2", n)
	}
}
