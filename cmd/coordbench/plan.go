package main

import (
	"context"
	"fmt"
	"net"
	"net/url"
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
}

// logf prints a progress line.
func (e *env) logf(format string, args ...any) { e.rep.logf(format, args...) }

// newClient returns a client of the cluster under test.
func (e *env) newClient() (*client.Client, error) {
	c, err := client.New(e.ctx, client.Config{Endpoints: e.endpoints})
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	return c, nil
}

// mode is one workload.
type mode struct {
	name string
	// ownsClusters: the mode starts (and kills) its own clusters.
	ownsClusters bool
	run          func(e *env, run int) (Result, error)
}

func modeByName(name string) mode {
	switch name {
	case "acquire":
		return mode{name: name, run: runAcquire}
	case "acquire-new":
		return mode{name: name, run: runAcquireNew}
	case "keepalive":
		return mode{name: name, run: runKeepalive}
	case "handoff":
		return mode{name: name, run: runHandoff}
	case "holder-crash":
		return mode{name: name, run: runHolderCrash}
	case "leader-kill":
		return mode{name: name, ownsClusters: true, run: runLeaderKill}
	case "recovery":
		return mode{name: name, ownsClusters: true, run: runRecovery}
	case "leader-faults":
		return mode{name: name, ownsClusters: true, run: runLeaderFaults}
	}
	if m, ok := scaleModeByName(name); ok {
		return m
	}
	panic("coordbench: unknown mode " + name)
}

// step is one mode with its configuration.
type step struct {
	mode mode
	cfg  config
}

// plan turns -mode into steps. The standard set runs every mode with the
// flags given, and keepalive twice: with -leases (10,000) and with
// -hold-leases (100,000; 5,000 in -quick) for -hold-runs runs, to show
// that many are held.
func plan(cfg *config) []step {
	if cfg.mode == "scale" {
		return scaleSteps(cfg)
	}
	if cfg.mode != "standard" {
		return []step{{modeByName(cfg.mode), *cfg}}
	}
	var steps []step
	for _, name := range modeNames {
		steps = append(steps, step{modeByName(name), *cfg})
		if name == "keepalive" {
			hold := *cfg
			hold.leases, hold.runs = cfg.holdLeases, cfg.holdRuns
			steps = append(steps, step{modeByName(name), hold})
		}
	}
	return steps
}

// runPlan runs every step, each -runs times, and returns the number of
// runs that failed.
func runPlan(ctx context.Context, cfg *config, rep *reporter) (failed int) {
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
	}
	for run := 1; run <= st.cfg.runs; run++ {
		if ctx.Err() != nil {
			return failed
		}
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
