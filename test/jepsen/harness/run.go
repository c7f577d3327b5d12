package harness

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coordd/coordd/test/jepsen/check"
	"github.com/coordd/coordd/test/jepsen/history"
	"github.com/coordd/coordd/test/jepsen/workload"
)

// Scenario is one fault-injection test: a workload, a cluster size and the
// faults to draw the rounds from.
type Scenario struct {
	Name     string
	Workload workload.Workload
	Nodes    int
	Faults   []Fault
	Rounds   int
	Seed     uint64
	// Bin is the coordd binary (see Build).
	Bin string
	// Dir is the scenario's output folder, created if missing: seed,
	// plan, nemesis events, history, final state, check results, node logs
	// and data dirs, HTML of failing linearizability checks.
	Dir string
	// Logf receives progress lines (t.Logf).
	Logf func(format string, args ...any)
	// DiskMiB sizes the tmpfs that each node's data dir is mounted on when
	// Faults has FullDisk (0: DefaultDiskMiB). Mounting needs root; where
	// it is refused the FullDisk rounds are skipped with the reason. The
	// mounts are gone when Run returns, with the data dirs on them.
	DiskMiB int
	// AnswerBound, when not zero, adds check.AnswerTime to the workload's
	// checks: every op of AnswerKinds sent to a healthy node while a
	// quorum is healthy must be answered within AnswerBound (see
	// AnswerBoundDefault).
	AnswerBound time.Duration
	AnswerKinds []history.Kind
}

// AnswerBoundDefault is the answer-time bound of the liveness scenarios:
// the followers notice a silent leader within a heartbeat timeout
// randomised up to twice ElectionTimeout's base (150 ms, so ≤ 300 ms),
// elect within about one more round trip, and a node whose forward
// followed the old leader answers as soon as it sees the change (or
// no_leader within one election timeout): about 0.5 s. Doubled for the
// race detector on a loaded 2-core machine, plus half a second of margin:
// 1.5 s, still below the workloads' 2 s request timeout, so a request held
// until it times out always fails the check.
const AnswerBoundDefault = 1500 * time.Millisecond

// Files in a scenario's output folder.
const (
	FileSeed    = "seed.txt"
	FilePlan    = "plan.json"
	FileNemesis = "nemesis.log"   // every fault and heal, at times on the history's clock
	FileHistory = "history.jsonl" // one history.Op per line
	FileFinal   = "final.json"    // the history.FinalState read at the end
	FileResults = "results.txt"   // the report and every check's result
	DirNodes    = "nodes"         // nX.log (stdout and stderr of every start) and nX/ (data dir)
)

// Report is what a scenario did and what the checkers found.
type Report struct {
	Scenario string
	Seed     uint64
	Dir      string
	Nodes    int
	Rounds   int
	Duration time.Duration
	// Ops counts the recorded ops by status; Kinds by kind.
	Ops   map[history.Status]int
	Kinds map[history.Kind]int
	// Faults counts the faults injected, by kind; Skipped says which were
	// not and why.
	Faults  map[Fault]int
	Skipped []string
	// Workload holds the workload's checks; Harness the harness's own: node
	// logs, processes that died by themselves, the final reads.
	Workload []check.Result
	Harness  []check.Result
}

// TotalOps is the number of recorded ops.
func (r *Report) TotalOps() int {
	n := 0
	for _, c := range r.Ops {
		n += c
	}
	return n
}

// WorkloadValid reports whether every workload check found no anomaly.
func (r *Report) WorkloadValid() bool { return allValid(r.Workload) }

// HarnessValid reports whether the harness's own checks found nothing.
func (r *Report) HarnessValid() bool { return allValid(r.Harness) }

func allValid(rs []check.Result) bool {
	for _, c := range rs {
		if !c.Valid {
			return false
		}
	}
	return true
}

