// Command coordbench measures a coordd cluster through the Go client
// (package client) and prints the figures we compare with etcd and
// ZooKeeper: a table of median [min..max] across runs per figure, with the
// goal each figure must meet, plus one JSON line per run and per summary.
//
// Usage:
//
//	coordbench -mode standard -own-cluster     # everything, on clusters it starts (make bench)
//	coordbench -mode standard -own-cluster -quick   # a smoke run of every mode (make bench-quick)
//	coordbench -mode acquire                   # against `make run`'s cluster (the default -endpoints)
//	coordbench -mode keepalive -leases 100000 -runs 1 -json-out ka.jsonl
//	coordbench -mode acquire -own-cluster -target both -runs 3   # through followers vs at the leader
//	coordbench -mode keepalive -own-cluster -target both -batch 1 -runs 3
//
// Modes (-mode):
//
//	acquire       -clients clients, each with its own lease granted beforehand; one op
//	              locks a fresh lock name with that lease (one Raft entry). ops/s, p50/p99.
//	acquire-new   one op = a new lease and the lock in one call (client.LockNew);
//	              -two-calls measures Grant then Lock instead.
//	keepalive     -leases leases of -ttl kept alive every TTL/3 with client.KeepAliveMany in
//	              batches of -batch (spread over the period; -batch 1: one KeepAlive per lease).
//	              Batch latency, CPU of the 3 nodes in % of one core (loopback only), leases
//	              that expired although kept alive.
//	handoff       the holder of an election resigns while a candidate waits in a blocking
//	              Campaign: time from the resign call to the candidate's Campaign returning as
//	              leader, when the candidate queued -handoff-queued (200 ms) before ("long") and
//	              0–1 ms before ("just").
//	holder-crash  a child process holds a lock on a lease of -ttl (500 ms) and keeps it alive;
//	              it is SIGKILLed at a random moment while a standby waits: kill → standby
//	              holds, and how far past the lease's real deadline (last keepalive + TTL).
//	leader-kill   on its own cluster: -writers writers Put in a loop, the Raft leader is
//	              SIGKILLed: time to a new leader, the longest gap between successful writes,
//	              errors the client returned; then -idle with no load: term changes.
//	recovery      on its own cluster: -state-mib of KV state, a snapshot, a follower SIGKILLed
//	              and restarted: time to /readyz 200, and the size of its data dir.
//	leader-faults on its own cluster (Raft through loopback proxies): -rounds trials (3) of each
//	              fault of the Raft leader — a 5 s stall (SIGSTOP), a -long-stall stall (60 s), an
//	              isolation from its peers for 5 s, a SIGKILL — with 20 Sessions of TTL 3 s and 20
//	              of TTL 1 s open through one client: sessions lost per fault and TTL. Not in the
//	              standard set (make bench-sessions runs 20 trials).
//	standard      the modes of the standard set (modeNames) in order; keepalive three times:
//	              one KeepAlive per lease (-batch 1) of -leases (10,000), batches of -batch
//	              (1,000) of -leases, and batches of -hold-leases (100,000) for -hold-runs run(s).
//
// Where the clients go (-target; the modes that send client load: acquire,
// acquire-new, keepalive, handoff, holder-crash, leader-kill's writers):
//
//	rr      (default) the clients are spread over every member, as a load balancer,
//	        etcd's balancer or ZooKeeper's clients spread them: each bench client talks to
//	        one node only, the nodes assigned round robin starting at the first follower
//	        after the leader (3 nodes: follower, follower, leader, follower, ...), so a
//	        request that reaches a follower is forwarded by that node. (A client.Client
//	        given one endpoint sends every call there: pick has nothing else to choose.)
//	        leader-kill's writers move to the next node when theirs stops answering (its
//	        client's circuit breaker opens), as a balancer does; "failovers" counts it.
//	leader  every client is given every endpoint, and the Go client sends each call to
//	        the node it believes leads (the behaviour before -target).
//	both    each workload twice, first rr then leader, labelled "target=rr" and
//	        "target=leader"; the table then adds a derived workload "... rr-vs-leader":
//	        the rr figure in % of the leader one, run by run (ops_per_s_pct, p99_ms_pct...).
//
// The standard set, without an explicit -target, runs acquire and the
// single-call keepalive with both targets and every other mode with rr.
// recovery and leader-faults ignore -target (their load only sets the stage).
//
// The table shows, per workload and figure, median [min..max] across runs,
// the goal where one applies (the goals of issue 21 and the older ones it
// does not replace: see goals in report.go; they hold at the default
// parameters only), whether the median meets it (met / MISSED), and at the
// end how many goals were met, missed or not measured. In the standard set
// a goal whose mode did not run is listed as not measured (not with -quick).
//
// Scale modes (scale_*.go; each on its own cluster whose nodes run with
// -rate-limit 0, -max-watchers above the total and -max-leases-per-token -1;
// they ignore -target; watchers and big-expiry are in the standard set, about
// 30 s a run each; million is not: make bench-scale):
//
//	million       -hold-leases leases (1,000,000 unless given) of -ttl (10s) granted by 256
//	              callers and kept alive in batches of 10,000 every TTL/3, held for -hold:
//	              leader RSS and Go heap per lease, keepalive CPU of the 3 nodes, unintended
//	              expiries (goal 0), Raft snapshot and GET /v1/snapshot size and time,
//	              restart-to-ready of a SIGKILLed follower. -project-from A,B measures A and
//	              B and projects to -hold-leases linearly (workload "... projected").
//	watchers      -watchers blocking queries (10,000) and -streams SSE election streams
//	              (1,000) on one node (-watch-node) while keys and elections change at
//	              -write-rate: fan-out latency (write ack → each answer) p50/p99/max, CPU and
//	              memory of that node.
//	big-expiry    a lease holding -big-locks locks and -big-keys keys (10,000 each) expires,
//	              then (another) is revoked, while a probe sends -probe-rate small requests a
//	              second: the longest request around the release (max_stall_ms, goal ≤ 50).
//
// The unique-name churn figure (state, heap and snapshot flat under 1,000 new
// lock names a second) is make bench-churn's (issue 16).
//
// Without -own-cluster the modes that need a cluster use -endpoints (by
// default `make run`'s: http://127.0.0.1:7101,7102,7103); leader-kill and
// recovery always start their own, since they kill and restart nodes. Own
// clusters run the coordd of -coordd (default ./bin/coordd, else built with
// `go build`) on loopback ports below the ephemeral range, with data in a
// temporary directory. Every process coordbench starts is killed, and every
// temporary directory removed, when it ends, on Ctrl-C too.
//
// Progress goes to stderr. The table goes to stdout, or to stderr with
// -json (then stdout carries only the JSON lines); -json-out FILE writes
// the JSON lines to FILE.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

