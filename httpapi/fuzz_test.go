package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coordd/coordd/fsm"
	"github.com/coordd/coordd/httpapi"
)

// FuzzKVRequest serves requests built from fuzzed parts through the API
// over a healthy leading fake node and checks that
//   - no panic reaches the caller and nothing is answered 5xx (the node
//     never fails here, so any 5xx is the API's own fault);
//   - every non-2xx answer is a JSON error of the documented shape;
//   - every JSON 2xx answer is valid JSON;
//   - input refused as bad (400, 405, 413) proposes nothing to the node.
//
// header holds request headers, one "Name: value" a line (Idempotency-Key,
// Accept: text/event-stream, X-Coordd-Forwarded-By, ...); lines a real
// server would not deliver (control characters, no colon) are skipped.
// Uploads to POST /v1/snapshot are read as snapshot files, so the body
// also reaches the snapshot reader through the API.
func FuzzKVRequest(f *testing.F) {
	for _, s := range [][4]string{
		{"GET", "/v1/kv/k", "", ""},
		{"GET", "/v1/kv/k", "raw", ""},
		{"GET", "/v1/kv/bin", "raw=1&stale", ""},
		{"GET", "/v1/kv/", "prefix", ""},
		{"GET", "/v1/kv/dir/", "prefix&stale=true", ""},
		{"GET", "/v1/kv/k", "index=1&wait=1s", ""},
		{"GET", "/v1/kv/missing", "index=1&wait=10m", ""},
		{"GET", "/v1/kv/dir/", "prefix&index=99&wait=1ms", ""},
		{"GET", "/v1/kv/k", "index=abc", ""},
		{"GET", "/v1/kv/k", "wait=11m&index=1", ""},
		{"GET", "/v1/kv/k", "wait=-1s&index=1", ""},
		{"GET", "/v1/kv/k", "stale=maybe", ""},
		{"GET", "/v1/kv/k", "raw&prefix", ""},
		{"GET", "/v1/kv/k", "cass=1", ""},
		{"PUT", "/v1/kv/k", "", "value"},
		{"PUT", "/v1/kv/k", "cas=0", "value"},
		{"PUT", "/v1/kv/k", "cas=1", "\xff\x00"},
		{"PUT", "/v1/kv/new", "cas=0", ""},
		{"PUT", "/v1/kv/k", "cas=-1", "v"},
		{"PUT", "/v1/kv/k", "cas=18446744073709551615", "v"},
		{"PUT", "/v1/kv/k", "cas=%ZZ", "v"},
		{"PUT", "/v1/kv/k", "cas=1;x=2", "v"},
		{"PUT", "/v1/kv/", "", "v"},
		{"PUT", "/v1/kv/a%FF", "", "v"},
		{"PUT", "/v1/kv/a%00", "", "v"},
		{"PUT", "/v1/kv/a%2F%2Fb", "", "v"},
		{"PUT", "/v1/kv/a//b", "", "v"},
		{"PUT", "/v1/kv/a/./b", "", "v"},
		{"PUT", "/v1/kv/a/../b", "", "v"},
		{"PUT", "/v1/kv/" + strings.Repeat("k", 1025), "", "v"},
		{"PUT", "/v1/kv/big", "", strings.Repeat("v", 1025)},
		{"PUT", "/v1/kv/huge", "", strings.Repeat("v", 5000)},
		{"POST", "/v1/leases", "", `{"ttl":"10s"}`},
		{"POST", "/v1/leases", "", `{"ttl_ms":-5}`},
		{"POST", "/v1/leases/1/keepalive", "", ""},
		{"POST", "/v1/leases/keepalive", "", `{"ids":[1,2,99]}`},
		{"POST", "/v1/leases/keepalive", "", `{"ids":[0]}`},
		{"POST", "/v1/leases/keepalive", "", `{"ids":[]}`},
		{"POST", "/v1/locks/l2", "", `{"ttl":"2s","wait":"10ms"}`},
		{"POST", "/v1/elections/e2/campaign", "", `{"ttl_ms":900,"value":"v"}`},
		{"POST", "/v1/elections/e2/campaign", "", `{"lease":1,"ttl":"2s"}`},
		{"GET", "/v1/leases/1", "", ""},
		{"DELETE", "/v1/leases/18446744073709551615", "", ""},
		{"POST", "/v1/elections/e/campaign", "", `{"lease":1,"value":"v","wait":"10ms"}`},
		{"POST", "/v1/elections/e/resign", "", `{"lease":1,"token":2}`},
		{"POST", "/v1/elections/e/proclaim", "", `{"lease":1,"token":2,"value":"x"}`},
		{"GET", "/v1/elections/e", "index=1&wait=1ms&changes=3", ""},
		{"POST", "/v1/locks/l", "", `{"lease":1,"limit":3,"lock_delay":"1s"}`},
		{"DELETE", "/v1/locks/l", "", `{"lease":1,"token":9}`},
		{"GET", "/v1/fencing/l", "token=5", ""},
		{"PUT", "/v1/kv/k", "lease=1", "v"},
		{"DELETE", "/v1/kv/k", "", ""},
		{"DELETE", "/v1/kv/k", "cas=1", ""},
		{"DELETE", "/v1/kv/missing", "", ""},
		{"DELETE", "/v1/kv/dir/", "prefix", ""},
		{"DELETE", "/v1/kv/", "prefix", ""},
		{"DELETE", "/v1/kv/k", "prefix&cas=1", ""},
		{"POST", "/v1/kv/k", "", ""},
		{"HEAD", "/v1/kv/k", "", ""},
		{"OPTIONS", "/v1/kv/k", "", ""},
		{"get", "/v1/kv/k", "", ""},
		{"CONNECT", "/v1/kv/k", "", ""},
		{"GET", "/v1/status", "", ""},
		{"GET", "/v1/status", "x", ""},
		{"GET", "/v1/cluster/members", "", ""},
		{"POST", "/v1/cluster/members", "", `{"id":"n2","raft_addr":"h:1","http_addr":"h:2"}`},
		{"POST", "/v1/cluster/members", "", `{"id":"n2","raft_addr":"0.0.0.0:1","http_addr":"h:2"}`},
		{"POST", "/v1/cluster/members", "", `{"id":"n2"}{}`},
		{"POST", "/v1/cluster/members", "", `{"id":"n2","x":1}`},
		{"POST", "/v1/cluster/members", "", ""},
		{"DELETE", "/v1/cluster/members/n2", "", ""},
		{"POST", "/v1/cluster/transfer-leadership", "", ""},
		{"POST", "/v1/cluster/transfer-leadership", "", `{"id":"n2"}`},
		{"POST", "/v1/cluster/transfer-leadership", "", `{"id":`},
		{"GET", "/healthz", "", ""},
		{"GET", "/readyz", "", ""},
		{"GET", "/metrics", "", ""},
		{"GET", "/", "", ""},
		{"GET", "//", "", ""},
		{"GET", "/v1/kv/%2e%2e", "", ""},
		{"GET", "/v1/kv/\u00e9t\u00e9", "", ""},
	} {
		f.Add(s[0], s[1], s[2], s[3], "")
	}
	snap := fuzzSnapshot(f)
	for _, s := range [][5]string{
		{"PUT", "/v1/kv/k", "", "v", "Idempotency-Key: abc"},
		{"PUT", "/v1/kv/k", "cas=1", "v", "Idempotency-Key: abc\nIdempotency-Key: def"},
		{"DELETE", "/v1/kv/k", "", "", "Idempotency-Key: " + strings.Repeat("i", 257)},
		{"POST", "/v1/leases", "", `{"ttl":"10s"}`, "Idempotency-Key: caf\u00e9"},
		{"POST", "/v1/locks/l", "", `{"ttl":"2s"}`, "Idempotency-Key: lock-1"},
		{"POST", "/v1/leases", "", `{"ttl":"10s"}`, "Content-Type: text/plain"},
		{"GET", "/v1/elections/e", "", "", "Accept: text/event-stream"},
		{"GET", "/v1/locks/l", "index=1&changes=2", "", "Accept: text/event-stream"},
		{"PUT", "/v1/kv/k", "", "v", "X-Coordd-Forwarded-By: n2"},
		{"GET", "/v1/kv/k", "stale", "", "X-Coordd-Forwarded-By: n2\nAccept: */*"},
		{"GET", "/v1/snapshot", "", "", ""},
		{"GET", "/v1/snapshot", "bump=1", "", ""},
		{"POST", "/v1/snapshot", "", snap, ""},
		{"POST", "/v1/snapshot", "bump=5", snap, "Idempotency-Key: r"},
		{"POST", "/v1/snapshot", "bump=281474976710657", snap, ""},
		{"POST", "/v1/snapshot", "bump=x", snap, ""},
		{"POST", "/v1/snapshot", "", snap[:len(snap)-1], ""},
		{"POST", "/v1/snapshot", "", snap + "x", ""},
		{"POST", "/v1/snapshot", "", "COORDSNP\x00\x02", ""},
		{"POST", "/v1/snapshot", "", "", ""},
		{"GET", "/v1/debug/lease-clock", "", "", ""},
		{"POST", "/v1/debug/lease-clock", "", `{"jump":"1s"}`, ""},
		{"PUT", "/v1/kv", "", "v", ""},
		{"GET", "/v1/leases", "", "", ""},
		{"GET", "/v1/elections", "", "", ""},
		{"GET", "/v1/locks", "", "", ""},
	} {
		f.Add(s[0], s[1], s[2], s[3], s[4])
	}
	f.Fuzz(func(t *testing.T, method, path, query, body, header string) {
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
		for _, line := range strings.Split(header, "\n") {
			name, value, ok := strings.Cut(line, ":")
			if !ok || name == "" || strings.ContainsAny(name, " \t") || !printableHeader(name) || !printableHeader(value) {
				continue
			}
			req.Header.Add(name, strings.TrimSpace(value))
		}
		node := newFakeNode("n1")
		node.put(t, "k", "v")
		node.put(t, "dir/a", "1")
		node.put(t, "dir/b", "2")
		node.put(t, "bin", "\xff\xfe")
		applied := node.index
		h := httpapi.New(node, httpapi.Options{MaxRequestBytes: 4096, MaxValueBytes: 1024, MaxSnapshotBytes: 1 << 16})
		res, b := fuzzServe(t, h, req)
		switch res.StatusCode {
		case http.StatusBadRequest, http.StatusMethodNotAllowed, http.StatusRequestEntityTooLarge, http.StatusNotFound:
			if res.StatusCode == http.StatusNotFound && (method == http.MethodDelete ||
				strings.Contains(string(b), `"lease_not_found"`) || strings.Contains(string(b), `"election_not_found"`)) {
				break // a missing key, lease or election is decided by the FSM
			}
			node.applyMu.Lock()
			idx := node.index
			node.applyMu.Unlock()
			if idx != applied {
				t.Fatalf("%s %q: answered %d but proposed a command", method, u, res.StatusCode)
			}
		}
	})
}

