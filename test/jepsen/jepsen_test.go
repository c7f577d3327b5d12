package jepsen_test

import (
	"context"
	"flag"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coordd/coordd/test/jepsen/harness"
	"github.com/coordd/coordd/test/jepsen/history"
	"github.com/coordd/coordd/test/jepsen/workload"
)

var (
	seedFlag = flag.Uint64("seed", 0, "seed of every scenario's schedule and workload (0: random, printed)")
	longFlag = flag.Bool("long", false, "5 nodes and three times as many rounds (make jepsen-long)")
	outFlag  = flag.String("jepsen.out", "", "output folder (default: a new temporary folder, removed for scenarios that pass)")
	raceFlag = flag.Bool("jepsen.race", true, "build coordd with the race detector (a data race in a node log fails the scenario)")
	diskFlag = flag.Bool("jepsen.disk", false, "run the full-disk scenarios too (root only: each node's data dir on a small tmpfs; make jepsen-disk)")
)

var (
	coorddBin string
	seed      uint64
	outRoot   string
	keepAll   bool // -jepsen.out given: keep every scenario's folder
)

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	seed = *seedFlag
	if seed == 0 {
		seed = rand.Uint64N(1<<53) + 1 // exact in JSON and shells alike
	}
	target, long := "jepsen", ""
	if *longFlag {
		target, long = "jepsen-long", " -long"
	}
	fmt.Printf("jepsen: seed %d (reproduce: make %s SEED=%d, or go test -count=1 -run 'TestJepsen' -v ./test/jepsen/ -seed %d%s)\n",
		seed, target, seed, seed, long)
	if testing.Short() {
		return m.Run() // every scenario skips itself
	}
	outRoot, keepAll = *outFlag, *outFlag != ""
	if outRoot == "" {
		dir, err := os.MkdirTemp("", fmt.Sprintf("coordd-jepsen-%d-", seed))
		if err != nil {
			fmt.Fprintln(os.Stderr, "jepsen:", err)
			return 1
		}
		outRoot = dir
	}
	t0 := time.Now()
	bin, cleanup, err := harness.Build(context.Background(), *raceFlag)
	if err != nil {
		fmt.Fprintln(os.Stderr, "jepsen: building coordd:", err)
		return 1
	}
	defer cleanup()
	fmt.Printf("jepsen: built coordd (race detector: %v) in %s; output under %s\n", *raceFlag, time.Since(t0).Round(time.Millisecond), outRoot)
	coorddBin = bin
	code := m.Run()
	if !keepAll {
		os.Remove(outRoot) // only if every scenario passed and removed its folder
	}
	return code
}

// scenario is one TestJepsen_* test.
type scenario struct {
	name     string
	workload workload.Workload
	faults   []harness.Fault
	rounds   int
	// mustFail: the workload is broken on purpose (the unfenced lock); the
	// test passes only if its checkers report anomalies.
	mustFail bool
	// disk: the scenario fills disks; opt-in with -jepsen.disk.
	disk bool
	// answerBound, answerKinds: check answer times (harness.Scenario).
	answerBound time.Duration
	answerKinds []history.Kind
}

// seedFor derives a scenario's seed from the run's seed and its name, so
// that -seed reproduces a scenario whether it runs alone or with others.
func seedFor(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	x := seed ^ h.Sum64()
	// splitmix64's finaliser
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

func run(t *testing.T, sc scenario) {
	if testing.Short() {
		t.Skip("fault injection scenarios take minutes: not in -short mode")
	}
	if sc.disk && !*diskFlag {
		t.Skip("full-disk scenarios are opt-in: make jepsen-disk (or -jepsen.disk; root only, each node's data dir on a small tmpfs)")
	}
	nodes, rounds, limit := 3, sc.rounds, 3*time.Minute
	faults := sc.faults
	if *longFlag {
		nodes, rounds, limit = 5, 3*sc.rounds, 12*time.Minute
		if !slices.Contains(faults, harness.Ring) && slices.Contains(faults, harness.Split) {
			faults = append(slices.Clone(faults), harness.Ring) // the majorities ring needs 5 nodes
		}
	}
	dir := filepath.Join(outRoot, strings.TrimPrefix(t.Name(), "TestJepsen_"))
	s := seedFor(t.Name())
	t.Logf("scenario seed %d (run seed %d), output %s", s, seed, dir)
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	defer cancel()
	rep, err := harness.Run(ctx, harness.Scenario{
		Name: t.Name(), Workload: sc.workload, Nodes: nodes, Faults: faults, Rounds: rounds,
		Seed: s, Bin: coorddBin, Dir: dir, Logf: t.Logf,
		AnswerBound: sc.answerBound, AnswerKinds: sc.answerKinds,
	})
	if rep != nil {
		t.Logf("report:\n%s", rep.Summary())
	}
	switch {
	case err != nil:
		t.Errorf("harness: %v", err)
	case !rep.HarnessValid():
		t.Errorf("the harness's checks found anomalies:\n%s", rep.Details())
	case sc.mustFail && rep.WorkloadValid():
		t.Errorf("the %s workload is broken on purpose, but no checker caught it in this run: the checkers or the schedule do not bite", sc.workload.Name())
	case sc.mustFail:
		t.Logf("caught, as it must be:\n%s", firstLines(rep.Details(), 12))
	case !rep.WorkloadValid():
		t.Errorf("anomalies:\n%s", rep.Details())
	}
	if t.Failed() {
		t.Logf("FAILED: output folder %s (seed, plan, nemesis.log, history.jsonl, final.json, results.txt, nodes/*.log, HTML of non-linearizable keys); re-run with: go test -count=1 -run '^%s$' -v ./test/jepsen/ -seed %d%s",
			dir, t.Name(), seed, map[bool]string{true: " -long"}[*longFlag])
		return
	}
	if !keepAll {
		os.RemoveAll(dir)
	}
}

func firstLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = append(lines[:n], fmt.Sprintf("... (%d more lines in results.txt)", len(lines)-n))
	}
	return strings.Join(lines, "\n")
}