// config holds the flags.
type config struct {
	mode       string
	endpoints  []string
	ownCluster bool
	coordd     string
	coorddSet  bool
	nodeFlags  []string
	runs       int
	quick      bool
	maxTime    time.Duration

	clients  int
	duration time.Duration
	warmup   time.Duration
	ttl      time.Duration
	twoCalls bool
	// target is leader, rr or both as given; a step's copy holds leader or
	// rr (or "" for the modes that ignore it).
	target    string
	targetSet bool

	handoffQueued time.Duration

	leases     int
	batch      int
	holdLeases int
	holdRuns   int

	rounds    int
	longStall time.Duration
	faults    []string
	writers   int
	idle      time.Duration
	stateMiB  int
	valueKiB  int

	json    bool
	jsonOut string

	childHolder bool
	childLock   string

	scale scaleConfig // the scale modes' flags (scale_flags.go)
}

// modeList is every mode, one line each: a new mode adds its line. The
// modes with standard run in the standard set, in this order; the others
// only when asked for by name (they take long). targets: the mode sends
// client load and honours -target; ownsClusters: it starts (and kills)
// its own clusters.
var modeList = []mode{
	{name: "acquire", run: runAcquire, standard: true, targets: true},
	{name: "acquire-new", run: runAcquireNew, standard: true, targets: true},
	{name: "keepalive", run: runKeepalive, standard: true, targets: true},
	{name: "handoff", run: runHandoff, standard: true, targets: true},
	{name: "holder-crash", run: runHolderCrash, standard: true, targets: true},
	{name: "leader-kill", run: runLeaderKill, standard: true, targets: true, ownsClusters: true},
	{name: "recovery", run: runRecovery, standard: true, ownsClusters: true},
	{name: "leader-faults", run: runLeaderFaults, ownsClusters: true},
	{name: "watchers", run: runWatchers, standard: true, ownsClusters: true},
	{name: "big-expiry", run: runBigExpiry, standard: true, ownsClusters: true},
	{name: "million", run: runMillion, ownsClusters: true},
}