// fuzzServe serves req through h (a blocking query is bounded: it returns
// when the client leaves) and checks the answer: never 5xx, errors in the
// documented JSON shape, JSON 2xx bodies valid.
func fuzzServe(t *testing.T, h http.Handler, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
	defer cancel()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req.WithContext(ctx))
	res := rec.Result()
	b := rec.Body.Bytes()
	if res.StatusCode >= 500 {
		t.Fatalf("%s %q: status %d: %s", req.Method, req.URL, res.StatusCode, b)
	}
	if res.StatusCode < 200 || res.StatusCode >= 300 {
		if _, problem := checkErrorShape(res.StatusCode, res.Header, b); problem != "" {
			t.Fatalf("%s %q: %d %q: %s", req.Method, req.URL, res.StatusCode, b, problem)
		}
	} else if res.Header.Get("Content-Type") == "application/json" && !json.Valid(b) {
		t.Fatalf("%s %q: 2xx body is not JSON: %q", req.Method, req.URL, b)
	}
	return res, b
}

// printableHeader reports whether s could arrive as a header name or value:
// no control characters but tab, no DEL.
func printableHeader(s string) bool {
	for i := 0; i < len(s); i++ {
		if (s[i] < 0x20 && s[i] != '\t') || s[i] == 0x7f {
			return false
		}
	}
	return true
}

// fuzzSnapshot is a small snapshot file, as GET /v1/snapshot writes it.
func fuzzSnapshot(t testing.TB) string {
	n := newFakeNode("n0")
	n.put(t, "k", "v")
	n.put(t, "dir/a", "1")
	var buf bytes.Buffer
	if err := fsm.WriteState(&buf, n.State()); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}
