// Package workload generates the operations of a fault-injection test
// against a coordd cluster, records each one in a history (package
// test/jepsen/history) and checks the history (package test/jepsen/check).
//
// A workload talks raw HTTP to random nodes, so that every outcome is seen:
// a 2xx is ok, a definite refusal (409 cas_conflict, 503 not_leader, ...) is
// fail, and a timeout, a cut connection or 503 outcome_unknown on a write is
// unknown.
package workload

import (
	"context"
	"time"

	"github.com/coordd/coordd/test/jepsen/check"
	"github.com/coordd/coordd/test/jepsen/history"
)

// Env is what a workload gets from the harness.
type Env struct {
	Nodes []string          // HTTP base URLs of every node, e.g. "http://127.0.0.1:7101"
	Rec   *history.Recorder // records every operation
	Seed  uint64            // for the workload's own randomness
	Logf  func(format string, args ...any)
}

// Workload generates operations against the cluster and checks the history.
type Workload interface {
	Name() string
	// Run issues operations until ctx is done (bounded in count and time), recording each.
	Run(ctx context.Context, env Env) error
	// Final reads the final state after every fault is healed (linearizable reads, retried).
	Final(ctx context.Context, env Env) (history.FinalState, error)
	// Check runs the checkers that apply to this workload on the ops and final state.
	// outDir receives any HTML visualisation.
	Check(ops []history.Op, final history.FinalState, outDir string) []check.Result
	// LeaseTTL is the longest lease TTL the workload uses (the schedule waits longer than it).
	LeaseTTL() time.Duration
}
