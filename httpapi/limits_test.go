package httpapi_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/httpapi"
)

// metricValue returns the value of the metric name whose labels include
// the given name=value pairs (0 when absent).
func metricValue(t testing.TB, ta *testAPI, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := ta.reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					found = found || l.GetName() == labels[i] && l.GetValue() == labels[i+1]
				}
				if !found {
					continue next
				}
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func refused(t testing.TB, ta *testAPI, reason string) float64 {
	t.Helper()
	return metricValue(t, ta, "coordd_http_refused_total", "reason", reason)
}

func watchers(t testing.TB, ta *testAPI) float64 {
	t.Helper()
	return metricValue(t, ta, "coordd_http_watchers")
}

func TestLimits_BodyTooLargeIs413JSON(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", &httpapi.Options{MaxRequestBytes: 1000, MaxValueBytes: 1000})
	big := `{"ttl":"10s","value":"` + strings.Repeat("v", 2000) + `"}`
	for _, c := range []struct{ method, path, body string }{
		{"PUT", "/v1/kv/k", strings.Repeat("v", 1001)},
		{"POST", "/v1/leases", big},
		{"POST", "/v1/locks/l", big},
		{"POST", "/v1/elections/e/campaign", big},
		{"POST", "/v1/elections/e/proclaim", big},
		{"POST", "/v1/leases/keepalive", big},
		{"POST", "/v1/cluster/members", big},
	} {
		wantError(t, ta.do(t, c.method, c.path, c.body), http.StatusRequestEntityTooLarge, api.CodeTooLarge)
	}
	if got := refused(t, ta, "too_large"); got != 7 {
		t.Errorf("coordd_http_refused_total{reason=too_large} = %g, want 7", got)
	}
	if _, applies := ta.node.counts(); applies != 0 {
		t.Errorf("%d applies for refused requests", applies)
	}
}

