package httpapi_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/fsm"
	"github.com/coordd/coordd/httpapi"
)

// async runs a request in the background.
func (ta *testAPI) async(t *testing.T, method, path string) <-chan response {
	t.Helper()
	ch := make(chan response, 1)
	go func() {
		// t.Fatal may not be called off the test goroutine: report errors
		// as a synthetic response instead.
		req, err := http.NewRequest(method, ta.srv.URL+path, nil)
		if err != nil {
			ch <- response{status: -1, body: []byte(err.Error())}
			return
		}
		resp, err := client.Do(req)
		if err != nil {
			ch <- response{status: -1, body: []byte(err.Error())}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			ch <- response{status: -1, body: []byte(err.Error())}
			return
		}
		ch <- response{status: resp.StatusCode, header: resp.Header, body: b}
	}()
	return ch
}

// waitBlocked waits until the node has seen more ResetCh calls than before:
// a blocking query calls ResetCh only after it has taken the state it
// evaluates, so any write after this point must wake it.
func waitBlocked(t *testing.T, n *fakeNode, before int) {
	t.Helper()
	eventually(t, 5*time.Second, "the query to block", func() bool { return n.resets() > before })
}

// recv waits for a background response.
func recv(t *testing.T, ch <-chan response, within time.Duration) response {
	t.Helper()
	select {
	case r := <-ch:
		if r.status == -1 {
			t.Fatalf("request failed: %s", r.body)
		}
		return r
	case <-time.After(within):
		t.Fatalf("no response within %s", within)
		return response{}
	}
}

func mustNotReturn(t *testing.T, ch <-chan response) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("blocking query returned before any change: %d %s", r.status, r.body)
	default:
	}
}

func decodeKV(t *testing.T, r response) api.KV {
	t.Helper()
	var kv api.KV
	wantJSON(t, r, &kv)
	return kv
}

func TestBlockingReturnsAtOnceWhenNewer(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	ta.putKV(t, "k", "v1")
	w := ta.putKV(t, "k", "v2")
	start := time.Now()
	kv, r := ta.getKV(t, fmt.Sprintf("k?index=%d&wait=2s", w.ModifyIndex-1))
	if string(kv.Value) != "v2" || indexHeader(t, r) != w.ModifyIndex {
		t.Fatalf("got %+v index %d", kv, indexHeader(t, r))
	}
	// Loose bound: well below the 2s wait.
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %s", d)
	}
	// index=0 never blocks.
	if kv, _ := ta.getKV(t, "k?index=0&wait=2s"); string(kv.Value) != "v2" {
		t.Errorf("index=0: %+v", kv)
	}
	// ?wait alone does not block.
	if kv, _ := ta.getKV(t, "k?wait=10m"); string(kv.Value) != "v2" {
		t.Errorf("wait alone: %+v", kv)
	}
}

func TestBlockingWakesOnWrite(t *testing.T) {
	t.Parallel()
	for _, q := range []string{"", "&stale", "&raw"} {
		t.Run(q, func(t *testing.T) {
			t.Parallel()
			ta := newTestAPI(t, "n1", nil)
			w := ta.putKV(t, "k", "v1")
			ta.putKV(t, "unrelated", "x")
			before := ta.node.resets()
			ch := ta.async(t, "GET", fmt.Sprintf("/v1/kv/k?index=%d&wait=30s%s", w.ModifyIndex, q))
			waitBlocked(t, ta.node, before)
			mustNotReturn(t, ch)
			res := ta.node.put(t, "k", "v2") // as if committed by another client
			r := recv(t, ch, 10*time.Second)
			if r.status != 200 || indexHeader(t, r) != res.Index {
				t.Fatalf("woke with %d index %s, want 200 index %d: %s", r.status, r.header.Get("X-Coordd-Index"), res.Index, r.body)
			}
			if q == "&raw" {
				if string(r.body) != "v2" {
					t.Fatalf("raw: %q", r.body)
				}
				return
			}
			if kv := decodeKV(t, r); string(kv.Value) != "v2" || kv.ModifyIndex != res.Index || kv.Version != 2 {
				t.Fatalf("woke with %+v", kv)
			}
		})
	}
}

