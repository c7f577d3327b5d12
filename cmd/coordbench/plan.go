package main

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/coordd/coordd/client"
)

// env is what a run of a mode works with.
type env struct {
	ctx context.Context
	cfg config // this mode's copy (the standard set adjusts some fields)
	rep *reporter
	// endpoints of the cluster under test (own or given); nil for modes
	// that start their own clusters.
	endpoints []string
	own       *cluster // the own cluster, when one was started for the mode
	// order is endpoints in the order rr assigns them to clients: from the
	// first node after the leader round to the leader (endpoints as given
	// when no leader is known). next is the index of the next client of
	// this run (newClient, nextEndpoints).
	order []string
	next  int
}

// logf prints a progress line.
func (e *env) logf(format string, args ...any) { e.rep.logf(format, args...) }

// target is where this step's clients go: "rr" or "leader".
func (e *env) target() string {
	if e.cfg.target == "leader" {
		return "leader"
	}
	return "rr"
}

// endpointsFor are the endpoints client i of a run is given: with target
// leader all of them (the Go client then sends each call to the node it
// believes leads); with rr only one, e.order[i mod n]. A client.Client
// with one endpoint sends every call there (its pick has nothing else to
// choose, and it never hedges), so a call reaching a follower is forwarded
// by that node, as behind a load balancer.
func (e *env) endpointsFor(i int) []string {
	if e.target() == "leader" || len(e.order) == 0 {
		return e.endpoints
	}
	return []string{e.order[i%len(e.order)]}
}

// nextEndpoints are the endpoints of the run's next client.
func (e *env) nextEndpoints() []string {
	eps := e.endpointsFor(e.next)
	e.next++
	return eps
}

// newClient returns the run's next client of the cluster under test
// (endpoints by -target: see endpointsFor).
func (e *env) newClient() (*client.Client, error) {
	c, err := client.New(e.ctx, client.Config{Endpoints: e.nextEndpoints()})
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	return c, nil
}

// spread is how many clients it takes to reach every node the way
// -target wants: 1 for leader (one client sends everything to the
// leader), one per node for rr.
func (e *env) spread() int {
	if e.target() == "leader" || len(e.order) == 0 {
		return 1
	}
	return len(e.order)
}

// label is the workload label's target suffix (" target=rr"), "" for the
// modes that ignore -target.
func (e *env) label() string {
	if e.cfg.target == "" {
		return ""
	}
	return " target=" + e.target()
}

// goalSet is set for target rr (the goals are for clients on every
// node), set+"/leader" for target leader (only the goals that hold for
// both targets are listed there), "" when set is "".
func (e *env) goalSet(set string) string {
	if set == "" || e.target() == "rr" || e.cfg.target == "" {
		return set
	}
	return set + "/leader"
}

// rrOrder returns endpoints rotated so that the first node after the
// leader comes first and the leader last (as given when no endpoint says
// it leads): rr's clients 0 and 1 then talk to followers, client 2 to the
// leader, and so on.
func rrOrder(ctx context.Context, endpoints []string) []string {
	for i, ep := range endpoints {
		u := ep
		if !strings.Contains(u, "://") {
			u = "http://" + u
		}
		if st, err := getStatus(ctx, strings.TrimRight(u, "/"), 2*time.Second); err == nil && st.State == "Leader" {
			return append(slices.Clone(endpoints[i+1:]), endpoints[:i+1]...)
		}
	}
	return slices.Clone(endpoints)
}

// mode is one workload.
type mode struct {
	name string
	// standard: the mode is part of the standard set.
	standard bool
	// targets: the mode sends client load and honours -target.
	targets bool
	// ownsClusters: the mode starts (and kills) its own clusters.
	ownsClusters bool
	run          func(e *env, run int) (Result, error)
}

func modeByName(name string) mode {
	for _, m := range modeList {
		if m.name == name {
			return m
		}
	}
	panic("coordbench: unknown mode " + name)
}

// step is one mode with its configuration.
type step struct {
	mode mode
	cfg  config
}

// targetsOf are the targets a step of m runs with: none for the modes that
// ignore -target, else rr and leader for both, or the one given.
func targetsOf(m mode, target string) []string {
	switch {
	case !m.targets:
		return []string{""}
	case target == "both":
		return []string{"rr", "leader"}
	}
	return []string{target}
}