// modeNames are the modes of the standard set, in order; extraModes the
// others.
var modeNames, extraModes = func() (std, extra []string) {
	for _, m := range modeList {
		if m.standard {
			std = append(std, m.name)
		} else {
			extra = append(extra, m.name)
		}
	}
	return std, extra
}()

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("coordbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var endpoints, nodeFlags string
	fs.StringVar(&c.mode, "mode", "standard", "what to run: "+strings.Join(append(slices.Clone(modeNames), extraModes...), ", ")+", or standard (all but "+strings.Join(extraModes, ", ")+")")
	fs.StringVar(&endpoints, "endpoints", "http://127.0.0.1:7101,http://127.0.0.1:7102,http://127.0.0.1:7103", "the cluster to measure (make run's by default), comma-separated")
	fs.BoolVar(&c.ownCluster, "own-cluster", false, "start a fresh 3-node cluster on loopback for each mode instead of using -endpoints")
	fs.StringVar(&c.coordd, "coordd", "./bin/coordd", "coordd binary for own clusters (built with go build if this default does not exist)")
	fs.StringVar(&nodeFlags, "node-flags", "", "extra coordd flags for the nodes of own clusters, space-separated")
	fs.IntVar(&c.runs, "runs", 3, "runs of each mode (the table shows median [min..max] across them)")
	fs.BoolVar(&c.quick, "quick", false, "a smoke run: 1 run, short durations, few rounds, small state (flags given explicitly still win)")
	fs.DurationVar(&c.maxTime, "max-time", time.Hour, "give up after this long in total")
	fs.IntVar(&c.clients, "clients", 64, "acquire, acquire-new: concurrent clients")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "acquire, acquire-new, keepalive: measured time per run")
	fs.DurationVar(&c.warmup, "warmup", time.Second, "acquire, acquire-new: load before measuring")
	fs.DurationVar(&c.ttl, "ttl", 0, "lease TTL (default per mode: keepalive 10s, holder-crash 500ms, acquire-new 30s)")
	fs.BoolVar(&c.twoCalls, "two-calls", false, "acquire-new: Grant then Lock (two Raft entries) instead of LockNew")
	fs.StringVar(&c.target, "target", "rr", "where the clients go: rr (spread over every node, one node per client), leader (every call to the believed leader), both (each workload twice); standard without -target: both for acquire and single-call keepalive, rr for the rest")
	fs.DurationVar(&c.handoffQueued, "handoff-queued", 200*time.Millisecond, "handoff: how long the waiter of the long case is queued before the resign")
	fs.IntVar(&c.leases, "leases", 10000, "keepalive: leases held")
	fs.IntVar(&c.holdLeases, "hold-leases", 100000, "standard: leases of the second keepalive step, which shows that many are held")
	fs.IntVar(&c.holdRuns, "hold-runs", 1, "standard: runs of that step (it takes a minute or so per run)")
	fs.IntVar(&c.batch, "batch", 1000, "keepalive: leases per KeepAliveMany call (1: one KeepAlive per lease)")
	fs.IntVar(&c.rounds, "rounds", 0, "rounds per run (default per mode: handoff 500, holder-crash 20, leader-kill 3, recovery 3, leader-faults 3 trials of each fault)")
	fs.DurationVar(&c.longStall, "long-stall", time.Minute, "leader-faults: the long stall of the leader")
	var faults string
	fs.StringVar(&faults, "faults", "", "leader-faults: only these faults, comma-separated (stall-5s, stall-60s, isolate-5s, kill; default all)")
	fs.IntVar(&c.writers, "writers", 16, "leader-kill: concurrent writers")
	fs.DurationVar(&c.idle, "idle", 20*time.Second, "leader-kill: idle time watched for spurious elections")
	fs.IntVar(&c.stateMiB, "state-mib", 64, "recovery: MiB of KV state to load")
	fs.IntVar(&c.valueKiB, "value-kib", 4, "recovery: KiB per KV value")
	fs.BoolVar(&c.json, "json", false, "print JSON lines on stdout (the table then goes to stderr)")
	fs.StringVar(&c.jsonOut, "json-out", "", "write JSON lines to this file")
	c.scale.register(fs)
	// Hidden: the holder process of holder-crash.
	fs.BoolVar(&c.childHolder, "child-holder", false, "")
	fs.StringVar(&c.childLock, "child-lock", "", "")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: coordbench [-mode M] [-own-cluster] [flags]  (see go doc ./cmd/coordbench)")
		fs.VisitAll(func(f *flag.Flag) {
			if f.Usage == "" {
				return
			}
			fmt.Fprintf(stderr, "  -%s\t%s (default %q)\n", f.Name, f.Usage, f.DefValue)
		})
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	c.coorddSet = set["coordd"]
	c.targetSet = set["target"]
	for _, e := range strings.Split(endpoints, ",") {
		if e = strings.TrimSpace(e); e != "" {
			c.endpoints = append(c.endpoints, e)
		}
	}
	c.nodeFlags = strings.Fields(nodeFlags)
	for _, f := range strings.Split(faults, ",") {
		if f = strings.TrimSpace(f); f != "" {
			c.faults = append(c.faults, f)
		}
	}
	if c.quick {
		quick := map[string]func(){
			"runs":        func() { c.runs = 1 },
			"duration":    func() { c.duration = 2 * time.Second },
			"warmup":      func() { c.warmup = 300 * time.Millisecond },
			"clients":     func() { c.clients = 16 },
			"leases":      func() { c.leases = 2000 },
			"hold-leases": func() { c.holdLeases = 5000 },
			"batch":       func() { c.batch = 500 },
			"rounds":      func() { c.rounds = 3 },
			"idle":        func() { c.idle = 2 * time.Second },
			"state-mib":   func() { c.stateMiB = 8 },
		}
		for name, f := range quick {
			if !set[name] {
				f()
			}
		}
		if !set["handoff-queued"] {
			c.handoffQueued = 50 * time.Millisecond
		}
	}
	c.scale.applyQuick(set, c.quick)
	switch {
	case c.childHolder:
		return c, nil
	case c.mode != "standard" && !slices.Contains(modeNames, c.mode) && !slices.Contains(extraModes, c.mode):
		return nil, fmt.Errorf("unknown -mode %q: want one of %s, or standard", c.mode, strings.Join(append(slices.Clone(modeNames), extraModes...), ", "))
	case c.target != "rr" && c.target != "leader" && c.target != "both":
		return nil, fmt.Errorf("-target %q: want rr, leader or both", c.target)
	case c.handoffQueued < 10*time.Millisecond:
		return nil, errors.New("-handoff-queued: want at least 10ms (the waiter must be queued)")
	case c.longStall <= 0:
		return nil, errors.New("-long-stall must be positive")
	case c.runs < 1 || c.runs > 100:
		return nil, fmt.Errorf("-runs %d: want 1..100", c.runs)
	case c.clients < 1 || c.clients > 4096:
		return nil, fmt.Errorf("-clients %d: want 1..4096", c.clients)
	case c.leases < 1 || c.leases > 1_000_000 || c.holdLeases < 1 || c.holdLeases > 1_000_000:
		return nil, fmt.Errorf("-leases %d -hold-leases %d: want 1..1000000", c.leases, c.holdLeases)
	case c.holdRuns < 1 || c.holdRuns > 100:
		return nil, fmt.Errorf("-hold-runs %d: want 1..100", c.holdRuns)
	case c.batch < 1:
		return nil, fmt.Errorf("-batch %d: want at least 1", c.batch)
	case c.rounds < 0 || c.rounds > 100_000:
		return nil, fmt.Errorf("-rounds %d: want 0 (the mode's default)..100000", c.rounds)
	case c.writers < 1 || c.writers > 1024:
		return nil, fmt.Errorf("-writers %d: want 1..1024", c.writers)
	case c.stateMiB < 1 || c.valueKiB < 1 || c.valueKiB > 512:
		return nil, fmt.Errorf("-state-mib %d -value-kib %d: want ≥ 1 and 1..512", c.stateMiB, c.valueKiB)
	case c.duration <= 0 || c.warmup < 0 || c.ttl < 0 || c.idle < 0:
		return nil, errors.New("-duration must be positive; -warmup, -ttl and -idle not negative")
	case len(c.endpoints) == 0:
		return nil, errors.New("-endpoints is empty")
	case c.scale.validate() != nil:
		return nil, c.scale.validate()
	}
	return c, nil
}