// TestBlockingWakesOnDelete: deleting the watched key wakes the watcher,
// which then gets 404 with the delete's index.
func TestBlockingWakesOnDelete(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	w := ta.putKV(t, "k", "v1")
	before := ta.node.resets()
	ch := ta.async(t, "GET", fmt.Sprintf("/v1/kv/k?index=%d&wait=30s", w.ModifyIndex))
	waitBlocked(t, ta.node, before)
	res := ta.node.del(t, "k")
	r := recv(t, ch, 10*time.Second)
	wantError(t, r, http.StatusNotFound, api.CodeKeyNotFound)
	if indexHeader(t, r) != res.Index {
		t.Fatalf("index %d after delete at %d", indexHeader(t, r), res.Index)
	}
}

func TestBlockingTimesOut(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	w := ta.putKV(t, "k", "v1")
	start := time.Now()
	kv, r := ta.getKV(t, fmt.Sprintf("k?index=%d&wait=200ms", w.ModifyIndex))
	d := time.Since(start)
	if string(kv.Value) != "v1" || indexHeader(t, r) != w.ModifyIndex {
		t.Fatalf("timed out with %+v index %d", kv, indexHeader(t, r))
	}
	if d < 200*time.Millisecond || d > 5*time.Second {
		t.Fatalf("wait=200ms returned after %s", d)
	}
	// Waiting on an index beyond the current one also times out normally.
	kv, r = ta.getKV(t, fmt.Sprintf("k?index=%d&wait=100ms", w.ModifyIndex+100))
	if string(kv.Value) != "v1" || indexHeader(t, r) != w.ModifyIndex {
		t.Fatalf("future index: %+v index %d", kv, indexHeader(t, r))
	}
}

func TestBlockingMissingKeyWakesOnCreate(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	ta.putKV(t, "other", "x")
	r := ta.do(t, "GET", "/v1/kv/new", "")
	wantError(t, r, http.StatusNotFound, api.CodeKeyNotFound)
	idx := indexHeader(t, r)
	if idx < 1 {
		t.Fatalf("index %d on a missing key", idx)
	}
	before := ta.node.resets()
	ch := ta.async(t, "GET", fmt.Sprintf("/v1/kv/new?index=%d&wait=30s", idx))
	waitBlocked(t, ta.node, before)
	mustNotReturn(t, ch)
	res := ta.node.put(t, "new", "created")
	r = recv(t, ch, 10*time.Second)
	if kv := decodeKV(t, r); string(kv.Value) != "created" || kv.CreateIndex != res.Index || indexHeader(t, r) != res.Index {
		t.Fatalf("woke with %+v", kv)
	}
}

// TestBlockingMissingKeyTimesOut: a missing key stays 404 after the wait.
func TestBlockingMissingKeyTimesOut(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	r := ta.do(t, "GET", "/v1/kv/none?index=1&wait=50ms", "")
	wantError(t, r, http.StatusNotFound, api.CodeKeyNotFound)
	if indexHeader(t, r) != 1 {
		t.Errorf("index %d", indexHeader(t, r))
	}
}

