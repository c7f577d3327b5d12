package check

import (
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/coordd/coordd/test/jepsen/history"
)

// Election checks the election workload: candidates campaign (campaign,
// Out.Leader and Out.Token when they lead), proclaim and resign; observers
// (one Process each) report the leader of each election they watch
// (observe: Out.Leader, Out.Lease, Out.Value, Out.Token; Out.Leader false
// means "no leader"); final.Elections holds each election's holder at the
// end.
//
// A witness of token T is an op that shows T's holder at some instant in
// its [Call, Return]: an ok campaign that leads (holder: In.Lease, In.Value)
// or an ok observe that names a leader (Out.Lease, Out.Value).
//
// Valid proves, for each election name:
//
//  1. One holder per token: every witness of token T, and the final holder
//     if its token is T, name the same lease, and the same value except for
//     values that a proclaim (ok or unknown) with token T set.
//  2. Tokens increase over time: if an ok campaign that leads returned
//     before another was called, its token is lower (or the same, for the
//     same lease: a retry or a re-campaign of the leader); and each observer's
//     leader observations, in the order it made them, never go back to a
//     lower token.
//  3. Observers converge: each observer's last ok observation names the
//     final holder (lease, value and token), or no leader if there is none.
//  4. No stale observation beyond the slack: the leadership of token T is
//     over, at the latest, at end(T) = the earliest Return among an ok
//     resign with token T, an ok lease-revoke of T's lease, and every
//     witness of a higher token (a higher token's holder exists only after
//     T's leadership ended). An observation of T whose Call is later than
//     end(T) + slack is reported: the observer was told about a leader
//     that had been gone for more than slack before it asked.
//
// The slack is how stale an observation may legitimately be: a stream or
// blocking query served by a follower reports the state that follower has
// applied, which lags the leader. Pass the bound the harness relies on (the
// lease bound of docs/api.md's "Lease and failover bounds"); 0 demands that no
// observation begins after its leader was provably gone.
//
// Assumes: an observe op's [Call, Return] contains an instant at which the
// node's state was the one reported, up to that node's lag (see history.Op:
// for a stream event, Call is when the previous event arrived); every
// candidate and observer records its ops; the observers run until after
// the final state was read, with no campaign, resign or proclaim after it
// began and long enough for every observer to see the last change. Only
// campaign, resign, proclaim, observe and lease-revoke ops are read: locks
// are FencedLock's.
func Election(ops []history.Op, final history.FinalState, slack time.Duration) Result {
	r := newResult("election")
	used := r.usable(ops, history.KindCampaign, history.KindResign, history.KindProclaim, history.KindObserve)
	revokedAt := make(map[uint64]history.Op) // lease -> earliest ok revoke
	for _, op := range r.usable(ops, history.KindLeaseRevoke) {
		if op.Status == history.StatusOK {
			if prev, ok := revokedAt[op.In.Lease]; !ok || op.Return < prev.Return {
				revokedAt[op.In.Lease] = op
			}
		}
	}
	if final.Elections == nil {
		r.note("no final state of the elections: observer convergence (check 3) not checked")
	}
	names, perName := byKey(used)
	for _, name := range names {
		e := newElectionOps(perName[name])
		e.oneHolderPerToken(r, name, final)
		realTimeOrder(r, "election "+quote(name), e.acquired, func(op history.Op) uint64 { return op.Out.Token }, sameLease)
		e.observersNeverGoBack(r, name)
		if final.Elections != nil {
			e.observersConverge(r, name, final.Elections[name])
		}
		e.noStaleObservations(r, name, slack, revokedAt)
	}
	return r.done()
}

type witness struct {
	op history.Op
	h  history.Holder
}

// electionOps are one election's ops, sorted out.
type electionOps struct {
	acquired     []history.Op               // ok campaigns that lead
	witnesses    []witness                  // acquired, and observations of a leader
	observations map[int][]history.Op       // ok observations by observer, in Call order
	proclaimed   map[uint64]map[string]bool // token -> values proclaimed
	resignedAt   map[uint64]history.Op      // token -> earliest ok resign
}

func newElectionOps(ops []history.Op) *electionOps {
	e := &electionOps{
		observations: make(map[int][]history.Op),
		proclaimed:   make(map[uint64]map[string]bool),
		resignedAt:   make(map[uint64]history.Op),
	}
	for _, op := range ops {
		switch op.Kind {
		case history.KindCampaign:
			if op.Status == history.StatusOK && op.Out.Leader {
				e.acquired = append(e.acquired, op)
				e.witnesses = append(e.witnesses, witness{op, history.Holder{Lease: op.In.Lease, Value: op.In.Value, Token: op.Out.Token}})
			}
		case history.KindObserve:
			if op.Status != history.StatusOK {
				continue
			}
			e.observations[op.Process] = append(e.observations[op.Process], op)
			if op.Out.Leader {
				e.witnesses = append(e.witnesses, witness{op, history.Holder{Lease: op.Out.Lease, Value: op.Out.Value, Token: op.Out.Token}})
			}
		case history.KindProclaim:
			if op.Status != history.StatusFail {
				if e.proclaimed[op.In.Token] == nil {
					e.proclaimed[op.In.Token] = make(map[string]bool)
				}
				e.proclaimed[op.In.Token][op.In.Value] = true
			}
		case history.KindResign:
			if prev, ok := e.resignedAt[op.In.Token]; op.Status == history.StatusOK && (!ok || op.Return < prev.Return) {
				e.resignedAt[op.In.Token] = op
			}
		}
	}
	for _, obs := range e.observations {
		slices.SortStableFunc(obs, func(a, b history.Op) int { return cmpInt64(a.Call, b.Call) })
	}
	return e
}

