package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coordd/coordd/test/jepsen/check"
	"github.com/coordd/coordd/test/jepsen/history"
	"github.com/coordd/coordd/test/jepsen/workload"
)

func TestNewPlan_SameSeedSamePlan(t *testing.T) {
	faults := []Fault{KillLeader, Split, ClockJump, Slow, Lossy, ClockRate}
	a := NewPlan(42, 3, faults, 20, 2*time.Second)
	b := NewPlan(42, 3, faults, 20, 2*time.Second)
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if string(ja) != string(jb) {
		t.Fatalf("same seed, different plans:\n%s\n%s", ja, jb)
	}
	c := NewPlan(43, 3, faults, 20, 2*time.Second)
	if jc, _ := json.Marshal(c); string(jc) == string(ja) {
		t.Fatal("different seeds, same plan")
	}
	var back Plan
	if err := json.Unmarshal(ja, &back); err != nil {
		t.Fatal(err)
	}
	if jback, _ := json.Marshal(back); string(jback) != string(ja) {
		t.Fatalf("plan does not survive JSON:\n%s\n%s", ja, jback)
	}
}

func TestNewPlan_EveryFaultBeforeAnyRepeats_HeldLongerThanTTL(t *testing.T) {
	faults := []Fault{KillLeader, Split, ClockJump, Slow, Lossy, ClockRate, PauseLeader}
	ttl := 1500 * time.Millisecond
	p := NewPlan(7, 3, faults, 2*len(faults), ttl)
	for i := 0; i < len(p.Rounds); i += len(faults) {
		var got []Fault
		for _, r := range p.Rounds[i : i+len(faults)] {
			got = append(got, r.Fault)
		}
		slices.Sort(got)
		want := slices.Clone(faults)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("rounds %d..%d use %v, want each of %v once", i+1, i+len(faults), got, want)
		}
	}
	for _, r := range p.Rounds {
		if time.Duration(r.Hold) <= ttl || time.Duration(r.Hold) <= ElectionTimeout {
			t.Errorf("round %d held %s: not longer than the TTL %s and the election timeout", r.N, time.Duration(r.Hold), ttl)
		}
		switch r.Fault {
		case Lossy:
			if r.Loss <= 0 || r.Loss >= 0.1 {
				t.Errorf("round %d: loss %g", r.N, r.Loss)
			}
		case ClockJump:
			if r.Jump <= 0 {
				t.Errorf("round %d: no jump", r.N)
			}
		case ClockRate:
			if r.Rate <= 1 {
				t.Errorf("round %d: rate %g", r.N, r.Rate)
			}
		case Slow:
			if r.Delay <= 0 {
				t.Errorf("round %d: no delay", r.N)
			}
		}
	}
	if !strings.Contains(p.String(), "round 14") {
		t.Errorf("plan text lacks round 14:\n%s", p)
	}
}

// reach returns, for each node, the nodes it can send to under cuts.
func reach(ids []string, cuts [][2]string) map[string][]string {
	out := map[string][]string{}
	for _, a := range ids {
		for _, b := range ids {
			if a != b && !slices.Contains(cuts, [2]string{a, b}) {
				out[a] = append(out[a], b)
			}
		}
	}
	return out
}

func TestRingCuts_FiveNodes_EachSeesADifferentMajority(t *testing.T) {
	ids := []string{"n1", "n2", "n3", "n4", "n5"}
	for pick := range 5 {
		cuts := RingCuts(ids, pick)
		r := reach(ids, cuts)
		seen := map[string]bool{}
		for _, a := range ids {
			if len(r[a]) != 2 {
				t.Fatalf("pick %d: %s reaches %v, want 2 nodes", pick, a, r[a])
			}
			for _, b := range r[a] {
				if !slices.Contains(r[b], a) {
					t.Fatalf("pick %d: %s reaches %s but not the reverse", pick, a, b)
				}
			}
			view := append(slices.Clone(r[a]), a)
			slices.Sort(view)
			key := strings.Join(view, ",")
			if seen[key] {
				t.Fatalf("pick %d: two nodes see the same majority %s", pick, key)
			}
			seen[key] = true
		}
	}
}