// A body whose declared length is over the limit is refused before it is
// read, on a real connection, and the connection is not left hanging.
func TestLimits_DeclaredLengthOverLimitIsRefusedUnread(t *testing.T) {
	t.Parallel()
	h := httpapi.New(newFakeNode("n1"), httpapi.Options{MaxRequestBytes: 1000})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	// Declare 10 MB, send none of it.
	fmt.Fprintf(conn, "PUT /v1/kv/k HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	wantError(t, response{status: resp.StatusCode, header: resp.Header, body: body}, http.StatusRequestEntityTooLarge, api.CodeTooLarge)
}

func TestLimits_KeyTooLongIs413(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	long := strings.Repeat("k", httpapi.MaxKeyBytes+1)
	for _, c := range []struct{ method, path string }{
		{"PUT", "/v1/kv/" + long}, {"GET", "/v1/kv/" + long}, {"GET", "/v1/kv/" + long + "?prefix"},
		{"DELETE", "/v1/kv/" + long}, {"DELETE", "/v1/kv/" + long + "?prefix"},
		{"GET", "/v1/kv/" + long + "?index=5&wait=1s"},
	} {
		d := wantError(t, ta.do(t, c.method, c.path, "v"), http.StatusRequestEntityTooLarge, api.CodeTooLarge)
		if !strings.Contains(d.Message, strconv.Itoa(httpapi.MaxKeyBytes)) {
			t.Errorf("%s: message %q does not state the limit", c.method, d.Message)
		}
	}
	ta.putKV(t, strings.Repeat("k", httpapi.MaxKeyBytes), "v") // the limit itself is allowed
}

func TestLimits_ValueTooLargeIs413(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", &httpapi.Options{MaxValueBytes: 100})
	wantError(t, ta.do(t, "PUT", "/v1/kv/k", strings.Repeat("v", 101)), http.StatusRequestEntityTooLarge, api.CodeTooLarge)
	ta.putKV(t, "k", strings.Repeat("v", 100))

	big := strings.Repeat("v", 101)
	wantError(t, ta.do(t, "POST", "/v1/elections/e/campaign", `{"ttl":"10s","value":"`+big+`"}`), http.StatusRequestEntityTooLarge, api.CodeTooLarge)
	var c api.CampaignResponse
	wantJSON(t, ta.do(t, "POST", "/v1/elections/e/campaign", `{"ttl":"10s","value":"ok"}`), &c)
	wantError(t, ta.do(t, "POST", "/v1/elections/e/proclaim", fmt.Sprintf(`{"lease":%d,"token":%d,"value":"%s"}`, c.Lease, c.Token, big)),
		http.StatusRequestEntityTooLarge, api.CodeTooLarge)
	var e api.Election
	wantJSON(t, ta.do(t, "POST", "/v1/elections/e/proclaim", fmt.Sprintf(`{"lease":%d,"token":%d,"value":"%s"}`, c.Lease, c.Token, big[:100])), &e)
	if e.Leader == nil || e.Leader.Value != big[:100] {
		t.Errorf("proclaim of a value at the limit: %+v", e.Leader)
	}
}

func TestLimits_NameTooLongIs413(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	long := strings.Repeat("n", api.MaxNameBytes+1)
	for _, c := range []struct{ method, path, body string }{
		{"POST", "/v1/elections/" + long + "/campaign", `{"ttl":"10s"}`},
		{"POST", "/v1/elections/" + long + "/resign", `{"lease":1}`},
		{"POST", "/v1/elections/" + long + "/proclaim", `{"lease":1,"token":1}`},
		{"POST", "/v1/locks/" + long, `{"ttl":"10s"}`},
		{"DELETE", "/v1/locks/" + long, `{"lease":1}`},
		{"GET", "/v1/elections/" + long, ""},
		{"GET", "/v1/locks/" + long + "?index=3", ""},
		{"GET", "/v1/fencing/" + long + "?token=1", ""},
	} {
		wantError(t, ta.do(t, c.method, c.path, c.body), http.StatusRequestEntityTooLarge, api.CodeTooLarge)
	}
	var c api.CampaignResponse
	wantJSON(t, ta.do(t, "POST", "/v1/locks/"+long[:api.MaxNameBytes], `{"ttl":"10s"}`), &c)
}

func TestLimits_KeepaliveBatchTooLargeIs413(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	many := strings.Repeat("1,", api.MaxKeepaliveBatch) + "1"
	d := wantError(t, ta.do(t, "POST", "/v1/leases/keepalive", `{"ids":[`+many+`]}`), http.StatusRequestEntityTooLarge, api.CodeTooLarge)
	if !strings.Contains(d.Message, strconv.Itoa(api.MaxKeepaliveBatch)) {
		t.Errorf("message %q does not state the limit", d.Message)
	}
}

// wantRateLimited checks a 429 rate_limited answer with a Retry-After in
// whole seconds.
func wantRateLimited(t testing.TB, r response) {
	t.Helper()
	wantError(t, r, http.StatusTooManyRequests, api.CodeRateLimited)
	if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 {
		t.Fatalf("Retry-After %q, want a positive number of seconds", r.header.Get("Retry-After"))
	}
}

func TestLimits_RateLimitedIs429AndRecovers(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", &httpapi.Options{RateLimit: 20, RateBurst: 3})
	for i := range 3 {
		if r := ta.do(t, "GET", "/v1/status", ""); r.status != http.StatusOK {
			t.Fatalf("request %d of the burst: %d %s", i+1, r.status, r.body)
		}
	}
	wantRateLimited(t, ta.do(t, "GET", "/v1/status", ""))
	// A refused write was not applied.
	wantRateLimited(t, ta.do(t, "PUT", "/v1/kv/k", "v"))
	if _, applies := ta.node.counts(); applies != 0 {
		t.Errorf("%d applies for refused writes", applies)
	}
	// Health, readiness and metrics are never limited.
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		if r := ta.do(t, "GET", p, ""); r.status == http.StatusTooManyRequests {
			t.Errorf("%s rate-limited", p)
		}
	}
	if got := refused(t, ta, "rate_limited"); got < 2 {
		t.Errorf("coordd_http_refused_total{reason=rate_limited} = %g, want >= 2", got)
	}
	// The bucket refills at 20/s: the client is served again soon.
	eventually(t, 10*time.Second, "the client to be served again", func() bool {
		return ta.do(t, "GET", "/v1/status", "").status == http.StatusOK
	})
}