// observers returns the observers' process ids, sorted.
func (e *electionOps) observers() []int {
	ps := make([]int, 0, len(e.observations))
	for p := range e.observations {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps
}

func (e *electionOps) oneHolderPerToken(r *result, name string, final history.FinalState) {
	byToken := make(map[uint64][]witness)
	for _, w := range e.witnesses {
		byToken[w.h.Token] = append(byToken[w.h.Token], w)
	}
	if h, ok := final.Elections[name]; ok && h.Token != 0 {
		byToken[h.Token] = append(byToken[h.Token], witness{h: h})
	}
	tokens := make([]uint64, 0, len(byToken))
	for t := range byToken {
		tokens = append(tokens, t)
	}
	slices.Sort(tokens)
	c := capped{r: r, what: "election " + quote(name) + ": two holders for one token"}
	for _, t := range tokens {
		ws := byToken[t]
		var lease, value *witness
		for i := range ws {
			w := &ws[i]
			if lease == nil {
				lease = w
			} else if w.h.Lease != lease.h.Lease {
				c.anomaly("election %q: token %d has two holders: lease %d (%s) and lease %d (%s)",
					name, t, lease.h.Lease, describeWitness(*lease), w.h.Lease, describeWitness(*w))
				break
			}
			if e.proclaimed[t][w.h.Value] {
				continue
			}
			if value == nil {
				value = w
			} else if w.h.Value != value.h.Value {
				c.anomaly("election %q: token %d has two holders: value %q (%s) and value %q (%s), and no proclaim set either",
					name, t, value.h.Value, describeWitness(*value), w.h.Value, describeWitness(*w))
				break
			}
		}
	}
	c.flush()
}

func describeWitness(w witness) string {
	if w.op.Kind == "" {
		return "the final state"
	}
	return w.op.String()
}

func (e *electionOps) observersNeverGoBack(r *result, name string) {
	c := capped{r: r, what: "election " + quote(name) + ": observers going back"}
	for _, p := range e.observers() {
		var high history.Op
		for _, o := range e.observations[p] {
			if !o.Out.Leader {
				continue
			}
			if o.Out.Token < high.Out.Token {
				c.anomaly("election %q: observer p%d went back from token %d (%s) to token %d (%s)",
					name, p, high.Out.Token, high, o.Out.Token, o)
			}
			if o.Out.Token > high.Out.Token {
				high = o
			}
		}
	}
	c.flush()
}

func (e *electionOps) observersConverge(r *result, name string, h history.Holder) {
	want := "no leader"
	if h.Token != 0 {
		want = fmt.Sprintf("lease %d, value %q, token %d", h.Lease, h.Value, h.Token)
	}
	for _, p := range e.observers() {
		obs := e.observations[p]
		last := obs[len(obs)-1]
		got := history.Holder{}
		if last.Out.Leader {
			got = history.Holder{Lease: last.Out.Lease, Value: last.Out.Value, Token: last.Out.Token}
		}
		if got != h {
			r.anomaly("election %q: observer p%d's last observation %s is not the final leader (%s)", name, p, last, want)
		}
	}
}

func (e *electionOps) noStaleObservations(r *result, name string, slack time.Duration, revokedAt map[uint64]history.Op) {
	// The witnesses by token, with for each the earliest Return among it
	// and all witnesses of higher tokens.
	ws := slices.Clone(e.witnesses)
	slices.SortStableFunc(ws, func(a, b witness) int { return cmpUint64(a.h.Token, b.h.Token) })
	earliest := make([]int, len(ws)) // index into ws of the earliest return in ws[i:]
	for i := len(ws) - 1; i >= 0; i-- {
		earliest[i] = i
		if i+1 < len(ws) && ws[earliest[i+1]].op.Return < ws[i].op.Return {
			earliest[i] = earliest[i+1]
		}
	}
	leases := make(map[uint64][]uint64) // token -> leases of its witnesses
	for _, w := range ws {
		if !slices.Contains(leases[w.h.Token], w.h.Lease) {
			leases[w.h.Token] = append(leases[w.h.Token], w.h.Lease)
		}
	}
	// end returns when token t's leadership was over at the latest, and
	// the op that shows it.
	end := func(t uint64) (history.Op, bool) {
		var best history.Op
		found := false
		consider := func(op history.Op) {
			if !found || op.Return < best.Return {
				best, found = op, true
			}
		}
		if i := sort.Search(len(ws), func(i int) bool { return ws[i].h.Token > t }); i < len(ws) {
			consider(ws[earliest[i]].op)
		}
		if op, ok := e.resignedAt[t]; ok {
			consider(op)
		}
		for _, l := range leases[t] {
			if op, ok := revokedAt[l]; ok {
				consider(op)
			}
		}
		return best, found
	}
	c := capped{r: r, what: "election " + quote(name) + ": stale observations"}
	for _, p := range e.observers() {
		for _, o := range e.observations[p] {
			if !o.Out.Leader {
				continue
			}
			ended, ok := end(o.Out.Token)
			if ok && o.Call > ended.Return+int64(slack) {
				c.anomaly("election %q: observer p%d reported leader token %d (lease %d) in %s, which began %s after that leadership was over (by %s: %s); the slack is %s",
					name, p, o.Out.Token, o.Out.Lease, o, time.Duration(o.Call-ended.Return), history.FormatTime(ended.Return), ended, slack)
			}
		}
	}
	c.flush()
}
