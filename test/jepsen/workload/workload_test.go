package workload

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coordd/coordd/internal/testcluster"
	"github.com/coordd/coordd/test/jepsen/check"
	"github.com/coordd/coordd/test/jepsen/history"
)

// runWorkload runs w for d against a fresh in-process 3-node cluster
// without faults, reads the final state and checks the history.
func runWorkload(t *testing.T, w Workload, d time.Duration) ([]history.Op, []check.Result) {
	t.Helper()
	env := newEnv(t, w)
	return runRound(t, w, env, d)
}

// newEnv starts a fresh in-process 3-node cluster and a recorder.
func newEnv(t *testing.T, w Workload) Env {
	t.Helper()
	c := testcluster.New(t, 3)
	var nodes []string
	for _, n := range c.Nodes {
		nodes = append(nodes, n.URL())
	}
	rec, err := history.NewRecorder(filepath.Join(t.TempDir(), "history.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rec.Close() })
	env := Env{Nodes: nodes, Rec: rec, Seed: uint64(time.Now().UnixNano()), Logf: t.Logf}
	t.Logf("%s: seed %d", w.Name(), env.Seed)
	return env
}

// runRound runs w for d, reads the final state and checks the whole
// history so far.
func runRound(t *testing.T, w Workload, env Env, d time.Duration) ([]history.Op, []check.Result) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	start := time.Now()
	if err := w.Run(ctx, env); err != nil {
		t.Fatalf("Run: %v", err)
	}
	ran := time.Since(start)
	// Every loop ends within its request timeouts (and a paused lock
	// holder's pause) of the end of the run.
	if ran > d+10*time.Second {
		t.Errorf("Run took %s for a run of %s", ran, d)
	}
	final, err := w.Final(context.Background(), env)
	if err != nil {
		t.Fatalf("Final: %v", err)
	}
	ops := env.Rec.Ops()
	for _, op := range ops {
		if err := op.Validate(); err != nil {
			t.Errorf("invalid op: %v", err)
		}
	}
	results := w.Check(ops, final, filepath.Join(t.TempDir(), "check"))
	if len(results) == 0 {
		t.Fatal("no check results")
	}
	t.Logf("%s: %d ops in %s (%.0f/s): %s", w.Name(), len(ops), ran.Round(time.Millisecond), float64(len(ops))/ran.Seconds(), countKinds(ops))
	for _, r := range results {
		t.Logf("%s", r)
	}
	return ops, results
}

// countKinds summarises a history: ops per kind and status.
func countKinds(ops []history.Op) string {
	type ks struct {
		k history.Kind
		s history.Status
	}
	counts := map[ks]int{}
	var order []ks
	for _, op := range ops {
		key := ks{op.Kind, op.Status}
		if op.Error != "" {
			key.s += history.Status("(" + op.Error + ")")
		}
		if counts[key] == 0 {
			order = append(order, key)
		}
		counts[key]++
	}
	var parts []string
	for _, k := range order {
		parts = append(parts, string(k.k)+"/"+string(k.s)+"="+itoa(counts[k]))
	}
	return strings.Join(parts, " ")
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

func wantAllValid(t *testing.T, results []check.Result) {
	t.Helper()
	for _, r := range results {
		if !r.Valid {
			t.Errorf("%s", r)
		}
	}
}

// count returns how many ops match.
func count(ops []history.Op, f func(history.Op) bool) int {
	n := 0
	for _, op := range ops {
		if f(op) {
			n++
		}
	}
	return n
}

func Test_Register_WithoutFaults_IsLinearizableAndDurable(t *testing.T) {
	t.Parallel()
	ops, results := runWorkload(t, Register(3), 5*time.Second)
	wantAllValid(t, results)
	for _, k := range []history.Kind{history.KindGet, history.KindPut, history.KindCAS, history.KindDelete} {
		if n := count(ops, func(op history.Op) bool { return op.Kind == k && op.Status == history.StatusOK }); n == 0 {
			t.Errorf("no ok %s op", k)
		}
	}
	if n := count(ops, func(op history.Op) bool { return op.Kind == history.KindCAS && op.Error == "cas_conflict" }); n == 0 {
		t.Error("no cas_conflict: the cas ops never raced")
	}
}

func Test_FencedLock_Fenced_WithoutFaults_IsValid(t *testing.T) {
	t.Parallel()
	ops, results := runWorkload(t, FencedLock(true), 10*time.Second)
	wantAllValid(t, results)
	if n := count(ops, func(op history.Op) bool {
		return op.Kind == history.KindResourceWrite && op.Status == history.StatusOK
	}); n < 10 {
		t.Errorf("only %d accepted writes", n)
	}
}

// The unfenced variant must be caught: a holder paused past its lease
// writes over its successor's update. About one iteration in ten pauses
// longer than the TTL, so a round of 8 s almost always shows it; a round
// that does not is followed by another, on the same resource and history.
func Test_FencedLock_Unfenced_IsCaught(t *testing.T) {
	t.Parallel()
	w := FencedLock(false)
	env := newEnv(t, w)
	var fl check.Result
	for round := 1; round <= 3; round++ {
		_, results := runRound(t, w, env, 8*time.Second)
		for _, r := range results {
			if r.Checker == "fenced-lock" {
				fl = r
			}
		}
		if !fl.Valid {
			break
		}
		t.Logf("round %d: not caught yet", round)
	}
	if fl.Valid {
		t.Fatalf("the unfenced resource was not caught:\n%s", fl)
	}
	all := strings.Join(fl.Anomalies, "\n")
	for _, want := range []string{"critical sections of accepted writes overlap", "accepted write lost"} {
		if !strings.Contains(all, want) {
			t.Errorf("no anomaly says %q:\n%s", want, fl)
		}
	}
}

func Test_Election_WithoutFaults_IsValid(t *testing.T) {
	t.Parallel()
	ops, results := runWorkload(t, StrictLeaseDurability(Election()), 6*time.Second)
	wantAllValid(t, results)
	if n := count(ops, func(op history.Op) bool { return op.Kind == history.KindCampaign && op.Out.Leader }); n < 3 {
		t.Errorf("only %d campaigns led", n)
	}
	if n := count(ops, func(op history.Op) bool { return op.Kind == history.KindObserve && op.Out.Leader }); n < 3 {
		t.Errorf("only %d observations of a leader", n)
	}
}