func TestLimits_RateIsPerClient(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", &httpapi.Options{RateLimit: 0.01, RateBurst: 2})
	a := []string{"Authorization", "Bearer token-a"}
	b := []string{"Authorization", "Bearer token-b"}
	for range 2 {
		if r := ta.do(t, "GET", "/v1/status", "", a...); r.status != http.StatusOK {
			t.Fatalf("a: %d %s", r.status, r.body)
		}
	}
	wantRateLimited(t, ta.do(t, "GET", "/v1/status", "", a...))
	// Another token, and the address without a token, have their own buckets.
	for _, hdr := range [][]string{b, b, nil, nil} {
		if r := ta.do(t, "GET", "/v1/status", "", hdr...); r.status != http.StatusOK {
			t.Fatalf("%v: %d %s while a is limited", hdr, r.status, r.body)
		}
	}
	wantRateLimited(t, ta.do(t, "GET", "/v1/status", "", b...))
	wantRateLimited(t, ta.do(t, "GET", "/v1/status", ""))
	if got := metricValue(t, ta, "coordd_http_rate_limit_clients"); got != 3 {
		t.Errorf("coordd_http_rate_limit_clients = %g, want 3", got)
	}
}

func TestLimits_RateDisabled(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", &httpapi.Options{RateLimit: -1, RateBurst: 1})
	for i := range 50 {
		if r := ta.do(t, "GET", "/v1/status", ""); r.status != http.StatusOK {
			t.Fatalf("request %d: %d %s", i, r.status, r.body)
		}
	}
}

// A request forwarded by a follower was limited there and is not limited
// again on the leader: the leader would otherwise count every client of
// the follower against one bucket.
func TestLimits_ForwardedRequestsAreNotLimitedTwice(t *testing.T) {
	t.Parallel()
	l := newTestAPI(t, "L", &httpapi.Options{RateLimit: 0.01, RateBurst: 2})
	f := newTestAPI(t, "F", &httpapi.Options{RateLimit: 0.01, RateBurst: 10})
	l.node.mu.Lock()
	info := l.node.leader
	l.node.mu.Unlock()
	f.node.set(func(n *fakeNode) { n.isLeader, n.leader = false, info })

	for i := range 10 {
		r := f.do(t, "PUT", "/v1/kv/k", fmt.Sprint(i))
		var w api.KVWriteResult
		wantJSON(t, r, &w)
		if r.header.Get("X-Coordd-Served-By") != "L" {
			t.Fatalf("write %d served by %q, want the leader", i, r.header.Get("X-Coordd-Served-By"))
		}
	}
	// The follower limits the client where it entered.
	wantRateLimited(t, f.do(t, "PUT", "/v1/kv/k", "x"))
	// The leader's own limit is in force for requests that enter there.
	for range 2 {
		l.putKV(t, "k", "direct")
	}
	wantRateLimited(t, l.do(t, "PUT", "/v1/kv/k", "x"))
	if got := refused(t, l, "rate_limited"); got != 1 {
		t.Errorf("leader refused %g requests, want 1 (its own client's)", got)
	}
}

