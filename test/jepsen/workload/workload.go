// Package workload generates the operations of a fault-injection test
// against a coordd cluster, records each one in a history (package
// test/jepsen/history) and checks the history (package test/jepsen/check).
//
// A workload talks raw HTTP to random nodes (not the Go client, which
// retries), so that every outcome is seen and recorded as the history's
// contract says: a 2xx is ok; a refused connection, 503 not_leader,
// no_leader, leader_not_ready or catching_up, and every 4xx (cas_conflict,
// key_not_found, stale_token, ...) are fail; a timeout, a cut connection
// and any other 5xx (outcome_unknown, forward_failed, shutting_down) on a
// request that may change state are unknown (a lock client's agent
// process that is lost, "agent_lost", too). Every request has a timeout
// (2 s, or its wait plus 2 s); every loop is bounded in count and ends
// when Run's context is done; Run returns when all its goroutines have
// (and, for the lock clients, all its agent processes were killed and
// reaped).
//
// The workloads:
//
//   - Register(keys): 5 clients get (linearizable), put, cas and delete
//     keys through random nodes, with a unique value per write; each key is
//     used for 10 s, then the clients move to fresh keys, which keeps every
//     key's history short for porcupine. Checks: check.Linearizable per key,
//     check.Durability of the KV against the final values.
//   - FencedLock(fenced): 4 clients loop: grant a 1 s lease and keep it
//     alive, acquire LockName (waiting), read the resource held by the
//     workload with the token, pause 30% of the time for up to 1.5 × TTL,
//     write back what they read plus one element, release, revoke. Each
//     client is an OS process of its own, an agent (command
//     test/jepsen/lockclient, built by Run into a temporary folder) that
//     the workload drives over its stdin and stdout: the agent sends the
//     client's requests, to the nodes and to the resource (which the
//     workload serves on a loopback listener), and keeps the lease alive
//     at TTL/3. A pause is real: the workload stops the agent's process
//     with SIGSTOP, keepalives and all, and resumes it with SIGCONT. Ops
//     are recorded in the workload, from before a request goes to the
//     agent until its answer is back. fenced: a fencing.Guard checks the
//     token of every read and write; unfenced: everything is accepted,
//     and check.FencedLock finds overlapping critical sections, lost
//     writes and lower tokens accepted after higher ones.
//   - Election(): 3 candidates with their own 2 s leases campaign on
//     ElectionName, hold, sometimes proclaim, resign (or, 10% of the time,
//     abandon their lease as a crashed holder would); one observer per node
//     follows the election with blocking queries through that node; at the
//     end a long-lived lease campaigns, so that the final state has a
//     leader. Checks: check.Election (slack LeaseBound(TTL)) and
//     check.Durability of leases and leaderships.
//
// Process ids: register clients 0..4, lock clients 1000..1003, election
// candidates 2000.., observers 2100 + node index; each Check reads only its
// own workload's ops.
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