// realMain runs coordbench and returns the exit code.
func realMain(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "coordbench:", err)
		return 2
	}
	if cfg.childHolder {
		return childHolderMain(cfg, stdout, stderr)
	}

	ctx, cancel := context.WithTimeout(context.Background(), cfg.maxTime)
	defer cancel()
	// Ctrl-C or SIGTERM: cancel everything; if the modes do not return
	// within 10 s, kill the children, remove the temporary dirs and exit.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	interrupted := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			fmt.Fprintf(stderr, "coordbench: %v: stopping (children are killed, temporary dirs removed)\n", s)
			close(interrupted)
			cancel()
		case <-ctx.Done():
			return
		}
		select {
		case <-sigs:
		case <-time.After(10 * time.Second):
		}
		theReaper.cleanup()
		os.Exit(130)
	}()
	defer theReaper.cleanup()

	tableOut, jsonw := stdout, io.Writer(nil)
	if cfg.json {
		tableOut, jsonw = stderr, stdout
	}
	if cfg.jsonOut != "" {
		f, err := os.Create(cfg.jsonOut)
		if err != nil {
			fmt.Fprintln(stderr, "coordbench:", err)
			return 2
		}
		defer f.Close()
		if jsonw != nil {
			jsonw = io.MultiWriter(jsonw, f)
		} else {
			jsonw = f
		}
	}
	rep := newReporter(stderr, jsonw)
	failed := runPlan(ctx, cfg, rep)
	fmt.Fprintln(tableOut)
	rep.printSummary(tableOut)
	fmt.Fprintf(tableOut, "\ncoordbench: done in %s", time.Since(rep.start).Round(100*time.Millisecond))
	if failed > 0 {
		fmt.Fprintf(tableOut, "; %d run(s) failed (see the messages above)", failed)
	}
	fmt.Fprintln(tableOut)
	select {
	case <-interrupted:
		return 130
	default:
	}
	if failed > 0 {
		return 1
	}
	return 0
}
