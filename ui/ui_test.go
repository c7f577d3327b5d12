package ui

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// apiStub stands for the HTTP API behind Wrap: it answers 200 "api".
var apiStub = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	io.WriteString(w, "api")
})

func serve(t *testing.T, h http.Handler, method, path string, header map[string]string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func members() []string { return []string{"10.1.0.1:7101", "10.1.0.2:7101", "node3.example:80"} }

func TestWrap_ServesTheConsoleWithItsSecurityHeaders(t *testing.T) {
	h := Wrap(apiStub, Options{Members: members})
	for path, ctype := range map[string]string{"/ui/": "text/html", "/ui/app.js": "javascript", "/ui/app.css": "text/css"} {
		resp := serve(t, h, http.MethodGet, path, nil)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Header.Get("Content-Type"), ctype) || len(body) == 0 {
			t.Errorf("GET %s: %d %q (%d bytes), want 200 %s", path, resp.StatusCode, resp.Header.Get("Content-Type"), len(body), ctype)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("GET %s: Content-Security-Policy %q", path, csp)
		}
	}
	if resp := serve(t, h, http.MethodPost, "/ui/", nil); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /ui/: %d, want 405", resp.StatusCode)
	}
	if resp := serve(t, h, http.MethodGet, "/ui/missing.js", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /ui/missing.js: %d, want 404", resp.StatusCode)
	}
}

func TestWrap_SendsBrowsersToTheConsoleAndEverythingElseToTheAPI(t *testing.T) {
	h := Wrap(apiStub, Options{Members: members})
	for _, c := range []struct {
		path, accept string
		redirect     bool
	}{
		{"/ui", "", true},
		{"/", "text/html,application/xhtml+xml", true},
		{"/", "*/*", false}, // curl: the API's own answer
		{"/v1/status", "text/html", false},
	} {
		resp := serve(t, h, http.MethodGet, c.path, map[string]string{"Accept": c.accept})
		body, _ := io.ReadAll(resp.Body)
		if c.redirect && (resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != Prefix) {
			t.Errorf("GET %s (Accept %s): %d Location %q, want a redirect to %s", c.path, c.accept, resp.StatusCode, resp.Header.Get("Location"), Prefix)
		}
		if !c.redirect && string(body) != "api" {
			t.Errorf("GET %s (Accept %s): %d %q, want the API's answer", c.path, c.accept, resp.StatusCode, body)
		}
	}
}

func TestWrap_LetsOnlyMembersAndLoopbackReadAcrossOrigins(t *testing.T) {
	for _, c := range []struct {
		tls            bool
		origin, method string
		allowed        bool
	}{
		{false, "http://10.1.0.2:7101", http.MethodGet, true},
		{false, "http://10.1.0.2:7101", http.MethodHead, true},
		{false, "http://node3.example", http.MethodGet, true}, // default port 80
		{false, "http://127.0.0.1:7301", http.MethodGet, true},
		{false, "http://localhost:9999", http.MethodGet, true},
		{false, "http://[::1]:7101", http.MethodGet, true},
		{false, "http://10.1.0.9:7101", http.MethodGet, false},  // not a member
		{false, "https://10.1.0.2:7101", http.MethodGet, false}, // wrong scheme
		{true, "https://10.1.0.2:7101", http.MethodGet, true},
		{true, "http://127.0.0.1:7101", http.MethodGet, false},
		{false, "http://evil.example", http.MethodGet, false},
		{false, "null", http.MethodGet, false},
		{false, "http://10.1.0.2:7101", http.MethodPost, false}, // read-only
		{false, "http://127.0.0.1:7101", http.MethodDelete, false},
	} {
		h := Wrap(apiStub, Options{TLS: c.tls, Members: members})
		resp := serve(t, h, c.method, "/v1/status", map[string]string{"Origin": c.origin})
		got := resp.Header.Get("Access-Control-Allow-Origin")
		if c.allowed != (got == c.origin) || (!c.allowed && got != "") {
			t.Errorf("%s from %s (tls %v): Access-Control-Allow-Origin %q, want allowed=%v", c.method, c.origin, c.tls, got, c.allowed)
		}
		if c.allowed && !strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "X-Coordd-Index") {
			t.Errorf("%s from %s: exposes %q", c.method, c.origin, resp.Header.Get("Access-Control-Expose-Headers"))
		}
		if body, _ := io.ReadAll(resp.Body); string(body) != "api" {
			t.Errorf("%s from %s: the API did not answer: %q", c.method, c.origin, body)
		}
	}
}

func TestWrap_PreflightAllowsReadsWithATokenOnly(t *testing.T) {
	h := Wrap(apiStub, Options{Members: members})
	pre := func(origin, method string) *http.Response {
		return serve(t, h, http.MethodOptions, "/v1/elections", map[string]string{"Origin": origin,
			"Access-Control-Request-Method": method, "Access-Control-Request-Headers": "authorization"})
	}
	resp := pre("http://10.1.0.1:7101", http.MethodGet)
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "http://10.1.0.1:7101" ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization") ||
		resp.Header.Get("Access-Control-Allow-Methods") != "GET, HEAD" {
		t.Errorf("preflight of a GET from a member: %d %v", resp.StatusCode, resp.Header)
	}
	for _, c := range []struct{ origin, method string }{
		{"http://10.1.0.1:7101", http.MethodPut},
		{"http://10.1.0.1:7101", http.MethodPost},
		{"http://evil.example", http.MethodGet},
	} {
		if got := pre(c.origin, c.method).Header.Get("Access-Control-Allow-Origin"); got != "" {
			t.Errorf("preflight of %s from %s allowed (%q)", c.method, c.origin, got)
		}
	}
}

// The console must work on a machine without Internet access: nothing it
// loads may come from elsewhere.
func TestAssets_LoadNothingFromElsewhere(t *testing.T) {
	external := regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?(https?:)?//|@import|url\(\s*["']?(https?:)?//`)
	err := fs.WalkDir(assets, "assets", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(assets, path)
		if err != nil {
			return err
		}
		if m := external.Find(b); m != nil {
			t.Errorf("%s loads something from elsewhere: %q", path, m)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
