package check

import (
	"slices"
	"strconv"

	"github.com/coordd/coordd/test/jepsen/history"
)

// FencedLock checks the fenced-lock workload: clients acquire a lock
// (acquire, Out.Token), read a resource held by the harness (resource-read,
// In.Token), pause, write back what they read plus one element of their own
// (resource-write, In.Token, In.Value) and release. The resource is named
// like the lock (Key), and final.Resources holds its elements at the end.
// The same checker judges the unfenced variant, whose resource accepts every
// write: it must find anomalies there.
//
// Valid proves, for each lock name:
//
//  1. Unique tokens: no token was returned by two ok acquires of different
//     leases (the same lease twice is an idempotent retry).
//  2. Tokens increase in real time: if an ok acquire returned before
//     another was called, its token is lower (or the same, for the same
//     lease: a retry).
//  3. The resource never accepted a lower token after a higher one: over its
//     ok reads and writes that carry a token, in the resource's acceptance
//     order (Out.Seq; if some op lacks a Seq, Return order, with a note),
//     tokens never decrease.
//  4. No accepted write was lost: the element of every ok resource-write is
//     in final.Resources[name], no element is there twice, and every
//     element there is the element of an ok write or of one of unknown
//     outcome (never of a refused one).
//  5. The critical sections of accepted writes never overlap. The critical
//     section of an ok write w runs from the end of the last ok
//     resource-read that w's process made with w's token before w (the read
//     whose value w writes back), or if there is none, from the end of the
//     acquire that returned w's token, to the start of w. Using Return of
//     the start and Call of the write keeps only the part of the interval
//     that certainly belongs to the section, so an overlap reported is a
//     certain one: both holders had read the resource before either wrote,
//     and both writes were accepted — a lost update in the making.
//
// Check 3 is fencing.Guard's rule (a token equal to the highest is accepted:
// the same holder writes again), seen from outside.
//
// Assumes: the lock has one holder at a time (no semaphore limit); the
// resource holds its own mutex across the token check, the read or write
// and the Seq it gives each accepted read and write (a Guard orders checks,
// not the operations that follow them); reads record the token the client
// holds even when the resource does not check it; every writer records its
// ops; final.Resources is read after every writer stopped. Without a recorded read, check 5 falls back to the acquire, and
// can then flag a correct run: a paused holder whose write lands after its
// successor acquired the lock but before the successor touched the
// resource. Record the reads.
//
// Why fencing passes 5 and the unfenced variant fails it: a fenced resource
// that checks tokens on reads as well as writes refuses a write whose token
// is below one it has seen, so once a newer holder has read, the older
// holder's write is refused and is not an accepted write.
func FencedLock(ops []history.Op, final history.FinalState) Result {
	r := newResult("fenced-lock")
	used := r.usable(ops, history.KindAcquire, history.KindResourceRead, history.KindResourceWrite)
	names, perName := byKey(used)
	if final.Resources == nil {
		r.note("no final state of the resources: lost writes (check 4) not checked")
	}
	for _, name := range names {
		var acquires, accesses, writes []history.Op
		for _, op := range perName[name] {
			switch {
			case op.Kind == history.KindAcquire && op.Status == history.StatusOK:
				if op.Out.Token == 0 {
					r.anomaly("lock %q: ok acquire without a token: %s", name, op)
					continue
				}
				acquires = append(acquires, op)
			case op.Kind == history.KindAcquire:
			case op.Status == history.StatusOK:
				if op.In.Token != 0 {
					accesses = append(accesses, op)
				}
				if op.Kind == history.KindResourceWrite {
					writes = append(writes, op)
				}
			}
		}
		uniqueTokens(r, name, acquires)
		realTimeOrder(r, "lock "+quote(name), acquires, func(op history.Op) uint64 { return op.Out.Token }, sameLease)
		acceptedInOrder(r, name, accesses)
		if final.Resources != nil {
			noLostWrites(r, name, perName[name], writes, final.Resources[name])
		}
		noOverlappingSections(r, name, perName[name], acquires, writes)
	}
	if final.Resources != nil {
		for name, elems := range final.Resources {
			if _, ok := perName[name]; !ok && len(elems) > 0 {
				r.note("resource %q holds %d elements but the history has no op on it", name, len(elems))
			}
		}
	}
	return r.done()
}

// uniqueTokens reports a token returned to two different leases.
func uniqueTokens(r *result, name string, acquires []history.Op) {
	first := make(map[uint64]history.Op)
	c := capped{r: r, what: "lock " + quote(name) + ": duplicate tokens"}
	for _, op := range acquires {
		t := op.Out.Token
		f, seen := first[t]
		switch {
		case !seen:
			first[t] = op
		case f.In.Lease != op.In.Lease || f.In.Lease == 0 && f.Process != op.Process:
			c.anomaly("lock %q: token %d given to two holders: %s and %s", name, t, f, op)
		}
	}
	c.flush()
}

