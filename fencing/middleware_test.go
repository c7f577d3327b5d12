package fencing

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// seen records what the handler behind the middleware got.
type seen struct {
	called bool
	name   string
	token  Token
	ok     bool
}

func recordingHandler(s *seen) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.called = true
		s.name, s.token, s.ok = TokenFromContext(r.Context())
		w.WriteHeader(http.StatusNoContent)
	})
}

type errorReply struct {
	Error struct {
		Code    string  `json:"code"`
		Message string  `json:"message"`
		Token   *uint64 `json:"token"`
		Highest *uint64 `json:"highest"`
	} `json:"error"`
}

func do(t *testing.T, h http.Handler, method string, headers map[string][]string) (*httptest.ResponseRecorder, errorReply) {
	t.Helper()
	r := httptest.NewRequest(method, "/data/x", strings.NewReader("v"))
	for k, vs := range headers {
		for _, v := range vs {
			r.Header.Add(k, v)
		}
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	var body errorReply
	if w.Code >= 400 {
		if ct := w.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: error Content-Type = %q, want application/json", method, ct)
		}
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
			t.Fatalf("%s: error body %q is not JSON: %v", method, w.Body, err)
		}
		if body.Error.Message == "" {
			t.Errorf("%s: error body %q has no message", method, w.Body)
		}
	}
	return w, body
}

func hdr(name, token string) map[string][]string {
	h := map[string][]string{}
	if name != "" {
		h[HeaderName] = []string{name}
	}
	if token != "" {
		h[HeaderToken] = []string{token}
	}
	return h
}

func TestMiddleware(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := NewGuard(NewMemoryStore(), WithRegisterer(reg))
	var s seen
	h := g.Middleware()(recordingHandler(&s))

	tests := []struct {
		desc    string
		method  string
		headers map[string][]string
		status  int
		code    string
		name    string // in context when passed
		token   Token
	}{
		{"missing token", http.MethodPut, hdr("locks/a", ""), 400, "bad_token", "", 0},
		{"zero token", http.MethodPut, hdr("locks/a", "0"), 400, "bad_token", "", 0},
		{"unparsable token", http.MethodPut, hdr("locks/a", "twelve"), 400, "bad_token", "", 0},
		{"negative token", http.MethodPut, hdr("locks/a", "-12"), 400, "bad_token", "", 0},
		{"repeated token", http.MethodPut, map[string][]string{HeaderName: {"locks/a"}, HeaderToken: {"12", "15"}}, 400, "bad_token", "", 0},
		{"missing name", http.MethodPut, hdr("", "12"), 400, "bad_name", "", 0},
		{"empty name", http.MethodPut, map[string][]string{HeaderName: {""}, HeaderToken: {"12"}}, 400, "bad_name", "", 0},
		{"long name", http.MethodPut, hdr(strings.Repeat("n", MaxNameLen+1), "12"), 400, "bad_name", "", 0},
		{"non-UTF-8 name", http.MethodPut, hdr("bad\xff", "12"), 400, "bad_name", "", 0},
		{"repeated name", http.MethodPut, map[string][]string{HeaderName: {"a", "b"}, HeaderToken: {"12"}}, 400, "bad_name", "", 0},
		{"first token", http.MethodPut, hdr("locks/a", "12"), 204, "", "locks/a", 12},
		{"same token again", http.MethodPost, hdr("locks/a", "12"), 204, "", "locks/a", 12},
		{"new holder", http.MethodDelete, hdr("locks/a", "15"), 204, "", "locks/a", 15},
		{"deposed holder", http.MethodPut, hdr("locks/a", "12"), 409, "stale_token", "", 0},
		{"PATCH is guarded", http.MethodPatch, hdr("", ""), 400, "bad_token", "", 0},
		{"other name", http.MethodPut, hdr("locks/b", "3"), 204, "", "locks/b", 3},
		{"GET without token", http.MethodGet, nil, 204, "", "", 0},
		{"GET with a stale token is not checked", http.MethodGet, hdr("locks/a", "1"), 204, "", "", 0},
		{"HEAD", http.MethodHead, nil, 204, "", "", 0},
		{"OPTIONS", http.MethodOptions, nil, 204, "", "", 0},
	}
	for _, tt := range tests {
		s = seen{}
		w, body := do(t, h, tt.method, tt.headers)
		if w.Code != tt.status {
			t.Errorf("%s: status %d, want %d (body %s)", tt.desc, w.Code, tt.status, w.Body)
			continue
		}
		if tt.status >= 400 {
			if s.called {
				t.Errorf("%s: the next handler ran", tt.desc)
			}
			if body.Error.Code != tt.code {
				t.Errorf("%s: code %q, want %q", tt.desc, body.Error.Code, tt.code)
			}
			continue
		}
		if !s.called {
			t.Errorf("%s: the next handler did not run", tt.desc)
			continue
		}
		wantOK := tt.name != ""
		if s.ok != wantOK || s.name != tt.name || s.token != tt.token {
			t.Errorf("%s: context has %q %d %v, want %q %d %v", tt.desc, s.name, s.token, s.ok, tt.name, tt.token, wantOK)
		}
	}

	if got := counterValue(t, reg, "coordd_fencing_accepted_total", nil); got != 4 {
		t.Errorf("accepted = %v, want 4", got)
	}
	for reason, want := range map[string]float64{"bad_token": 6, "bad_name": 5, "stale": 1} {
		if got := counterValue(t, reg, "coordd_fencing_rejected_total", map[string]string{"reason": reason}); got != want {
			t.Errorf("rejected{reason=%q} = %v, want %v", reason, got, want)
		}
	}
}

