package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/internal/testcluster"
	"github.com/coordd/coordd/server"
)

// putRetry writes key=value with an Idempotency-Key, retrying while the
// cluster has no ready leader or the outcome is unknown (c.Call). It
// returns the answer.
func putRetry(t *testing.T, c *testcluster.Cluster, n *testcluster.Node, key, value string) *testcluster.Response {
	t.Helper()
	return keyed(c, http.MethodPut, n.URL()+"/v1/kv/"+key, value)
}

func getKV(t *testing.T, c *testcluster.Cluster, url string) (api.KV, *testcluster.Response) {
	t.Helper()
	r := c.Do(http.MethodGet, url, "")
	var kv api.KV
	if r.Status == http.StatusOK {
		r.JSON(t, &kv)
	}
	return kv, r
}

func Test_Cluster_WriteSentToFollower_IsAppliedAndReadableEverywhere(t *testing.T) {
	t.Parallel()
	c := testcluster.New(t, 3)
	f := c.Followers()
	r := putRetry(t, c, f[0], "greeting", "hello")
	if r.Status != http.StatusOK {
		t.Fatalf("PUT via follower: %d %s", r.Status, r.Body)
	}
	var wr api.KVWriteResult
	r.JSON(t, &wr)
	if wr.Version != 1 || wr.CreateIndex == 0 || wr.ModifyIndex != wr.CreateIndex {
		t.Fatalf("write result %+v", wr)
	}
	// A linearizable read through the other follower sees it at once.
	kv, r := getKV(t, c, f[1].URL()+"/v1/kv/greeting")
	if r.Status != http.StatusOK || string(kv.Value) != "hello" {
		t.Fatalf("GET via follower: %d %s", r.Status, r.Body)
	}
	if r.Header.Get("X-Coordd-Consistency") != "linearizable" {
		t.Fatalf("consistency header %q", r.Header.Get("X-Coordd-Consistency"))
	}
	// Every node applies it locally too (stale reads catch up).
	for _, n := range c.Nodes {
		testcluster.Poll(t, 5*time.Second, func() error {
			kv, r := getKV(t, c, n.URL()+"/v1/kv/greeting?stale")
			if r.Status != http.StatusOK || string(kv.Value) != "hello" {
				return fmt.Errorf("%s stale read: %d %s", n.ID, r.Status, r.Body)
			}
			return nil
		})
	}
}