// acceptedInOrder reports a token the resource accepted after a higher one.
func acceptedInOrder(r *result, name string, accesses []history.Op) {
	ordered := slices.Clone(accesses)
	bySeq := true
	for _, op := range ordered {
		if op.Out.Seq == 0 {
			bySeq = false
		}
	}
	if bySeq {
		slices.SortStableFunc(ordered, func(a, b history.Op) int { return cmpUint64(a.Out.Seq, b.Out.Seq) })
	} else {
		r.note("resource %q: some accepted ops have no Seq; acceptance order taken from return times", name)
		slices.SortStableFunc(ordered, func(a, b history.Op) int { return cmpInt64(a.Return, b.Return) })
	}
	c := capped{r: r, what: "resource " + quote(name) + ": lower token accepted"}
	var high history.Op
	for _, op := range ordered {
		if op.In.Token < high.In.Token {
			c.anomaly("resource %q accepted token %d (%s) after token %d (%s)", name, op.In.Token, op, high.In.Token, high)
		}
		if op.In.Token > high.In.Token {
			high = op
		}
	}
	c.flush()
}

// noLostWrites compares the accepted writes with the resource's final
// elements.
func noLostWrites(r *result, name string, all, writes []history.Op, elems []string) {
	count := make(map[string]int)
	for _, e := range elems {
		count[e]++
	}
	c := capped{r: r, what: "resource " + quote(name) + ": lost or foreign elements"}
	accepted := make(map[string]bool)
	for _, w := range writes {
		accepted[w.In.Value] = true
		if count[w.In.Value] == 0 {
			c.anomaly("resource %q: accepted write lost: element %q of %s is not in the final state (%d elements)", name, w.In.Value, w, len(elems))
		}
	}
	refused := make(map[string]history.Op)
	for _, op := range all {
		if op.Kind != history.KindResourceWrite {
			continue
		}
		switch op.Status {
		case history.StatusFail:
			refused[op.In.Value] = op
		case history.StatusUnknown:
			accepted[op.In.Value] = true // maybe
		}
	}
	for _, e := range uniqueInOrder(elems) {
		switch {
		case count[e] > 1:
			c.anomaly("resource %q: element %q is in the final state %d times", name, e, count[e])
		case accepted[e]:
		case refused[e].Kind != "":
			c.anomaly("resource %q: element %q is in the final state, but its write was not accepted: %s", name, e, refused[e])
		default:
			c.anomaly("resource %q: element %q is in the final state, but no write in the history added it", name, e)
		}
	}
	c.flush()
}

// section is the certain part of a critical section: from the Return of its
// start op to the Call of its accepted write.
type section struct {
	start, end int64
	from, w    history.Op
}

// noOverlappingSections reports accepted writes whose critical sections
// overlap.
func noOverlappingSections(r *result, name string, all, acquires, writes []history.Op) {
	acquiredBy := make(map[uint64]history.Op)
	for _, a := range acquires {
		if _, ok := acquiredBy[a.Out.Token]; !ok {
			acquiredBy[a.Out.Token] = a
		}
	}
	var sections []section
	unchecked := 0
	for _, w := range writes {
		from, ok := history.Op{}, false
		for _, rd := range all {
			if rd.Kind == history.KindResourceRead && rd.Status == history.StatusOK && rd.Process == w.Process &&
				rd.In.Token == w.In.Token && rd.Return <= w.Call && (!ok || rd.Return > from.Return) {
				from, ok = rd, true
			}
		}
		if !ok {
			from, ok = acquiredBy[w.In.Token]
		}
		if !ok {
			unchecked++
			continue
		}
		if from.Return <= w.Call {
			sections = append(sections, section{start: from.Return, end: w.Call, from: from, w: w})
		}
	}
	if unchecked > 0 {
		r.note("resource %q: %d accepted writes have no read or acquire of their token in the history: their critical sections are not checked", name, unchecked)
	}
	slices.SortStableFunc(sections, func(a, b section) int { return cmpInt64(a.start, b.start) })
	c := capped{r: r, what: "resource " + quote(name) + ": overlapping critical sections"}
	var longest *section
	for i := range sections {
		s := &sections[i]
		if longest != nil && longest.end > s.start && longest.w.In.Token != s.w.In.Token {
			c.anomaly("resource %q: critical sections of accepted writes overlap: token %d from %s to write %s, and token %d from %s to write %s, overlap in [%s..%s]",
				name, longest.w.In.Token, longest.from, longest.w, s.w.In.Token, s.from, s.w,
				history.FormatTime(s.start), history.FormatTime(min(longest.end, s.end)))
		}
		if longest == nil || s.end > longest.end {
			longest = s
		}
	}
	c.flush()
}

func uniqueInOrder(elems []string) []string {
	seen := make(map[string]bool)
	var out []string
	for _, e := range elems {
		if !seen[e] {
			seen[e] = true
			out = append(out, e)
		}
	}
	return out
}

func cmpUint64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func quote(s string) string { return strconv.Quote(s) }
