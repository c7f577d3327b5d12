package httpapi_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/coordd/coordd/api"
)

// TestCrossOrigin_BrowserWritesFromOtherSitesAreRefused: a web page of
// another origin cannot make a visitor's browser change state on a node
// (a text/plain POST needs no CORS preflight), while the console's own
// page, curl and the Go client (no Sec-Fetch-Site, no Origin) go on, and
// reads are never refused.
func TestCrossOrigin_BrowserWritesFromOtherSitesAreRefused(t *testing.T) {
	h := newTestAPI(t, "n1", nil).api
	for _, tt := range []struct {
		name, method, path string
		hdr                map[string]string
		refused            bool
	}{
		{"curl", "PUT", "/v1/kv/a", nil, false},
		{"same-origin page", "PUT", "/v1/kv/a", map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": "http://node.example"}, false},
		{"user typed the URL", "PUT", "/v1/kv/a", map[string]string{"Sec-Fetch-Site": "none"}, false},
		{"cross-site page", "PUT", "/v1/kv/a", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, true},
		{"cross-site revoke", "DELETE", "/v1/leases/1", map[string]string{"Sec-Fetch-Site": "cross-site"}, true},
		{"old browser, foreign Origin", "POST", "/v1/snapshot", map[string]string{"Origin": "https://evil.example"}, true},
		{"old browser, own Origin", "PUT", "/v1/kv/a", map[string]string{"Origin": "http://node.example"}, false},
		{"cross-site read", "GET", "/v1/kv/a", map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, false},
	} {
		req := httptest.NewRequest(tt.method, "http://node.example"+tt.path, strings.NewReader("v"))
		for k, v := range tt.hdr {
			req.Header.Set(k, v)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		refused := rec.Code == http.StatusForbidden && strings.Contains(rec.Body.String(), api.CodeCrossOrigin)
		if refused != tt.refused {
			t.Errorf("%s: %s %s answered %d %s; refused=%v, want %v", tt.name, tt.method, tt.path, rec.Code, rec.Body, refused, tt.refused)
		}
	}
}

// TestCrossOrigin_ASameOriginWriteIsForwarded: a page served by a follower
// (the console, or an operator's page behind it) writes through it; the
// leader, at another address, must not take the page's origin for a
// foreign one.
func TestCrossOrigin_ASameOriginWriteIsForwarded(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	origin := "http://" + p.follower.hostPort()
	r := p.follower.do(t, "PUT", "/v1/kv/from-page", "v", "Origin", origin)
	if r.status != http.StatusOK {
		t.Fatalf("same-origin write through a follower: %d %s", r.status, r.body)
	}
	r = p.follower.do(t, "PUT", "/v1/kv/from-page", "v", "Origin", "https://evil.example")
	if r.status != http.StatusForbidden {
		t.Fatalf("foreign-origin write through a follower: %d %s", r.status, r.body)
	}
}