func TestBlockingPrefix(t *testing.T) {
	t.Parallel()
	setup := func(t *testing.T) (*testAPI, uint64) {
		ta := newTestAPI(t, "n1", nil)
		ta.putKV(t, "cfg/a", "1")
		ta.putKV(t, "cfg/b", "2")
		ta.putKV(t, "zzz", "x")
		_, r := listKV(t, ta, "cfg/?prefix")
		return ta, indexHeader(t, r)
	}
	t.Run("put under prefix", func(t *testing.T) {
		t.Parallel()
		ta, idx := setup(t)
		before := ta.node.resets()
		ch := ta.async(t, "GET", fmt.Sprintf("/v1/kv/cfg/?prefix&index=%d&wait=30s", idx))
		waitBlocked(t, ta.node, before)
		mustNotReturn(t, ch)
		res := ta.node.put(t, "cfg/c", "3")
		r := recv(t, ch, 10*time.Second)
		var list []api.KV
		wantJSON(t, r, &list)
		if fmt.Sprint(keysOf(list)) != "[cfg/a cfg/b cfg/c]" || indexHeader(t, r) != res.Index {
			t.Fatalf("woke with %v index %d", keysOf(list), indexHeader(t, r))
		}
	})
	t.Run("delete under prefix", func(t *testing.T) {
		t.Parallel()
		ta, idx := setup(t)
		before := ta.node.resets()
		ch := ta.async(t, "GET", fmt.Sprintf("/v1/kv/cfg/?prefix&index=%d&wait=30s", idx))
		waitBlocked(t, ta.node, before)
		res := ta.node.del(t, "cfg/a")
		r := recv(t, ch, 10*time.Second)
		var list []api.KV
		wantJSON(t, r, &list)
		if fmt.Sprint(keysOf(list)) != "[cfg/b]" || indexHeader(t, r) != res.Index {
			t.Fatalf("woke with %v index %d", keysOf(list), indexHeader(t, r))
		}
	})
	t.Run("unrelated put", func(t *testing.T) {
		t.Parallel()
		ta, idx := setup(t)
		before := ta.node.resets()
		ch := ta.async(t, "GET", fmt.Sprintf("/v1/kv/cfg/?prefix&index=%d&wait=300ms", idx))
		waitBlocked(t, ta.node, before)
		ta.node.put(t, "zzz", "changed")
		ta.node.put(t, "cfgx", "sibling, not under cfg/")
		ta.node.put(t, "cf", "parent, not under cfg/")
		r := recv(t, ch, 10*time.Second)
		var list []api.KV
		wantJSON(t, r, &list)
		if fmt.Sprint(keysOf(list)) != "[cfg/a cfg/b]" || indexHeader(t, r) != idx {
			t.Fatalf("returned %v index %d, want unchanged index %d", keysOf(list), indexHeader(t, r), idx)
		}
	})
}

// TestBlockingClientCancel: when the client gives up, the handler returns
// promptly instead of holding the request for the whole wait.
func TestBlockingClientCancel(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	w := ta.putKV(t, "k", "v1")

	served := func() float64 { return requestsTotal(t, ta, "GET /v1/kv/{key...}") }
	base := served()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/v1/kv/k?index=%d&wait=10m", ta.srv.URL, w.ModifyIndex), nil)
	errc := make(chan error, 1)
	before := ta.node.resets()
	go func() {
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	waitBlocked(t, ta.node, before)
	start := time.Now()
	cancel()
	if err := <-errc; err == nil {
		t.Fatalf("request completed despite cancellation")
	}
	// The server-side handler has finished once its request is counted.
	eventually(t, 5*time.Second, "the handler to return", func() bool { return served() > base })
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("handler returned %s after cancellation", d)
	}
}

// TestBlockingClientCancelHandler checks the same without a network: the
// handler returns as soon as the request's context is cancelled.
func TestBlockingClientCancelHandler(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	w := ta.putKV(t, "k", "v1")
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("/v1/kv/k?index=%d&wait=10m", w.ModifyIndex), nil)
	if err != nil {
		t.Fatal(err)
	}
	before := ta.node.resets()
	done := make(chan struct{})
	go func() {
		defer close(done)
		ta.api.ServeHTTP(httptest.NewRecorder(), req)
	}()
	waitBlocked(t, ta.node, before)
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("handler still blocked 5s after cancellation")
	}
}