// startWatch runs a blocking query or stream in the background and returns
// its cancel function and a channel that yields its status when it ends.
func startWatch(t *testing.T, u string, hdr ...string) (context.CancelFunc, <-chan int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	done := make(chan int, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- -1
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	return cancel, done
}

func TestLimits_WatchersCapIs429AndSlotsAreReleased(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", &httpapi.Options{MaxWatchers: 2})
	w := ta.putKV(t, "k", "v1")
	blocking := fmt.Sprintf("%s/v1/kv/k?index=%d&wait=30s", ta.srv.URL, w.ModifyIndex)

	_, done1 := startWatch(t, blocking)
	cancel2, done2 := startWatch(t, ta.srv.URL+"/v1/elections/e", "Accept", "text/event-stream")
	eventually(t, 10*time.Second, "two watchers", func() bool { return watchers(t, ta) == 2 })

	// The third watch of either kind is refused, with Retry-After.
	r := ta.do(t, "GET", fmt.Sprintf("/v1/kv/k?index=%d&wait=30s", w.ModifyIndex), "")
	wantError(t, r, http.StatusTooManyRequests, api.CodeTooManyWatchers)
	if r.header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	wantError(t, ta.do(t, "GET", "/v1/locks/l", "", "Accept", "text/event-stream"), http.StatusTooManyRequests, api.CodeTooManyWatchers)
	if got := refused(t, ta, "too_many_watchers"); got != 2 {
		t.Errorf("coordd_http_refused_total{reason=too_many_watchers} = %g, want 2", got)
	}
	// Reads that do not block are served as usual.
	ta.getKV(t, "k")
	ta.getKV(t, "k?index=0")

	// The blocking query returns when the key changes: its slot is free.
	ta.putKV(t, "k", "v2")
	if st := <-done1; st != http.StatusOK {
		t.Fatalf("blocking query ended with %d", st)
	}
	eventually(t, 10*time.Second, "the blocking query's slot to be released", func() bool { return watchers(t, ta) == 1 })

	// The stream's client goes away: its slot is free too.
	cancel2()
	<-done2
	eventually(t, 10*time.Second, "the stream's slot to be released", func() bool { return watchers(t, ta) == 0 })

	// And new watches are accepted again.
	_, done3 := startWatch(t, fmt.Sprintf("%s/v1/kv/k?index=%d&wait=50ms", ta.srv.URL, w.ModifyIndex+100))
	if st := <-done3; st != http.StatusOK {
		t.Fatalf("watch after release ended with %d", st)
	}
	eventually(t, 10*time.Second, "no watchers", func() bool { return watchers(t, ta) == 0 })
}

// A watch whose client disconnects while it waits releases its slot.
func TestLimits_WatcherSlotReleasedOnClientDisconnect(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", &httpapi.Options{MaxWatchers: 1})
	w := ta.putKV(t, "k", "v1")
	cancel, done := startWatch(t, fmt.Sprintf("%s/v1/kv/k?index=%d&wait=5m", ta.srv.URL, w.ModifyIndex))
	eventually(t, 10*time.Second, "one watcher", func() bool { return watchers(t, ta) == 1 })
	wantError(t, ta.do(t, "GET", fmt.Sprintf("/v1/kv/k?index=%d", w.ModifyIndex), ""), http.StatusTooManyRequests, api.CodeTooManyWatchers)
	cancel()
	<-done
	eventually(t, 10*time.Second, "the slot to be released", func() bool { return watchers(t, ta) == 0 })
	_, done2 := startWatch(t, fmt.Sprintf("%s/v1/kv/k?index=%d&wait=10ms", ta.srv.URL, w.ModifyIndex))
	if st := <-done2; st != http.StatusOK {
		t.Fatalf("watch after release ended with %d", st)
	}
}

// A body that does not arrive in time is answered 408 request_timeout; the
// deadline is lifted once the body is read, so a long wait afterwards (a
// lock acquisition) is not cut short.
func TestLimits_SlowBodyIs408AndTheDeadlineIsLifted(t *testing.T) {
	t.Parallel()
	h := httpapi.New(newFakeNode("n1"), httpapi.Options{BodyReadTimeout: 300 * time.Millisecond})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(conn, "PUT /v1/kv/k HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly part of it")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	wantError(t, response{status: resp.StatusCode, header: resp.Header, body: body}, http.StatusRequestTimeout, api.CodeRequestTimeout)

	// A lock held by A; B waits for it for 1s (past the body deadline):
	// the wait runs its course instead of being cancelled.
	do := func(body string) response { return doURL(t, "POST", srv.URL+"/v1/locks/l", body) }
	var a, b api.CampaignResponse
	wantJSON(t, do(`{"ttl":"10s"}`), &a)
	start := time.Now()
	wantJSON(t, do(`{"ttl":"10s","wait":"1s"}`), &b)
	if b.Leader || b.Position != 1 {
		t.Fatalf("B: %+v, want waiting at position 1", b)
	}
	if waited := time.Since(start); waited < time.Second {
		t.Fatalf("B's wait ended after %s, before its 1s: the body deadline cut it short", waited)
	}
}

// The limits hold under concurrent use (run with -race).
func TestLimits_ConcurrentClients(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", &httpapi.Options{RateLimit: 1000, RateBurst: 50, MaxWatchers: 3})
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 20 {
				path := "/v1/status"
				if j%4 == 0 {
					path = "/v1/kv/k?index=1000&wait=20ms"
				}
				r := ta.do(t, "GET", path, "", "Authorization", fmt.Sprint("Bearer c", i%3))
				mu.Lock()
				codes[r.status]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for code := range codes {
		switch code {
		case http.StatusOK, http.StatusNotFound, http.StatusTooManyRequests:
		default:
			t.Errorf("unexpected status %d (%d times)", code, codes[code])
		}
	}
	eventually(t, 10*time.Second, "no watchers", func() bool { return watchers(t, ta) == 0 })
}