// The quick set: make jepsen (and make test) runs every TestJepsen_*.

func TestJepsen_Register_Partitions(t *testing.T) {
	run(t, scenario{workload: workload.Register(6), rounds: 10,
		faults: []harness.Fault{harness.IsolateLeader, harness.Split, harness.OneWay, harness.Ring, harness.Slow, harness.Lossy}})
}

func TestJepsen_Register_KillsPauses(t *testing.T) {
	// Kills leave many writes of unknown outcome, which porcupine must
	// place anywhere after their call: eight keys keep each key's share
	// (and the search) small.
	run(t, scenario{workload: workload.Register(8), rounds: 8,
		faults: []harness.Fault{harness.KillLeader, harness.KillRandom, harness.KillAll, harness.PauseLeader, harness.PauseRandom}})
}

func TestJepsen_FencedLock_PausesClocks(t *testing.T) {
	run(t, scenario{workload: workload.FencedLock(true), rounds: 8,
		faults: []harness.Fault{harness.PauseLeader, harness.PauseRandom, harness.ClockJump, harness.ClockRate, harness.IsolateLeader}})
}

func TestJepsen_FencedLock_KillAll(t *testing.T) {
	run(t, scenario{workload: workload.FencedLock(true), rounds: 6,
		faults: []harness.Fault{harness.KillAll, harness.KillLeader}})
}

// No lease clock fault here, so the durability check is strict: a lease
// whose keepalives never lapsed must survive every partition, kill and
// pause (the lock scenarios cover the clock faults).
func TestJepsen_Election_PartitionsKills(t *testing.T) {
	run(t, scenario{workload: workload.StrictLeaseDurability(workload.Election()), rounds: 8,
		faults: []harness.Fault{harness.IsolateLeader, harness.Split, harness.KillLeader, harness.PauseLeader, harness.OneWay, harness.Lossy}})
}

// The lock workload with an unguarded resource: clients that pause past
// their lease's TTL (and lease clocks that jump) let two holders write at
// once. The checker must say so in every run.
func TestJepsen_UnfencedLock_IsCaught(t *testing.T) {
	// 8 rounds (about 25 s): with 4, a run once drew only one pause longer
	// than the TTL among 12 and nothing overlapped.
	run(t, scenario{workload: workload.FencedLock(false), rounds: 8, mustFail: true,
		faults: []harness.Fault{harness.PauseLeader, harness.ClockJump}})
}

// Opt-in (make jepsen-disk): a full disk on one node, the leader or a
// random one. Every node's data dir is a tmpfs of its own (root only); the
// fault fills one until its writes fail with ENOSPC, holds, and frees it.
// A leader that cannot append steps down; a follower that cannot append
// refuses entries until its disk has room, then catches up. Nothing
// acknowledged may be lost and no node may crash.
func TestJepsen_FullDisk_Register(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("full disk: needs root to mount a tmpfs for each node's data dir")
	}
	run(t, scenario{workload: workload.Register(6), rounds: 8, disk: true,
		faults: []harness.Fault{harness.FullDisk, harness.FullDisk, harness.KillLeader, harness.IsolateLeader}})
}

func TestJepsen_FullDisk_Election(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("full disk: needs root to mount a tmpfs for each node's data dir")
	}
	run(t, scenario{workload: workload.StrictLeaseDurability(workload.Election()), rounds: 6, disk: true,
		faults: []harness.Fault{harness.FullDisk, harness.FullDisk, harness.PauseLeader}})
}
