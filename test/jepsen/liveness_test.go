package jepsen_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/client"
	"github.com/coordd/coordd/test/jepsen/harness"
	"github.com/coordd/coordd/test/jepsen/history"
	"github.com/coordd/coordd/test/jepsen/workload"
)

// Liveness scenarios (issue 15): a stalled, isolated or killed leader must
// not stall the rest of the cluster.

// holdAtLeast makes the schedule hold every fault longer than d (the plan
// holds each fault longer than the workload's lease TTL): a fault shorter
// than the answer bound could not show a request held by it.
type holdAtLeast struct {
	workload.Workload
	d time.Duration
}

func (h holdAtLeast) LeaseTTL() time.Duration { return max(h.d, h.Workload.LeaseTTL()) }

// Every get, put, cas and delete sent to a healthy node while a quorum is
// healthy is answered within harness.AnswerBoundDefault, through pauses,
// isolations and kills of the leader held for 3 s or more (twice the
// bound).
func TestJepsen_AnswerTime_LeaderFaults(t *testing.T) {
	run(t, scenario{workload: holdAtLeast{workload.Register(4), 2 * harness.AnswerBoundDefault}, rounds: 3,
		faults:      []harness.Fault{harness.PauseLeader, harness.IsolateLeader, harness.KillLeader},
		answerBound: harness.AnswerBoundDefault,
		answerKinds: []history.Kind{history.KindGet, history.KindPut, history.KindCAS, history.KindDelete}})
}

// Go client Sessions keep their leases through pauses, isolations and
// kills of the leader: the quorum stays healthy and the holders keep
// renewing, so no session may be lost. The quick set uses TTL 3 s: with
// the race detector on two shared cores at load 20–30, a keepalive round
// trip alone sometimes takes longer than the 0.6 s a TTL of 1 s leaves
// between keepalives, faults or not. -long adds TTL 1 s sessions; make
// bench-sessions measures both TTLs without the race detector.
func TestJepsen_Sessions_LeaderFaults(t *testing.T) {
	ttls := []time.Duration{3 * time.Second}
	if *longFlag {
		ttls = append(ttls, time.Second)
	}
	run(t, scenario{workload: workload.Sessions(8, ttls...), rounds: 3,
		faults: []harness.Fault{harness.PauseLeader, harness.IsolateLeader, harness.KillLeader}})
}

// A leader stopped past a lease's TTL, while the lease is kept alive
// through its successor, must not acknowledge a keepalive itself when it
// resumes: keepalives already waiting in its socket when it resumes, and
// those sent right after, get an error or an answer forwarded to the new
// leader, never a 200 of its own (etcd-io/etcd#15247). A node confirms
// leadership with a quorum round before it acknowledges a keepalive.
func TestJepsen_ResumedOldLeader_NeverAcknowledgesAKeepalive(t *testing.T) {
	if testing.Short() {
		t.Skip("real coordd processes: not in -short mode")
	}
	dir := filepath.Join(outRoot, "ResumedOldLeader")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cl, err := harness.NewCluster(harness.ClusterConfig{Bin: coorddBin, Dir: dir, Nodes: 3,
		Rand: rand.New(rand.NewPCG(seedFor(t.Name()), 15)), Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		cl.Kill()
		cl.Net.Close()
		if !t.Failed() && !keepAll {
			os.RemoveAll(dir)
		}
	}()
	if err := cl.Start(ctx, time.Minute); err != nil {
		t.Fatal(err)
	}
	rounds := 2
	if *longFlag {
		rounds = 6
	}
	for r := range rounds {
		resumedOldLeaderRound(ctx, t, cl, r+1)
	}
}

// resumedOldLeaderRound is one stop-and-resume of the leader of
// TestJepsen_ResumedOldLeader_NeverAcknowledgesAKeepalive.
func resumedOldLeaderRound(ctx context.Context, t *testing.T, cl *harness.Cluster, round int) {
	leaderID, err := cl.WaitLeader(ctx, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	old := cl.Node(leaderID)
	var others []string
	for _, n := range cl.Nodes {
		if n != old {
			others = append(others, n.URL())
		}
	}
	// The session's client knows only the two other nodes.
	c, err := client.New(ctx, client.Config{Endpoints: others})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// TTL 3 s: with the race detector on two loaded cores a TTL of 1 s can
	// be lost to a slow keepalive, faults or not (this test is about the
	// resumed leader's answers).
	const ttl = 3 * time.Second
	s, err := client.NewSession(ctx, c, ttl)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(ttl / 2)
	if err := old.Pause(); err != nil {
		t.Fatal(err)
	}
	paused := true
	defer func() {
		if paused {
			_ = old.Resume()
		}
	}()
	time.Sleep(ttl + time.Second) // past the TTL: only the new leader keeps the lease alive
	if err := s.Err(); err != nil {
		t.Fatalf("the session was lost while the old leader was stopped and a quorum was healthy: %v", err)
	}

	type answer struct {
		status          int
		servedBy, fwdBy string
		body            string
		err             error
		after           time.Duration
	}
	var (
		mu      sync.Mutex
		answers []answer
		wg      sync.WaitGroup
	)
	hc := &http.Client{Timeout: 5 * time.Second}
	var resumed time.Time
	ask := func() {
		defer wg.Done()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("%s/v1/leases/%d/keepalive", old.URL(), s.Lease()), nil)
		resp, err := hc.Do(req)
		a := answer{err: err}
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			a.status, a.body = resp.StatusCode, string(b)
			a.servedBy, a.fwdBy = resp.Header.Get(api.HeaderServedBy), resp.Header.Get(api.HeaderForwardedBy)
		}
		mu.Lock()
		a.after = time.Since(resumed)
		answers = append(answers, a)
		mu.Unlock()
	}
	// Keepalives waiting in the stopped node's socket: it reads them the
	// moment it resumes, still believing it leads.
	for range 4 {
		wg.Add(1)
		go ask()
	}
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	resumed = time.Now()
	mu.Unlock()
	if err := old.Resume(); err != nil {
		t.Fatal(err)
	}
	paused = false
	for range 20 { // and a stream right after
		wg.Add(1)
		go ask()
		time.Sleep(10 * time.Millisecond)
	}
	wg.Wait()
	for _, a := range answers {
		t.Logf("round %d: keepalive to the resumed old leader %s, answered %s after it resumed: %d served-by=%q forwarded-by=%q %v %s",
			round, old.ID, a.after.Round(time.Millisecond), a.status, a.servedBy, a.fwdBy, a.err, a.body)
		if a.status/100 == 2 && a.fwdBy == "" {
			t.Errorf("the resumed, deposed leader %s acknowledged a keepalive itself (served by %q, %s after it resumed): %s", old.ID, a.servedBy, a.after.Round(time.Millisecond), a.body)
		}
	}
	if err := s.Err(); err != nil {
		t.Errorf("session lost: %v", err)
	}
}
