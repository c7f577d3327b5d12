package server

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/coordd/coordd/api"
)

// fakeShadow answers stale reads with a fixed status, body and indexes.
func fakeShadow(t *testing.T, status int, body, index, applied string) shadowTarget {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !r.URL.Query().Has("stale") {
			t.Errorf("mirrored read without ?stale: %s", r.URL)
		}
		w.Header().Set(api.HeaderIndex, index)
		w.Header().Set(api.HeaderAppliedIndex, applied)
		w.WriteHeader(status)
		w.Write([]byte(body))
	}))
	t.Cleanup(srv.Close)
	return shadowTarget{id: "s1", addr: strings.TrimPrefix(srv.URL, "http://")}
}

func testShadower() *readShadower {
	rs := newReadShadower(&Config{ReadShadowRate: 1, Logger: hclog.NewNullLogger()})
	rs.scheme, rs.client = "http", http.DefaultClient
	return rs
}

func TestReadShadow_CountsADifferenceAtTheSameKeyIndex(t *testing.T) {
	rs := testShadower()
	primary := shadowAnswer{status: 200, body: []byte(`{"key":"k","value":"a"}`), index: 7}
	rs.compare(fakeShadow(t, 200, `{"key":"k","value":"a"}`, "7", "9"), "/v1/kv/k", false, "", primary)
	if c, d := rs.counts("s1"); c != 1 || d != 0 {
		t.Fatalf("equal answers: compared %d, differed %d", c, d)
	}
	rs.compare(fakeShadow(t, 200, `{"key":"k","value":"B"}`, "7", "9"), "/v1/kv/k", false, "", primary)
	if c, d := rs.counts("s1"); c != 2 || d != 1 {
		t.Fatalf("different answers: compared %d, differed %d", c, d)
	}
	// The shadow applied past the key's change but never saw it: it
	// missed a change.
	rs.compare(fakeShadow(t, 404, `{}`, "3", "12"), "/v1/kv/k", false, "", primary)
	if c, d := rs.counts("s1"); c != 3 || d != 2 {
		t.Fatalf("missed change: compared %d, differed %d", c, d)
	}
}

func TestReadShadow_SkipsAKeyThatChangedSince(t *testing.T) {
	rs := testShadower()
	primary := shadowAnswer{status: 200, body: []byte(`{"value":"a"}`), index: 7}
	rs.compare(fakeShadow(t, 200, `{"value":"b"}`, "8", "8"), "/v1/kv/k", false, "", primary)
	if c, d := rs.counts("s1"); c != 0 || d != 0 {
		t.Fatalf("compared %d, differed %d: a later change is not a difference", c, d)
	}
}

func TestReadShadow_SamplesOnlyPlainSingleKeyReads(t *testing.T) {
	for url, want := range map[string]bool{
		"/v1/kv/a":                 true,
		"/v1/kv/a?raw":             true,
		"/v1/kv/a?prefix":          false,
		"/v1/kv/a?index=3":         false,
		"/v1/leases":               false,
		"/v1/kv/":                  false,
		"/v1/kv/a?index=3&wait=1s": false,
	} {
		r := httptest.NewRequest(http.MethodGet, url, nil)
		if got := shadowable(r); got != want {
			t.Errorf("%s: shadowable = %v", url, got)
		}
	}
}