// Summary is the report in a few lines.
func (r *Report) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "scenario %s, seed %d: %d nodes, %d rounds, %s\n", r.Scenario, r.Seed, r.Nodes, r.Rounds,
		r.Duration.Round(100*time.Millisecond))
	fmt.Fprintf(&b, "ops: %d (ok %d, fail %d, unknown %d); by kind: %s\n", r.TotalOps(),
		r.Ops[history.StatusOK], r.Ops[history.StatusFail], r.Ops[history.StatusUnknown], countList(r.Kinds))
	fmt.Fprintf(&b, "faults injected: %s\n", countList(r.Faults))
	for _, s := range r.Skipped {
		fmt.Fprintf(&b, "skipped: %s\n", s)
	}
	for _, c := range slices.Concat(r.Workload, r.Harness) {
		verdict := "valid"
		if !c.Valid {
			verdict = fmt.Sprintf("INVALID (%d anomalies)", len(c.Anomalies))
		}
		fmt.Fprintf(&b, "check %s: %s\n", c.Checker, verdict)
	}
	return b.String()
}

// Details lists every check's result in full.
func (r *Report) Details() string {
	var parts []string
	for _, c := range slices.Concat(r.Workload, r.Harness) {
		parts = append(parts, c.String())
	}
	return strings.Join(parts, "\n")
}