// plan turns -mode into steps, one per target of -target. The standard set
// runs every mode of modeNames with the flags given, and keepalive three
// times: one KeepAlive per lease (-batch 1) of -leases (10,000), batches
// of -batch (1,000) of -leases, and batches of -hold-leases (100,000;
// 5,000 in -quick) for -hold-runs runs, to show that many are held.
// Without an explicit -target, acquire and the single-call keepalive run
// with both targets and the rest with rr.
func plan(cfg *config) []step {
	add := func(steps []step, m mode, c config, target string) []step {
		for _, t := range targetsOf(m, target) {
			c.target = t
			steps = append(steps, step{m, c})
		}
		return steps
	}
	if cfg.mode != "standard" {
		return add(nil, modeByName(cfg.mode), *cfg, cfg.target)
	}
	target := func(both bool) string {
		if cfg.targetSet || !both {
			return cfg.target
		}
		return "both"
	}
	var steps []step
	for _, name := range modeNames {
		m := modeByName(name)
		if name == "keepalive" {
			single := *cfg
			single.batch = 1
			steps = add(steps, m, single, target(true))
			steps = add(steps, m, *cfg, target(false))
			hold := *cfg
			hold.leases, hold.runs = cfg.holdLeases, cfg.holdRuns
			steps = add(steps, m, hold, target(false))
			continue
		}
		steps = add(steps, m, *cfg, target(name == "acquire"))
	}
	return steps
}

// runPlan runs every step, each -runs times, and returns the number of
// runs that failed.
func runPlan(ctx context.Context, cfg *config, rep *reporter) (failed int) {
	if cfg.mode == "standard" && !cfg.quick { // the goals hold for the standard parameters, not -quick's
		rep.mu.Lock()
		rep.expect = standardGoalSets
		rep.mu.Unlock()
	}
	for _, st := range plan(cfg) {
		if ctx.Err() != nil {
			return failed
		}
		failed += runStep(ctx, st, rep)
	}
	return failed
}

// runStep runs one mode -runs times, on its own cluster or on -endpoints.
func runStep(ctx context.Context, st step, rep *reporter) (failed int) {
	e := &env{ctx: ctx, cfg: st.cfg, rep: rep}
	if !st.mode.ownsClusters {
		if st.cfg.ownCluster {
			rep.logf("%s: starting an own 3-node cluster", st.mode.name)
			c, err := startOwnCluster(ctx, &st.cfg, nil)
			if err != nil {
				rep.logf("%s: %v", st.mode.name, err)
				return 1
			}
			defer c.stop()
			e.own, e.endpoints = c, c.endpoints()
		} else {
			if err := checkEndpoints(ctx, st.cfg.endpoints); err != nil {
				rep.logf("%s: %v", st.mode.name, err)
				return 1
			}
			e.endpoints = st.cfg.endpoints
		}
		if st.cfg.target != "" {
			e.order = rrOrder(ctx, e.endpoints)
			if e.target() == "rr" {
				rep.logf("%s: target rr: client i talks to node i mod %d of %s", st.mode.name, len(e.order), strings.Join(e.order, ", "))
			} else {
				rep.logf("%s: target leader: every client is given every endpoint", st.mode.name)
			}
		}
	}
	for run := 1; run <= st.cfg.runs; run++ {
		if ctx.Err() != nil {
			return failed
		}
		e.next = 0
		res, err := st.mode.run(e, run)
		if err != nil && ctx.Err() != nil {
			rep.logf("%s run %d: interrupted (%v)", st.mode.name, run, context.Cause(ctx))
			return failed + 1
		}
		if err != nil {
			failed++
			rep.logf("%s run %d failed: %v", st.mode.name, run, err)
			continue
		}
		rep.add(res)
	}
	return failed
}

// startOwnCluster starts a cluster with -coordd, -node-flags and extra.
func startOwnCluster(ctx context.Context, cfg *config, extra []string) (*cluster, error) {
	bin, err := coorddBinary(cfg.coordd, cfg.coorddSet)
	if err != nil {
		return nil, err
	}
	args := append(append([]string{}, cfg.nodeFlags...), extra...)
	return startCluster(ctx, clusterOptions{bin: bin, extraArgs: args})
}

// checkEndpoints makes sure a coordd node answers at one of the endpoints,
// and says how to start one if none does.
func checkEndpoints(ctx context.Context, endpoints []string) error {
	var errs []string
	for _, ep := range endpoints {
		u := ep
		if !strings.Contains(u, "://") {
			u = "http://" + u
		}
		st, err := getStatus(ctx, strings.TrimRight(u, "/"), 2*time.Second)
		if err == nil {
			if st.Leader == nil {
				return fmt.Errorf("%s answers but knows no leader: is the cluster whole?", ep)
			}
			return nil
		}
		errs = append(errs, err.Error())
	}
	return fmt.Errorf("no coordd node answers at %s (%s).\n"+
		"  Start a local cluster in another terminal with `make run`, or pass -own-cluster to let coordbench start one",
		strings.Join(endpoints, ", "), strings.Join(errs, "; "))
}

// isLoopback reports whether an endpoint's host is a loopback address (or
// localhost), so that its node's pid is one of this machine's.
func isLoopback(endpoint string) bool {
	u := endpoint
	if !strings.Contains(u, "://") {
		u = "http://" + u
	}
	p, err := url.Parse(u)
	if err != nil {
		return false
	}
	h := p.Hostname()
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// bounded runs f with a context of timeout derived from e.ctx.
func (e *env) bounded(timeout time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(e.ctx, timeout)
}
