package httpapi_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// dyingLeader answers the internal endpoints as a leader killed while it
// answered: 200 and the peer content type go out, then the stream is cut
// before the body (make test's leader-kill smoke run caught a follower
// relaying "malformed peer message" as 500 internal). Everything else goes
// to the pair's real leader.
func dyingLeader(t *testing.T, p pair) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/v1/internal/") {
			w.Header().Set(headerContentType, "application/x-coordd-peer")
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
		p.leader.srv.Config.Handler.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p.follower.node.set(func(n *fakeNode) { n.leader.HTTPAddr = srv.Listener.Addr().String() })
}

// Test_Forward_AnswerCutOff_IsOutcomeUnknown: when the leader's answer to
// a follower's encoded write or coalesced keepalive is cut off after its
// status, the follower answers 503 outcome_unknown (retryable: the write
// may or may not have been applied), never 500 internal nor a decoding
// error.
func Test_Forward_AnswerCutOff_IsOutcomeUnknown(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	leases := grantLeases(t, p.leader, 1, "10s")
	dyingLeader(t, p)
	for _, tc := range []struct{ method, path, body string }{
		{"PUT", "/v1/kv/k", "v"},
		{"POST", "/v1/locks/l", `{"ttl":"10s"}`},
		{"POST", fmt.Sprintf("/v1/leases/%d/keepalive", leases[0].ID), ""},
	} {
		r := p.follower.do(t, tc.method, tc.path, tc.body)
		if r.status != http.StatusServiceUnavailable || !strings.Contains(string(r.body), `"outcome_unknown"`) {
			t.Errorf("%s %s: %d %s, want 503 outcome_unknown", tc.method, tc.path, r.status, r.body)
		}
	}
}