func countList[K ~string](m map[K]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s×%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

// Timeouts of the phases of a run; each bounds a wait that would otherwise
// hang on a broken cluster.
const (
	startTimeout      = 30 * time.Second
	leaderTimeout     = 30 * time.Second
	workloadStopLimit = 30 * time.Second
	finalTimeout      = 60 * time.Second
	stopTimeout       = 15 * time.Second
)

// Run runs a scenario: it starts the cluster, runs the workload under the
// seeded schedule of faults, heals everything, reads the final state, stops
// the cluster and checks the history and the node logs. An error means the
// harness could not do its job (the cluster did not start, the workload
// broke); anomalies are in the Report.
func Run(ctx context.Context, sc Scenario) (*Report, error) {
	start := time.Now()
	logf := &guardedLogf{f: sc.Logf}
	defer logf.close()
	if err := os.MkdirAll(filepath.Join(sc.Dir, DirNodes), 0o755); err != nil {
		return nil, err
	}
	wl := sc.Workload
	plan := NewPlan(sc.Seed, sc.Nodes, sc.Faults, sc.Rounds, wl.LeaseTTL())
	rep := &Report{Scenario: sc.Name, Seed: sc.Seed, Dir: sc.Dir, Nodes: sc.Nodes, Rounds: len(plan.Rounds),
		Faults: map[Fault]int{}, Ops: map[history.Status]int{}, Kinds: map[history.Kind]int{}}
	if err := writeFile(filepath.Join(sc.Dir, FileSeed), fmt.Sprintf("seed %d\nscenario %s\nworkload %s\nnodes %d\n",
		sc.Seed, sc.Name, wl.Name(), sc.Nodes)); err != nil {
		return nil, err
	}
	pj, _ := json.MarshalIndent(plan, "", "  ")
	if err := writeFile(filepath.Join(sc.Dir, FilePlan), string(pj)+"\n"); err != nil {
		return nil, err
	}
	logf.Logf("plan: %s", plan)

	rec, err := history.NewRecorder(filepath.Join(sc.Dir, FileHistory))
	if err != nil {
		return nil, err
	}
	defer rec.Close()
	evf, err := os.Create(filepath.Join(sc.Dir, FileNemesis))
	if err != nil {
		return nil, err
	}
	defer evf.Close()
	var evMu sync.Mutex
	emit := func(e Event) {
		evMu.Lock()
		defer evMu.Unlock()
		fmt.Fprintln(evf, e)
		logf.Logf("nemesis: %s", e)
	}

	rng := rand.New(rand.NewPCG(sc.Seed, 0xc00dd))
	cl, err := NewCluster(ClusterConfig{Bin: sc.Bin, Dir: filepath.Join(sc.Dir, DirNodes), Nodes: sc.Nodes,
		Rand: rng, Logf: logf.Logf})
	if err != nil {
		return nil, err
	}
	stopped := false
	unmount := func() {}
	defer func() {
		if !stopped {
			cl.Kill()
		}
		unmount()
	}()
	m := &nemesis{c: cl, now: rec.Now, emit: emit}
	if hasFault(plan, FullDisk) {
		mib := cmp.Or(sc.DiskMiB, DefaultDiskMiB)
		if um, err := mountDisks(cl.Nodes, mib); err != nil {
			m.noDisk = "full disk: skipped: " + err.Error()
		} else {
			unmount = um
			emit(Event{At: rec.Now(), Phase: "info", Detail: fmt.Sprintf("every data dir is a %d MiB tmpfs of its own (full-disk rounds)", mib)})
		}
	}
	if err := cl.Start(ctx, startTimeout); err != nil {
		return nil, err
	}
	emit(Event{At: rec.Now(), Phase: "info", Detail: "cluster up: " + strings.Join(cl.IDs(), " ") + ", leader " + orNone(cl.Leader(ctx))})

	env := workload.Env{Nodes: cl.URLs(), Rec: rec, Seed: sc.Seed ^ 0x5eed, Logf: logf.Logf}
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	runDone := make(chan error, 1)
	go func() { runDone <- wl.Run(runCtx, env) }()

	schedErr := runSchedule(ctx, plan, m, rep, runDone)

	// Final heal, whatever happened: restart, continue, reconnect.
	healCtx, cancelHeal := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	did, herr := m.healAll(healCtx)
	cancelHeal()
	emit(Event{At: rec.Now(), Phase: "heal", Detail: "final: " + did})
	if herr != nil {
		emit(Event{At: rec.Now(), Phase: "info", Detail: "final heal: " + herr.Error()})
	}
	var harnessErrs []string
	leader, lerr := cl.WaitLeader(ctx, leaderTimeout)
	if lerr != nil {
		harnessErrs = append(harnessErrs, fmt.Sprintf("after the final heal: %v", lerr))
	}
	emit(Event{At: rec.Now(), Phase: "info", Detail: "leader after the final heal: " + orNone(leader)})
	sleepCtx(ctx, time.Duration(plan.Settle))

	stopRun()
	var runErr error
	select {
	case runErr = <-runDone:
		if errors.Is(runErr, context.Canceled) {
			runErr = nil
		}
	case <-time.After(workloadStopLimit):
		runErr = fmt.Errorf("workload %s did not stop within %s of its cancel", wl.Name(), workloadStopLimit)
	}
	emit(Event{At: rec.Now(), Phase: "info", Detail: "workload stopped"})

	// A quiet election: the final reads then go to a leader that applied
	// no command in its term (reads must not wait for a write).
	emit(Event{At: rec.Now(), Phase: "info", Detail: quietElection(ctx, cl, leader)})

	fctx, fcancel := context.WithTimeout(ctx, finalTimeout)
	final, ferr := wl.Final(fctx, env)
	fcancel()
	if ferr != nil {
		harnessErrs = append(harnessErrs, fmt.Sprintf("final reads: %v", ferr))
	}
	fj, _ := json.MarshalIndent(final, "", "  ")
	_ = writeFile(filepath.Join(sc.Dir, FileFinal), string(fj)+"\n")
	emit(Event{At: rec.Now(), Phase: "info", Detail: "final state read"})

	ops := rec.Ops()
	if err := rec.Close(); err != nil {
		harnessErrs = append(harnessErrs, err.Error())
	}
	cl.Stop(stopTimeout)
	stopped = true

	for _, op := range ops {
		rep.Ops[op.Status]++
		rep.Kinds[op.Kind]++
	}
	rep.Workload = wl.Check(ops, final, sc.Dir)
	if sc.AnswerBound > 0 {
		rep.Workload = append(rep.Workload, check.AnswerTime(ops, m.windows, sc.Nodes, sc.AnswerBound, sc.AnswerKinds...))
	}
	rep.Harness = append(rep.Harness,
		check.Logs(cl.LogPaths()...),
		processesResult(cl.Crashes(), cl.Exits()),
		harnessResult(harnessErrs, len(ops)))
	rep.Duration = time.Since(start)
	_ = writeFile(filepath.Join(sc.Dir, FileResults), rep.Summary()+"\n"+rep.Details()+"\n")

	switch {
	case schedErr != nil:
		return rep, schedErr
	case runErr != nil:
		return rep, fmt.Errorf("harness: workload %s: %w", wl.Name(), runErr)
	}
	return rep, nil
}

func hasFault(p Plan, f Fault) bool {
	return slices.ContainsFunc(p.Rounds, func(r Round) bool { return r.Fault == f })
}

// runSchedule runs the rounds of plan. It stops early if ctx is done or the
// workload returned (with an error: it is reported).
func runSchedule(ctx context.Context, plan Plan, m *nemesis, rep *Report, runDone chan error) error {
	if !sleepCtx(ctx, time.Duration(plan.Warmup)) {
		return ctx.Err()
	}
	for _, r := range plan.Rounds {
		select {
		case err := <-runDone:
			runDone <- err // for Run to collect
			return fmt.Errorf("harness: the workload returned before the schedule ended (round %d): %v", r.N, err)
		default:
		}
		if !sleepCtx(ctx, time.Duration(r.Wait)) {
			return ctx.Err()
		}
		m.hit = nil
		faultStart := m.now()
		what, h, err := m.inject(ctx, r)
		if err != nil {
			m.emit(Event{At: m.now(), Round: r.N, Fault: r.Fault, Phase: "skip", Detail: "failed: " + err.Error()})
			rep.Skipped = append(rep.Skipped, fmt.Sprintf("round %d %s: %v", r.N, r.Fault, err))
			// Undo whatever half of it was done.
			if _, herr := m.healAll(ctx); herr != nil {
				m.emit(Event{At: m.now(), Round: r.N, Fault: r.Fault, Phase: "heal", Detail: "failed: " + herr.Error()})
			}
			continue
		}
		if h == nil {
			m.emit(Event{At: m.now(), Round: r.N, Fault: r.Fault, Phase: "skip", Detail: what})
			rep.Skipped = append(rep.Skipped, fmt.Sprintf("round %d: %s", r.N, what))
			continue
		}
		rep.Faults[r.Fault]++
		m.emit(Event{At: m.now(), Round: r.N, Fault: r.Fault, Phase: "start", Detail: what})
		sleepCtx(ctx, time.Duration(r.Hold))
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		did, err := h(hctx)
		cancel()
		if err != nil {
			did += ": " + err.Error()
		}
		m.emit(Event{At: m.now(), Round: r.N, Fault: r.Fault, Phase: "heal", Detail: did})
		m.closeWindows(context.WithoutCancel(ctx), r.N, faultStart)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return nil
}

// quietElection hands leadership from leader to another node while no
// client writes, waits for the new leader and says what happened.
func quietElection(ctx context.Context, cl *Cluster, leader string) string {
	if leader == "" {
		return "no leader to transfer leadership from"
	}
	if err := cl.TransferLeadership(ctx, cl.Node(leader)); err != nil {
		return "leadership transfer before the final reads failed: " + err.Error()
	}
	next, err := cl.WaitLeader(ctx, leaderTimeout)
	if err != nil {
		return "after the leadership transfer: " + err.Error()
	}
	return fmt.Sprintf("leadership transferred from %s to %s with no client running (the final reads go to a leader that applied no command)", leader, next)
}

// processesResult reports the nodes that exited without the harness asking
// (a crash) as anomalies, and non-zero exit codes after SIGTERM too: coordd
// must stop cleanly.
func processesResult(crashes, exits []string) check.Result {
	r := check.Result{Checker: "processes", Anomalies: slices.Concat(crashes, exits)}
	r.Valid = len(r.Anomalies) == 0
	return r
}

// harnessResult reports what kept the harness from checking the whole run:
// no leader after the final heal, final reads that failed, a history with no
// op at all.
func harnessResult(errs []string, ops int) check.Result {
	r := check.Result{Checker: "harness", Anomalies: slices.Clone(errs)}
	if ops == 0 {
		r.Anomalies = append(r.Anomalies, "the workload recorded no operation")
	}
	r.Valid = len(r.Anomalies) == 0
	return r
}

// sleepCtx sleeps for d or until ctx is done; it reports whether it slept
// the whole d.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o644) }

// guardedLogf forwards to f until closed, then drops lines: a goroutine
// that outlives the scenario must not log into a finished test.
type guardedLogf struct {
	mu     sync.Mutex
	f      func(format string, args ...any)
	closed bool
}

func (g *guardedLogf) Logf(format string, args ...any) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.closed && g.f != nil {
		g.f(format, args...)
	}
}

func (g *guardedLogf) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}
