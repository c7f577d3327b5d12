// Package check decides whether a history recorded by a fault-injection test
// (package test/jepsen/history) shows a violation of coordd's guarantees.
//
// Each checker takes the ops (and, where it needs it, the final state read
// after the faults stopped) and returns a Result. Its doc comment states what
// a valid Result proves and what it assumes of the history. The checkers
// share these rules about outcomes:
//
//   - ok: the op took effect at one instant in [Call, Return];
//   - fail: the op took no effect (its definite answer, such as cas_conflict,
//     may still be evidence, as its doc says);
//   - unknown: the op may take effect at any instant after Call, even after
//     Return, or never.
//
// Ops that fail Op.Validate are reported as anomalies by every checker that
// would have used them: a history the checkers cannot read is not a pass.
package check

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/coordd/coordd/test/jepsen/history"
)

// Result is what a checker found.
type Result struct {
	// Checker names the checker ("linearizable", "fenced-lock", ...).
	Checker string `json:"checker"`
	// Valid is true if no anomaly was found.
	Valid bool `json:"valid"`
	// Anomalies describe each violation, naming ops by #Index and times in
	// milliseconds since the start of the test.
	Anomalies []string `json:"anomalies,omitempty"`
	// Notes say what was not checked and why (a final state not read, ops
	// dropped); they are not violations.
	Notes []string `json:"notes,omitempty"`
}

// String is a report of a few lines: the verdict, then each anomaly and note.
func (r Result) String() string {
	var b strings.Builder
	verdict := "valid"
	if !r.Valid {
		verdict = fmt.Sprintf("INVALID (%d anomalies)", len(r.Anomalies))
	}
	fmt.Fprintf(&b, "%s: %s", r.Checker, verdict)
	for _, a := range r.Anomalies {
		b.WriteString("\n  anomaly: " + a)
	}
	for _, n := range r.Notes {
		b.WriteString("\n  note: " + n)
	}
	return b.String()
}

// result accumulates anomalies and notes.
type result struct {
	Result
}

func newResult(checker string) *result {
	return &result{Result{Checker: checker}}
}

func (r *result) anomaly(format string, args ...any) {
	r.Anomalies = append(r.Anomalies, fmt.Sprintf(format, args...))
}

func (r *result) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

func (r *result) done() Result {
	r.Valid = len(r.Anomalies) == 0
	return r.Result
}

// usable returns the ops of the given kinds that pass Validate, reporting the
// others as anomalies.
func (r *result) usable(ops []history.Op, kinds ...history.Kind) []history.Op {
	var out []history.Op
	for _, op := range ops {
		if !slices.Contains(kinds, op.Kind) {
			continue
		}
		if err := op.Validate(); err != nil {
			r.anomaly("malformed op, not checked: %v: %s", err, op)
			continue
		}
		out = append(out, op)
	}
	return out
}

// byKey groups ops by Key, keeping their order; keys are returned sorted.
func byKey(ops []history.Op) ([]string, map[string][]history.Op) {
	m := make(map[string][]history.Op)
	for _, op := range ops {
		m[op.Key] = append(m[op.Key], op)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys, m
}

// infinity is the return time of an op whose outcome is unknown: it may take
// effect after everything else.
const infinity = int64(math.MaxInt64)

// effectiveReturn is op.Return, or infinity for an unknown outcome.
func effectiveReturn(op history.Op) int64 {
	if op.Status == history.StatusUnknown {
		return infinity
	}
	return op.Return
}

// before reports whether a completed before b was called: then a took
// effect (if at all) before b did. An unknown a precedes nothing.
func before(a, b history.Op) bool { return effectiveReturn(a) < b.Call }

// realTimeOrder checks that tokens increase in real time: whenever op a
// returned before op b was called, a's token is lower than b's, or equal if
// sameHolder(a, b) (a retry that got the same token back). token gives an
// op's token. It reports each op b whose token is not above the highest
// token of the ops that returned before its call, naming that op.
// O(n log n).
func realTimeOrder(r *result, what string, ops []history.Op, token func(history.Op) uint64, sameHolder func(a, b history.Op) bool) {
	byReturn := slices.Clone(ops)
	slices.SortStableFunc(byReturn, func(a, b history.Op) int { return cmpInt64(a.Return, b.Return) })
	byCall := slices.Clone(ops)
	slices.SortStableFunc(byCall, func(a, b history.Op) int { return cmpInt64(a.Call, b.Call) })
	var (
		p    int
		max  uint64
		maxO history.Op
		c    = capped{r: r, what: what}
	)
	for _, b := range byCall {
		for p < len(byReturn) && byReturn[p].Return < b.Call {
			if t := token(byReturn[p]); t > max {
				max, maxO = t, byReturn[p]
			}
			p++
		}
		t := token(b)
		if max != 0 && (t < max || t == max && !sameHolder(maxO, b)) {
			c.anomaly("%s: token %d of %s is not above token %d of %s, which completed (at %s) before it began (at %s)",
				what, t, b, max, maxO, history.FormatTime(maxO.Return), history.FormatTime(b.Call))
		}
	}
	c.flush()
}

// sameLease reports whether two ops were sent for the same (known) lease.
func sameLease(a, b history.Op) bool { return a.In.Lease != 0 && a.In.Lease == b.In.Lease }

func cmpInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// maxAnomaliesPerCheck caps the anomalies one check reports about one key, so
// that a broken run gives a readable report.
const maxAnomaliesPerCheck = 20

// capped reports at most maxAnomaliesPerCheck anomalies through add, then
// one line counting the rest.
type capped struct {
	r     *result
	what  string
	count int
}

func (c *capped) anomaly(format string, args ...any) {
	c.count++
	if c.count <= maxAnomaliesPerCheck {
		c.r.anomaly(format, args...)
	}
}

func (c *capped) flush() {
	if c.count > maxAnomaliesPerCheck {
		c.r.anomaly("%s: %d more anomalies of this kind not listed", c.what, c.count-maxAnomaliesPerCheck)
	}
}