func Test_Cluster_LeaderKilled_NewLeaderKeepsEveryAcknowledgedWrite(t *testing.T) {
	t.Parallel()
	c := testcluster.New(t, 3)
	old := c.Leader()

	// Writers keep writing through the followers while the leader dies.
	var (
		mu    sync.Mutex
		acked = map[string]string{}
		wg    sync.WaitGroup
		stop  = make(chan struct{})
	)
	for w, n := range c.Followers() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 400; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key, val := fmt.Sprintf("w%d-%d", w, i), strconv.Itoa(i)
				r, err := c.Try(http.MethodPut, n.URL()+"/v1/kv/"+key, val)
				if err == nil && r.Status == http.StatusOK {
					mu.Lock()
					acked[key] = val
					mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(200 * time.Millisecond)
	c.Kill(old)
	newLeader := c.Leader()
	if newLeader == old {
		t.Fatalf("leader did not change")
	}
	// Writes go on after the failover.
	r := putRetry(t, c, c.Running()[0], "after-failover", "yes")
	if r.Status != http.StatusOK {
		t.Fatalf("write after failover: %d %s", r.Status, r.Body)
	}
	close(stop)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	if len(acked) == 0 {
		t.Fatal("no write was acknowledged")
	}
	for _, n := range c.Running() {
		for k, v := range acked {
			kv, r := getKV(t, c, n.URL()+"/v1/kv/"+k)
			if r.Status != http.StatusOK || string(kv.Value) != v {
				t.Fatalf("acknowledged %s=%s lost on %s: %d %s", k, v, n.ID, r.Status, r.Body)
			}
		}
	}

	// The old leader comes back as a follower and catches up.
	c.Restart(old)
	c.WaitReady(old)
	testcluster.Poll(t, 10*time.Second, func() error {
		kv, r := getKV(t, c, old.URL()+"/v1/kv/after-failover?stale")
		if r.Status != http.StatusOK || string(kv.Value) != "yes" {
			return fmt.Errorf("restarted node: %d %s", r.Status, r.Body)
		}
		return nil
	})
}

func Test_Cluster_RestartedNodes_RecoverStateFromDataDir(t *testing.T) {
	t.Parallel()
	// A low threshold makes Raft snapshot and compact, so recovery reads a
	// snapshot plus the log behind it.
	c := testcluster.New(t, 3, func(cfg *server.Config) {
		cfg.SnapshotThreshold = 16
		cfg.TrailingLogs = 8
		cfg.SnapshotThresholdCheck = 100 * time.Millisecond
	})
	l := c.Leader()
	for i := range 60 {
		if r := putRetry(t, c, l, fmt.Sprintf("k%02d", i), strconv.Itoa(i)); r.Status != http.StatusOK {
			t.Fatalf("put: %d %s", r.Status, r.Body)
		}
	}
	if r := c.Do(http.MethodDelete, l.URL()+"/v1/kv/k00", ""); r.Status != http.StatusOK {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	// Let the periodic snapshot check run on every node.
	time.Sleep(500 * time.Millisecond)

	// One node, then the whole cluster.
	f := c.Followers()[0]
	c.Stop(f)
	c.Restart(f)
	c.WaitReady(f)
	for _, n := range c.Nodes {
		c.Stop(n)
	}
	for _, n := range c.Nodes {
		c.Restart(n)
	}
	c.WaitReady(c.Nodes...)
	for _, n := range c.Nodes {
		var list []api.KV
		testcluster.Poll(t, 10*time.Second, func() error {
			r := c.Do(http.MethodGet, n.URL()+"/v1/kv/k?prefix&stale", "")
			if r.Status != http.StatusOK {
				return fmt.Errorf("%s: %d %s", n.ID, r.Status, r.Body)
			}
			r.JSON(t, &list)
			// A stale read may still show the state of the snapshot it
			// restarted from (k00..k58 is 59 keys too): wait for the end.
			if len(list) != 59 {
				return fmt.Errorf("%s has %d keys, want 59", n.ID, len(list))
			}
			if list[0].Key != "k01" || string(list[0].Value) != "1" || list[58].Key != "k59" {
				return fmt.Errorf("%s has %s ... %s, want k01 ... k59", n.ID, list[0].Key, list[58].Key)
			}
			return nil
		})
	}
}

// Test_Cluster_CASConflict_ReportsCurrentIndex: each write carries an
// Idempotency-Key, so an outcome_unknown (a leader that lost its quorum
// under load) is retried without ever applying a compare-and-set twice.
func Test_Cluster_CASConflict_ReportsCurrentIndex(t *testing.T) {
	t.Parallel()
	c := testcluster.New(t, 3)
	f := c.Followers()[0]
	r := putRetry(t, c, f, "cfg", "v1")
	var wr api.KVWriteResult
	r.JSON(t, &wr)

	// Create-only on an existing key.
	r = keyed(c, http.MethodPut, f.URL()+"/v1/kv/cfg?cas=0", "v2")
	if r.Status != http.StatusConflict || r.ErrorCode() != api.CodeCASConflict {
		t.Fatalf("create-only on existing key: %d %s", r.Status, r.Body)
	}
	var eb api.ErrorBody
	r.JSON(t, &eb)
	if eb.Error.CurrentIndex == nil || *eb.Error.CurrentIndex != wr.ModifyIndex {
		t.Fatalf("current_index = %v, want %d", eb.Error.CurrentIndex, wr.ModifyIndex)
	}
	// CAS on a stale index, then on the right one.
	if r = keyed(c, http.MethodPut, f.URL()+"/v1/kv/cfg?cas="+strconv.FormatUint(wr.ModifyIndex-1, 10), "v2"); r.Status != http.StatusConflict {
		t.Fatalf("stale cas: %d %s", r.Status, r.Body)
	}
	if r = keyed(c, http.MethodPut, f.URL()+"/v1/kv/cfg?cas="+strconv.FormatUint(wr.ModifyIndex, 10), "v2"); r.Status != http.StatusOK {
		t.Fatalf("cas: %d %s", r.Status, r.Body)
	}
	// CAS delete with the old index fails, and the value is untouched.
	if r = keyed(c, http.MethodDelete, f.URL()+"/v1/kv/cfg?cas="+strconv.FormatUint(wr.ModifyIndex, 10), ""); r.Status != http.StatusConflict {
		t.Fatalf("stale cas delete: %d %s", r.Status, r.Body)
	}
	if kv, _ := getKV(t, c, f.URL()+"/v1/kv/cfg"); string(kv.Value) != "v2" || kv.Version != 2 {
		t.Fatalf("after CAS: %+v", kv)
	}
	// Create-only on a missing key succeeds once.
	if r = keyed(c, http.MethodPut, f.URL()+"/v1/kv/fresh?cas=0", "x"); r.Status != http.StatusOK {
		t.Fatalf("create-only: %d %s", r.Status, r.Body)
	}
}

// keyed sends a write with a fresh Idempotency-Key through c.Call.
func keyed(c *testcluster.Cluster, method, url, body string) *testcluster.Response {
	return c.Call(method, url, body, api.HeaderIdempotencyKey, fmt.Sprintf("test-%d", keySeq.Add(1)))
}

var keySeq atomic.Uint64

func Test_Cluster_BlockingRead_WakesOnChangeAndTimesOut(t *testing.T) {
	t.Parallel()
	c := testcluster.New(t, 3)
	f := c.Followers()
	r := putRetry(t, c, f[0], "watched", "v1")
	var wr api.KVWriteResult
	r.JSON(t, &wr)

	type result struct {
		kv  api.KV
		r   *testcluster.Response
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := c.Try(http.MethodGet, fmt.Sprintf("%s/v1/kv/watched?index=%d&wait=20s", f[1].URL(), wr.ModifyIndex), "")
		res := result{r: r, err: err}
		if err == nil && r.Status == http.StatusOK {
			res.err = jsonErr(r, &res.kv)
		}
		done <- res
	}()
	// The watcher is blocked until the write; write until it wakes.
	select {
	case res := <-done:
		t.Fatalf("blocking read returned before any change: %+v", res)
	case <-time.After(300 * time.Millisecond):
	}
	putRetry(t, c, f[0], "watched", "v2")
	select {
	case res := <-done:
		if res.err != nil || string(res.kv.Value) != "v2" {
			t.Fatalf("woken read: %+v", res)
		}
		if got := res.r.Header.Get("X-Coordd-Index"); got != strconv.FormatUint(res.kv.ModifyIndex, 10) {
			t.Fatalf("X-Coordd-Index %s, want %d", got, res.kv.ModifyIndex)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("blocking read did not wake on change")
	}

	// With nothing changing it answers after the wait, with the same index.
	start := time.Now()
	kv, r := getKV(t, c, fmt.Sprintf("%s/v1/kv/watched?stale&index=%d&wait=300ms", f[1].URL(), kv2(t, c, f[1]).ModifyIndex))
	if r.Status != http.StatusOK || string(kv.Value) != "v2" {
		t.Fatalf("timed-out read: %d %s", r.Status, r.Body)
	}
	if el := time.Since(start); el < 300*time.Millisecond {
		t.Fatalf("blocking read returned after %s, before its wait", el)
	}
}

func kv2(t *testing.T, c *testcluster.Cluster, n *testcluster.Node) api.KV {
	kv, r := getKV(t, c, n.URL()+"/v1/kv/watched")
	if r.Status != http.StatusOK {
		t.Fatalf("get: %d %s", r.Status, r.Body)
	}
	return kv
}

func jsonErr(r *testcluster.Response, v any) error {
	return jsonUnmarshal(r.Body, v)
}

func Test_Cluster_MembershipJoinTransferRemove(t *testing.T) {
	t.Parallel()
	c := testcluster.New(t, 3)
	l := c.Leader()
	n4 := c.AddJoining(c.Followers()[0], false)
	c.WaitReady(n4)
	var members []api.Member
	testcluster.Poll(t, 10*time.Second, func() error {
		r := c.Do(http.MethodGet, l.URL()+"/v1/cluster/members", "")
		r.JSON(t, &members)
		for _, m := range members {
			if m.ID == n4.ID && m.Voter && m.HTTPAddr == n4.HTTPAddr {
				return nil
			}
		}
		return fmt.Errorf("n4 not a voter with its http address yet: %+v", members)
	})
	// The new node serves reads and forwards writes.
	if r := putRetry(t, c, n4, "via-n4", "ok"); r.Status != http.StatusOK {
		t.Fatalf("write via joined node: %d %s", r.Status, r.Body)
	}

	// Hand leadership to the new node.
	r := c.Do(http.MethodPost, c.Followers()[0].URL()+"/v1/cluster/transfer-leadership", `{"id":"n4"}`)
	if r.Status != http.StatusOK {
		t.Fatalf("transfer: %d %s", r.Status, r.Body)
	}
	if got := c.Leader(); got != n4 {
		t.Fatalf("leader after transfer is %s, want n4", got.ID)
	}

	// Remove the old leader; the cluster goes on with three.
	r = c.Do(http.MethodDelete, l.URL()+"/v1/cluster/members/"+l.ID, "")
	if r.Status != http.StatusOK {
		t.Fatalf("remove: %d %s", r.Status, r.Body)
	}
	c.Stop(l)
	r = c.Do(http.MethodGet, n4.URL()+"/v1/cluster/members", "")
	r.JSON(t, &members)
	if len(members) != 3 {
		t.Fatalf("members after remove: %+v", members)
	}
	if r := c.Do(http.MethodDelete, n4.URL()+"/v1/cluster/members/nope", ""); r.Status != http.StatusNotFound {
		t.Fatalf("remove unknown: %d %s", r.Status, r.Body)
	}
}

func Test_Cluster_StatusAndProbes(t *testing.T) {
	t.Parallel()
	c := testcluster.New(t, 3)
	l := c.Leader()
	for _, n := range c.Nodes {
		var st api.Status
		c.Do(http.MethodGet, n.URL()+"/v1/status", "").JSON(t, &st)
		if st.ID != n.ID || st.Leader == nil || st.Leader.ID != l.ID || len(st.Members) != 3 || !st.Ready {
			t.Fatalf("status of %s: %+v", n.ID, st)
		}
		if r := c.Do(http.MethodGet, n.URL()+"/healthz", ""); r.Status != http.StatusOK {
			t.Fatalf("healthz: %d", r.Status)
		}
	}
	r := c.Do(http.MethodGet, l.URL()+"/metrics", "")
	for _, want := range []string{"coordd_raft_is_leader 1", "coordd_http_requests_total"} {
		if !contains(string(r.Body), want) {
			t.Fatalf("/metrics lacks %q", want)
		}
	}

	// With two of three nodes gone the survivor has no leader: not ready,
	// and writes get 503 with Retry-After.
	f := c.Followers()
	c.Kill(l)
	c.Kill(f[0])
	testcluster.Poll(t, 10*time.Second, func() error {
		r := c.Do(http.MethodGet, f[1].URL()+"/readyz", "")
		if r.Status != http.StatusServiceUnavailable {
			return fmt.Errorf("readyz %d", r.Status)
		}
		return nil
	})
	r = c.Do(http.MethodPut, f[1].URL()+"/v1/kv/x", "y")
	if r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" {
		t.Fatalf("write without quorum: %d %v %s", r.Status, r.Header, r.Body)
	}
	// A stale read still answers, and says it has no leader.
	r = c.Do(http.MethodGet, f[1].URL()+"/v1/kv/?prefix&stale", "")
	if r.Status != http.StatusOK || r.Header.Get("X-Coordd-Known-Leader") != "false" {
		t.Fatalf("stale read without quorum: %d %v", r.Status, r.Header)
	}
}

func Test_Cluster_NonVoterJoins_ServesStaleReadsWithoutAVote(t *testing.T) {
	t.Parallel()
	c := testcluster.New(t, 3)
	l := c.Leader()
	nv := c.AddJoining(l, true)
	c.WaitReady(nv)
	putRetry(t, c, l, "seen-by-nonvoter", "yes")
	testcluster.Poll(t, 10*time.Second, func() error {
		kv, r := getKV(t, c, nv.URL()+"/v1/kv/seen-by-nonvoter?stale")
		if r.Status != http.StatusOK || string(kv.Value) != "yes" {
			return fmt.Errorf("non-voter: %d %s", r.Status, r.Body)
		}
		return nil
	})
	var members []api.Member
	c.Do(http.MethodGet, l.URL()+"/v1/cluster/members", "").JSON(t, &members)
	for _, m := range members {
		if m.ID == nv.ID && m.Voter {
			t.Fatalf("non-voter joined as voter: %+v", m)
		}
	}
	// Leadership cannot be handed to a non-voter.
	r := c.Do(http.MethodPost, l.URL()+"/v1/cluster/transfer-leadership", `{"id":"`+nv.ID+`"}`)
	if r.Status != http.StatusBadRequest {
		t.Fatalf("transfer to non-voter: %d %s", r.Status, r.Body)
	}
}

// A leader that has applied no command in its term (only Raft's no-op and
// its own barrier, which never reach FSM.Apply) must still serve
// linearizable reads. Found by the jepsen register scenario: its clients
// had stopped writing when the last election happened, and every final read
// on the new leader waited for an applied index that no command would bring.
func Test_Cluster_NewLeaderWithoutWrites_ServesLinearizableReads(t *testing.T) {
	t.Parallel()
	c := testcluster.New(t, 3)
	l := c.Leader()
	if r := putRetry(t, c, l, "quiet", "v1"); r.Status != http.StatusOK {
		t.Fatalf("put: %d %s", r.Status, r.Body)
	}
	if r := c.Do(http.MethodPost, l.URL()+"/v1/cluster/transfer-leadership", ""); r.Status != http.StatusOK {
		t.Fatalf("transfer: %d %s", r.Status, r.Body)
	}
	nl := c.Leader()
	if nl == l {
		t.Fatalf("leadership stayed on %s", l.ID)
	}
	for _, n := range c.Running() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.URL()+"/v1/kv/quiet", nil)
		resp, err := c.HTTP.Do(req)
		if err != nil {
			cancel()
			t.Fatalf("linearizable read via %s (leader %s, no write since it was elected): %v", n.ID, nl.ID, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"v1"`) {
			t.Fatalf("read via %s: %d %s", n.ID, resp.StatusCode, b)
		}
	}
}

// lockedBuffer is a log sink safe for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// hashicorp/raft's pipelined replication can deadlock: when its decoder
// quits (a response with a newer term, or a refused append) while a send
// is in flight, the sender and the response reader wait on each other
// forever (unbuffered channels at the default MaxRPCsInFlight). Replication
// to that follower stops, its heartbeats go on, and Raft's shutdown waits
// forever. make jepsen saw exactly that signature: a leader paused with
// SIGSTOP, continued, deposed by a newer term; its pipeline to one peer never
// logged its abort, that peer's heartbeat goroutine outlived the leadership,
// and the node never exited after SIGTERM. coordd replicates without
// pipelining.
func Test_Cluster_ReplicationIsNotPipelined(t *testing.T) {
	t.Parallel()
	var logs lockedBuffer
	c := testcluster.New(t, 3, func(cfg *server.Config) {
		cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: cfg.NodeID, Level: hclog.Debug, Output: &logs})
	})
	l := c.Leader()
	for i := range 20 {
		if r := putRetry(t, c, l, "p"+strconv.Itoa(i), "v"); r.Status != http.StatusOK {
			t.Fatalf("put: %d %s", r.Status, r.Body)
		}
	}
	if s := logs.String(); strings.Contains(s, "pipelining replication") {
		t.Fatalf("raft replicates through a pipeline:\n%s", s)
	}
}

// Test_Cluster_StopWithCluster_AFollowerAloneIsBounded: ShutdownWithCluster
// on a follower whose leader is not stopping still returns (after about a
// second of waiting for the leader to go quiet), and the others go on; then
// the rest stop with it at once. (That a whole cluster so stopped logs no
// error and hands nothing over is checked with real processes in
// test/e2e/runcluster_test.go.)
func Test_Cluster_StopWithCluster_AFollowerAloneIsBounded(t *testing.T) {
	c := testcluster.New(t, 3)
	putRetry(t, c, c.Leader(), "before", "x")
	f := c.Followers()[0]
	start := time.Now()
	if err := f.Server().ShutdownWithCluster(context.Background()); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("a follower whose leader runs on took %s to stop (the wait is bounded by 1 s)", took)
	}
	var rest []*testcluster.Node
	for _, n := range c.Nodes {
		if n != f {
			rest = append(rest, n)
		}
	}
	putRetry(t, c, rest[0], "after", "y")
	var wg sync.WaitGroup
	for _, n := range rest {
		wg.Go(func() {
			if err := n.Server().ShutdownWithCluster(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}
