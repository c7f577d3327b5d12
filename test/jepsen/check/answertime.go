package check

import (
	"slices"
	"time"

	"github.com/coordd/coordd/test/jepsen/history"
)

// Window is a time during which one node was faulted: stopped, killed, cut
// off from its peers or out of disk, from the moment the fault began until
// the node was healed and its /readyz answered 200 again (a restarted or
// resumed node is healthy only once ready). Node names the node as ops do
// (its HTTP host:port); Start and End are on the history's clock, End -1
// when the node was never ready again.
type Window struct {
	Node  string `json:"node"`
	Start int64  `json:"start"`
	End   int64  `json:"end"`
}

// notAnswered are the error codes of an op that got no answer from the
// node: the client gave up or the connection broke.
var notAnswered = map[string]bool{"timeout": true, "connection_error": true, "connection_refused": true}

// AnswerTime checks liveness, not safety: while a majority of the nodes is
// healthy, every op of the given kinds sent to a healthy node is answered
// — a success, or any answer of the node itself, such as a retryable 503
// not_leader or no_leader, or outcome_unknown — within bound of its call.
// An op counts when its node was healthy, and a majority of all nodes was
// healthy, for the whole of [Call, Call+bound]; ops cancelled by the end
// of the run are left out. Each op that took longer, or got no answer, is
// an anomaly. The notes give the longest answer time counted.
//
// It assumes the ops do not block on purpose (no campaign or lock with a
// wait, no blocking read) and that windows cover every faulted node.
func AnswerTime(ops []history.Op, windows []Window, nodes int, bound time.Duration, kinds ...history.Kind) Result {
	r := newResult("answer-time")
	b := bound.Nanoseconds()
	faulted := func(node string, from, to int64) bool {
		for _, w := range windows {
			end := w.End
			if end < 0 {
				end = 1<<63 - 1
			}
			if w.Node == node && w.Start < to && from < end {
				return true
			}
		}
		return false
	}
	quorum := func(from, to int64) bool {
		var down []string
		for _, w := range windows {
			end := w.End
			if end < 0 {
				end = 1<<63 - 1
			}
			if w.Start < to && from < end && !slices.Contains(down, w.Node) {
				down = append(down, w.Node)
			}
		}
		return nodes-len(down) > nodes/2
	}
	var counted int
	var longest time.Duration
	var longestOp history.Op
	for _, op := range r.usable(ops, kinds...) {
		if op.Error == "canceled" || op.Node == "" {
			continue
		}
		from, to := op.Call, op.Call+b
		if faulted(op.Node, from, to) || !quorum(from, to) {
			continue
		}
		counted++
		took := time.Duration(op.Return - op.Call)
		if took > longest {
			longest, longestOp = took, op
		}
		switch {
		case notAnswered[op.Error]:
			r.anomaly("no answer: %s (%s, healthy node, quorum healthy) after %s: %s", op.Error, op.Node, took.Round(time.Millisecond), op)
		case took > bound:
			r.anomaly("answered after %s > %s (healthy node %s, quorum healthy): %s", took.Round(time.Millisecond), bound, op.Node, op)
		}
	}
	r.note("%d ops sent to healthy nodes with a healthy quorum; bound %s; %d fault windows", counted, bound, len(windows))
	if counted > 0 {
		r.note("longest answer %s: %s", longest.Round(time.Millisecond), longestOp)
	}
	return r.done()
}