func TestMiddlewareStale(t *testing.T) {
	g := NewGuard(NewMemoryStore())
	var s seen
	h := g.Middleware()(recordingHandler(&s))
	if w, _ := do(t, h, http.MethodPut, hdr("locks/a", "15")); w.Code != 204 {
		t.Fatalf("token 15: status %d", w.Code)
	}
	s = seen{}
	w, body := do(t, h, http.MethodPut, hdr("locks/a", "12"))
	if w.Code != http.StatusConflict || s.called {
		t.Fatalf("token 12 after 15: status %d, handler ran %v", w.Code, s.called)
	}
	e := body.Error
	if e.Code != "stale_token" || e.Token == nil || *e.Token != 12 || e.Highest == nil || *e.Highest != 15 {
		t.Fatalf("409 body = %s, want stale_token with token 12 and highest 15", w.Body)
	}
	if !strings.Contains(e.Message, "stale token 12") {
		t.Errorf("message %q does not name the token", e.Message)
	}
	// The raw JSON has the numbers as numbers.
	if !strings.Contains(w.Body.String(), `"token":12,"highest":15`) {
		t.Errorf("body %s", w.Body)
	}
}

func TestMiddlewareStoreFailure(t *testing.T) {
	g := NewGuard(failingStore{errDiskFull})
	var s seen
	h := g.Middleware()(recordingHandler(&s))
	w, body := do(t, h, http.MethodPut, hdr("locks/a", "12"))
	if w.Code != http.StatusServiceUnavailable || s.called {
		t.Fatalf("status %d, handler ran %v; want 503 and not run", w.Code, s.called)
	}
	if body.Error.Code != "fencing_unavailable" || !strings.Contains(body.Error.Message, "disk full") {
		t.Fatalf("body %s, want fencing_unavailable naming the cause", w.Body)
	}
	if w.Header().Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	if body.Error.Token != nil || body.Error.Highest != nil {
		t.Errorf("503 body has token fields: %s", w.Body)
	}
	// A GET does not touch the store, so it still works.
	s = seen{}
	if w, _ := do(t, h, http.MethodGet, nil); w.Code != 204 || !s.called {
		t.Fatalf("GET with a failing store: %d", w.Code)
	}
}

func TestMiddlewareWithName(t *testing.T) {
	g := NewGuard(NewMemoryStore())
	var s seen
	h := g.Middleware(WithName("locks/fixed"))(recordingHandler(&s))

	if w, _ := do(t, h, http.MethodPut, hdr("", "7")); w.Code != 204 || s.name != "locks/fixed" || s.token != 7 {
		t.Fatalf("fixed name: status %d, context %q %d", w.Code, s.name, s.token)
	}
	// The name header is ignored: the token is checked against the fixed name.
	s = seen{}
	w, body := do(t, h, http.MethodPut, hdr("locks/other", "5"))
	if w.Code != http.StatusConflict || body.Error.Code != "stale_token" {
		t.Fatalf("name header overrode the fixed name: %d %s", w.Code, w.Body)
	}
	if h, _ := g.Highest("locks/other"); h != 0 {
		t.Fatalf("locks/other was recorded: %d", h)
	}

	defer func() {
		if recover() == nil {
			t.Fatal("WithName with an invalid name did not panic")
		}
	}()
	g.Middleware(WithName("bad\xff"))
}

func TestMiddlewareWithMethods(t *testing.T) {
	g := NewGuard(NewMemoryStore())
	var s seen
	h := g.Middleware(WithMethods(http.MethodPost, "GET"))(recordingHandler(&s))
	for _, tt := range []struct {
		method string
		status int
	}{
		{http.MethodPost, 400},
		{http.MethodGet, 400},
		{http.MethodPut, 204},
		{http.MethodDelete, 204},
	} {
		if w, _ := do(t, h, tt.method, nil); w.Code != tt.status {
			t.Errorf("%s without a token: %d, want %d", tt.method, w.Code, tt.status)
		}
	}
	// No methods keeps the default.
	h = g.Middleware(WithMethods())(recordingHandler(&s))
	if w, _ := do(t, h, http.MethodPut, nil); w.Code != 400 {
		t.Errorf("WithMethods(): PUT without a token: %d, want 400", w.Code)
	}
	if w, _ := do(t, h, http.MethodGet, nil); w.Code != 204 {
		t.Errorf("WithMethods(): GET without a token: %d, want 204", w.Code)
	}
}

func TestTokenFromContextEmpty(t *testing.T) {
	if name, tok, ok := TokenFromContext(httptest.NewRequest("GET", "/", nil).Context()); ok || name != "" || tok != 0 {
		t.Fatalf("TokenFromContext of a plain context = %q %d %v", name, tok, ok)
	}
}