// TestBlockingWakesOnRestore: a snapshot install replaces the whole state;
// a watcher blocked on the old state wakes and sees the new one.
func TestBlockingWakesOnRestore(t *testing.T) {
	t.Parallel()
	for _, path := range []string{"k", "k?stale", "?prefix", "gone"} {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			ta := newTestAPI(t, "n1", nil)
			g := ta.putKV(t, "gone", "x")
			w := ta.putKV(t, "k", "v1")

			// The snapshot continues the same log: "gone" deleted at 3,
			// then k rewritten up to index 50.
			other := fsm.New()
			apply := func(i uint64, c fsm.Command) { other.Apply(&raft.Log{Index: i, Term: 1, Data: c.Encode()}) }
			apply(1, fsmCmd(fsm.KVPut{Key: "gone", Value: []byte("x")}))
			apply(2, fsmCmd(fsm.KVPut{Key: "k", Value: []byte("v1")}))
			apply(3, fsmCmd(fsm.KVDelete{Key: "gone"}))
			for i := uint64(4); i <= 50; i++ {
				apply(i, fsmCmd(fsm.KVPut{Key: "k", Value: []byte("restored")}))
			}
			idx := w.ModifyIndex
			if path == "gone" {
				idx = g.ModifyIndex
			}

			sep := "?"
			if strings.Contains(path, "?") {
				sep = "&"
			}
			before := ta.node.resets()
			ch := ta.async(t, "GET", fmt.Sprintf("/v1/kv/%s%sindex=%d&wait=30s", path, sep, idx))
			waitBlocked(t, ta.node, before)
			mustNotReturn(t, ch)
			ta.node.restore(t, other.State())
			r := recv(t, ch, 10*time.Second)
			switch path {
			case "gone":
				wantError(t, r, http.StatusNotFound, api.CodeKeyNotFound)
				if indexHeader(t, r) != 3 {
					t.Fatalf("after restore: index %d, want the delete's 3", indexHeader(t, r))
				}
			case "?prefix":
				var list []api.KV
				wantJSON(t, r, &list)
				if len(list) != 1 || string(list[0].Value) != "restored" || list[0].ModifyIndex != 50 {
					t.Fatalf("after restore: %+v", list)
				}
			default:
				if kv := decodeKV(t, r); string(kv.Value) != "restored" || kv.ModifyIndex != 50 || kv.Version != 48 {
					t.Fatalf("after restore: %+v", kv)
				}
			}
		})
	}
}

// TestBlockingManyWatchers: one write wakes every watcher of the key.
func TestBlockingManyWatchers(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	w := ta.putKV(t, "k", "v1")
	const n = 20
	before := ta.node.resets()
	chans := make([]<-chan response, n)
	for i := range chans {
		chans[i] = ta.async(t, "GET", fmt.Sprintf("/v1/kv/k?index=%d&wait=30s", w.ModifyIndex))
	}
	eventually(t, 5*time.Second, "all watchers to block", func() bool { return ta.node.resets() >= before+n })
	ta.node.put(t, "k", "v2")
	for _, ch := range chans {
		if kv := decodeKV(t, recv(t, ch, 10*time.Second)); string(kv.Value) != "v2" {
			t.Fatalf("watcher woke with %+v", kv)
		}
	}
}

// TestBlockingStopping: closing Options.Stopping makes blocked queries
// answer at once with what they have, and later ones not block.
func TestBlockingStopping(t *testing.T) {
	t.Parallel()
	stopping := make(chan struct{})
	ta := newTestAPI(t, "n1", &httpapi.Options{Stopping: stopping})
	w := ta.putKV(t, "k", "v1")
	before := ta.node.resets()
	ch := ta.async(t, "GET", fmt.Sprintf("/v1/kv/k?index=%d&wait=10m", w.ModifyIndex))
	chp := ta.async(t, "GET", fmt.Sprintf("/v1/kv/?prefix&stale&index=%d&wait=10m", w.ModifyIndex))
	eventually(t, 5*time.Second, "both queries to block", func() bool { return ta.node.resets() >= before+2 })
	mustNotReturn(t, ch)
	close(stopping)
	r := recv(t, ch, 5*time.Second)
	if kv := decodeKV(t, r); string(kv.Value) != "v1" || indexHeader(t, r) != w.ModifyIndex {
		t.Fatalf("stopping: %+v", kv)
	}
	var list []api.KV
	wantJSON(t, recv(t, chp, 5*time.Second), &list)
	if len(list) != 1 {
		t.Fatalf("stopping prefix: %+v", list)
	}
	start := time.Now()
	if kv, _ := ta.getKV(t, fmt.Sprintf("k?index=%d&wait=10m", w.ModifyIndex)); string(kv.Value) != "v1" {
		t.Fatalf("after stopping: %+v", kv)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("blocked %s after stopping", d)
	}
}