func TestRingCuts_ThreeNodes_OneWayRing(t *testing.T) {
	ids := []string{"n1", "n2", "n3"}
	r := reach(ids, RingCuts(ids, 1))
	hears := map[string]int{}
	for _, a := range ids {
		if len(r[a]) != 1 {
			t.Fatalf("%s sends to %v, want exactly one node", a, r[a])
		}
		hears[r[a][0]]++
	}
	for _, a := range ids {
		if hears[a] != 1 {
			t.Fatalf("%s hears %d nodes, want 1 (%v)", a, hears[a], r)
		}
	}
}

// toy is a minimal workload for the harness's own test: one process puts
// increasing values to a key and reads it back, through the nodes in turn,
// moving to a fresh key every toyPerKey ops (a write of unknown outcome may
// take effect at any later point: porcupine's search must stay small).
type toy struct{}

func (toy) Name() string            { return "toy" }
func (toy) LeaseTTL() time.Duration { return 300 * time.Millisecond }
func (toy) Final(ctx context.Context, env workload.Env) (history.FinalState, error) {
	return history.FinalState{}, nil
}

func (toy) Check(ops []history.Op, _ history.FinalState, dir string) []check.Result {
	return []check.Result{check.Linearizable(ops, check.LinearizableOptions{VisualizeDir: dir})}
}

const toyPerKey = 200

