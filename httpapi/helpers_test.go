package httpapi_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/httpapi"
)

// testAPI is one API instance over a fake node, served by httptest.
type testAPI struct {
	node *fakeNode
	api  *httpapi.API
	srv  *httptest.Server
	reg  *prometheus.Registry

	mu   sync.Mutex
	seen []seenRequest // every request that reached the server
}

// seenRequest is what the server received, recorded before the API ran.
type seenRequest struct {
	method, uri string
	header      http.Header
	body        []byte
}

// newTestAPI starts an API over a new leading fake node. opts may be nil.
func newTestAPI(t testing.TB, id string, opts *httpapi.Options) *testAPI {
	t.Helper()
	var o httpapi.Options
	if opts != nil {
		o = *opts
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	n := newFakeNode(id)
	a := httpapi.New(n, o)
	ta := &testAPI{node: n, api: a, reg: o.Registry}
	ta.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		ta.mu.Lock()
		ta.seen = append(ta.seen, seenRequest{method: r.Method, uri: r.RequestURI, header: r.Header.Clone(), body: body})
		ta.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		a.ServeHTTP(w, r)
	}))
	t.Cleanup(ta.srv.Close)
	n.set(func(n *fakeNode) { n.leader.HTTPAddr = ta.hostPort() })
	return ta
}

// requests returns what the server has received so far.
func (ta *testAPI) requests() []seenRequest {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	return append([]seenRequest(nil), ta.seen...)
}

// hostPort is the server's address without a scheme, as a Node advertises it.
func (ta *testAPI) hostPort() string {
	u, _ := url.Parse(ta.srv.URL)
	return u.Host
}

// client does not follow redirects, so they stay visible to tests.
var client = &http.Client{
	Timeout:       30 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (ta *testAPI) do(t testing.TB, method, path string, body string, hdr ...string) response {
	t.Helper()
	return doURL(t, method, ta.srv.URL+path, body, hdr...)
}

func doURL(t testing.TB, method, u string, body string, hdr ...string) response {
	t.Helper()
	var rb io.Reader
	if body != "" {
		rb = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rb)
	if err != nil {
		t.Fatalf("NewRequest %s %s: %v", method, u, err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, u, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// decodeStrict decodes a JSON body into v, rejecting unknown fields and
// trailing data.
func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return io.ErrUnexpectedEOF
	}
	return nil
}

// checkErrorShape reports whether a response is a well-formed error:
// Content-Type application/json and a body {"error":{"code","message"}}
// with both set; 503 also needs Retry-After.
func checkErrorShape(status int, header http.Header, body []byte) (api.ErrorBody, string) {
	var eb api.ErrorBody
	if ct := header.Get("Content-Type"); ct != "application/json" {
		return eb, "Content-Type is " + ct + ", want application/json"
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return eb, "body is not JSON: " + err.Error()
	}
	if len(raw) != 1 || raw["error"] == nil {
		return eb, "body is not of the form {\"error\":{...}}"
	}
	if err := decodeStrict(body, &eb); err != nil {
		return eb, "body does not decode as api.ErrorBody: " + err.Error()
	}
	if eb.Error.Code == "" || eb.Error.Message == "" {
		return eb, "error code or message empty"
	}
	if status == http.StatusServiceUnavailable && header.Get("Retry-After") == "" {
		return eb, "503 without Retry-After"
	}
	return eb, ""
}

// wantError checks that r is an error response with the given status and code.
func wantError(t testing.TB, r response, status int, code string) api.ErrorDetail {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	eb, problem := checkErrorShape(r.status, r.header, r.body)
	if problem != "" {
		t.Fatalf("bad error response (%d, %s): %s", r.status, r.body, problem)
	}
	if eb.Error.Code != code {
		t.Fatalf("error code %q, want %q; body %s", eb.Error.Code, code, r.body)
	}
	return eb.Error
}

// wantJSON checks a 200 JSON response and decodes it into v.
func wantJSON(t testing.TB, r response, v any) {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d, want 200; body %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json", ct)
	}
	if v != nil {
		if err := decodeStrict(r.body, v); err != nil {
			t.Fatalf("decode %s: %v", r.body, err)
		}
	}
}

// putKV writes key through the API and returns the result.
func (ta *testAPI) putKV(t testing.TB, key, value string) api.KVWriteResult {
	t.Helper()
	var res api.KVWriteResult
	wantJSON(t, ta.do(t, "PUT", "/v1/kv/"+key, value), &res)
	return res
}

// getKV reads key through the API.
func (ta *testAPI) getKV(t testing.TB, pathAndQuery string) (api.KV, response) {
	t.Helper()
	r := ta.do(t, "GET", "/v1/kv/"+pathAndQuery, "")
	var kv api.KV
	wantJSON(t, r, &kv)
	return kv, r
}

// eventually polls cond until it is true or the deadline passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// requestsTotal sums coordd_http_requests_total for route over all codes.
func requestsTotal(t testing.TB, ta *testAPI, route string) float64 {
	t.Helper()
	mfs, err := ta.reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != "coordd_http_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "route" && l.GetValue() == route {
					sum += m.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}