func (toy) Run(ctx context.Context, env workload.Env) error {
	hc := &http.Client{}
	for i := 0; i < 100000 && ctx.Err() == nil; i++ {
		node := env.Nodes[i%len(env.Nodes)]
		key := fmt.Sprintf("toy%d", i/toyPerKey)
		op := history.Op{Process: 0, Key: key, Node: node}
		rctx, cancel := context.WithTimeout(ctx, time.Second)
		var req *http.Request
		if i%2 == 0 {
			op.Kind, op.In.Value = history.KindPut, fmt.Sprint(i)
			req, _ = http.NewRequestWithContext(rctx, http.MethodPut, node+"/v1/kv/"+key, strings.NewReader(op.In.Value))
		} else {
			op.Kind = history.KindGet
			req, _ = http.NewRequestWithContext(rctx, http.MethodGet, node+"/v1/kv/"+key, nil)
		}
		op.Call = env.Rec.Now()
		resp, err := hc.Do(req)
		var body []byte
		if err == nil {
			body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		op.Return = env.Rec.Now()
		cancel()
		var out struct {
			Value       string `json:"value"`
			ModifyIndex uint64 `json:"modify_index"`
			Error       struct {
				Code string `json:"code"`
			} `json:"error"`
		}
		switch {
		case err != nil:
			op.Status, op.Error = history.StatusUnknown, "transport"
		case resp.StatusCode == http.StatusOK:
			_ = json.Unmarshal(body, &out)
			op.Status, op.Out.Index = history.StatusOK, out.ModifyIndex
			if op.Kind == history.KindGet {
				op.Out.Found, op.Out.Value = true, out.Value
			}
		case op.Kind == history.KindGet:
			op.Status, op.Error = history.StatusFail, fmt.Sprint(resp.StatusCode) // says nothing
			if resp.StatusCode == http.StatusNotFound {
				op.Error = history.CodeKeyNotFound
			}
		default:
			// 503s that say nothing was done (the node does not lead) are
			// failures; everything else may have happened. Calling them
			// all unknown would leave porcupine too many places to try.
			_ = json.Unmarshal(body, &out)
			op.Status, op.Error = history.StatusUnknown, fmt.Sprint(resp.StatusCode)
			switch out.Error.Code {
			case "not_leader", "no_leader", "leader_not_ready", "catching_up":
				op.Status, op.Error = history.StatusFail, out.Error.Code
			}
		}
		if op.Kind == history.KindGet && op.Status == history.StatusUnknown {
			op.Status = history.StatusFail
		}
		env.Rec.Record(op)
		if op.Status != history.StatusOK {
			time.Sleep(20 * time.Millisecond)
		}
	}
	return ctx.Err()
}

// The harness against real processes: a short run with a kill, a pause, a
// partition, a clock jump and a full disk. Every fault is injected and healed, the
// folder holds what it should, and the toy history is linearizable.
func TestRun_ToyWorkload_FaultsInjectedAndHealed(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real coordd processes")
	}
	bin, cleanup, err := Build(t.Context(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	dir := t.TempDir()
	if d := os.Getenv("COORDD_HARNESS_TEST_DIR"); d != "" {
		dir = d // kept, to read after a failure
	}
	faults := []Fault{KillLeader, PauseRandom, IsolateLeader, ClockJump, FullDisk}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	rep, err := Run(ctx, Scenario{Name: "toy", Workload: toy{}, Nodes: 3, Faults: faults, Rounds: len(faults),
		Seed: 1, Bin: bin, Dir: dir, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(rep.Summary())
	if !rep.HarnessValid() || !rep.WorkloadValid() {
		t.Fatalf("anomalies:\n%s", rep.Details())
	}
	for _, f := range faults[:4] {
		if rep.Faults[f] != 1 {
			t.Errorf("fault %s injected %d times, want 1", f, rep.Faults[f])
		}
	}
	ev, _ := os.ReadFile(filepath.Join(dir, FileNemesis))
	// The full disk needs tmpfs mounts (root): injected where they are
	// allowed, skipped with the reason elsewhere.
	if rep.Faults[FullDisk] == 1 {
		if len(rep.Skipped) != 0 {
			t.Errorf("skipped %q", rep.Skipped)
		}
		for _, want := range []string{"tmpfs of its own", "filled", "disk freed"} {
			if !strings.Contains(string(ev), want) {
				t.Errorf("nemesis.log lacks %q:\n%s", want, ev)
			}
		}
	} else if len(rep.Skipped) != 1 || !strings.Contains(rep.Skipped[0], "full disk") {
		t.Errorf("skipped %q, want the full disk only (mounts refused)", rep.Skipped)
	}
	if rep.Ops[history.StatusOK] < 20 {
		t.Errorf("only %d ok ops", rep.Ops[history.StatusOK])
	}
	for _, f := range []string{FileSeed, FilePlan, FileNemesis, FileHistory, FileFinal, FileResults,
		filepath.Join(DirNodes, "n1.log"), filepath.Join(DirNodes, "n3.log")} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
	ops, err := history.ReadFile(filepath.Join(dir, FileHistory))
	if err != nil || len(ops) != rep.TotalOps() {
		t.Errorf("history file: %d ops, %v; report says %d", len(ops), err, rep.TotalOps())
	}
	for _, want := range []string{"SIGKILL", "restart", "SIGSTOP", "SIGCONT", "isolate", "network healed", "jumped", "rate 1"} {
		if !strings.Contains(string(ev), want) {
			t.Errorf("nemesis.log lacks %q:\n%s", want, ev)
		}
	}
	log1, _ := os.ReadFile(filepath.Join(dir, DirNodes, "n1.log"))
	if !strings.Contains(string(log1), "=== harness: start 1 of n1") {
		t.Errorf("n1.log lacks the harness's start line")
	}
}

// fillDisk fills a small tmpfs to the last block and freeDisk empties it.
func TestFillDisk_FillsASmallMountUntilENOSPC(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	n := &Node{ID: "n1", DataDir: filepath.Join(t.TempDir(), "n1")}
	unmount, err := mountDisks([]*Node{n}, 4)
	if err != nil {
		t.Skipf("tmpfs refused here: %v", err)
	}
	defer unmount()
	if err := os.WriteFile(filepath.Join(n.DataDir, "before"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := fillDisk(n.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	if got < 3<<20 || got > 4<<20 {
		t.Errorf("wrote %d bytes into a 4 MiB tmpfs", got)
	}
	if err := os.WriteFile(filepath.Join(n.DataDir, "after"), make([]byte, 8192), 0o644); err == nil {
		t.Error("a write after fillDisk succeeded")
	}
	if err := freeDisk(n.DataDir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(n.DataDir, "after"), make([]byte, 8192), 0o644); err != nil {
		t.Errorf("a write after freeDisk: %v", err)
	}
	if err := freeDisk(n.DataDir); err != nil {
		t.Errorf("freeDisk twice: %v", err)
	}
}
