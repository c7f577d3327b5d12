package check

import (
	"fmt"
	"slices"

	"github.com/coordd/coordd/test/jepsen/history"
)

// Durability checks that what the cluster acknowledged is in the final state
// read after the faults stopped: KV writes, lease grants and leaderships
// (campaigns that lead and lock acquires).
//
// Valid proves:
//
//  1. KV, for each key written in ops: the final state (value, or absent)
//     is the effect of an op that no acknowledged op supersedes. The
//     candidates are the put and cas ops (ok or unknown) that wrote the
//     final value, or, for an absent key, the deletes (ok or unknown) and
//     the initial absent state. A candidate is superseded by an ok put, cas
//     or delete that was called after the candidate returned (an unknown op
//     never returned, so is never superseded; the initial state is
//     superseded by every ok op). If every candidate is superseded, an
//     acknowledged write was lost (or the final value was never written).
//     Also, if the final modify index is known, no ok put or cas got a
//     higher index, and the one that got exactly that index wrote the final
//     value.
//  2. Leases: every lease of an ok lease-grant is in final.Leases, unless a
//     lease-revoke of it (ok or unknown) is in ops.
//  3. Leaderships: for every ok campaign that leads and every ok acquire
//     (name Key, token T, lease L), the final holder of the name has token T
//     and lease L, or the history has an op that may have ended that
//     leadership: a resign or release (ok or unknown) of the name with
//     token T, or a lease-revoke (ok or unknown) of L. In any case the final
//     holder's token is not below T.
//
// Assumes: final was read with linearizable reads after every client
// stopped; the leases granted in ops are kept alive (or outlive the test)
// until the final read, so that none expires — pass only the ops of
// workloads where that holds; KV keys are absent when the history begins;
// failed ops took no effect.
func Durability(ops []history.Op, final history.FinalState) Result {
	r := newResult("durability")
	kv := r.usable(ops, history.KindPut, history.KindCAS, history.KindDelete)
	if final.KV == nil {
		if len(kv) > 0 {
			r.note("no final state of the KV: %d writes not checked", len(kv))
		}
	} else {
		keys, perKey := byKey(kv)
		for _, key := range keys {
			fv, present := final.KV[key]
			kvDurable(r, key, perKey[key], fv, present)
		}
	}

	revoked := make(map[uint64]bool)
	for _, op := range r.usable(ops, history.KindLeaseRevoke) {
		if op.Status != history.StatusFail {
			revoked[op.In.Lease] = true
		}
	}
	grants := r.usable(ops, history.KindLeaseGrant)
	if final.Leases == nil {
		if len(grants) > 0 {
			r.note("no final state of the leases: %d grants not checked", len(grants))
		}
	} else {
		c := capped{r: r, what: "lost leases"}
		for _, g := range grants {
			if g.Status == history.StatusOK && !revoked[g.Out.Lease] && !slices.Contains(final.Leases, g.Out.Lease) {
				c.anomaly("lease %d granted by %s is not in the final state, and no revoke of it was sent", g.Out.Lease, g)
			}
		}
		c.flush()
	}

	leads := r.usable(ops, history.KindCampaign, history.KindAcquire, history.KindResign, history.KindRelease)
	if final.Elections == nil {
		if len(leads) > 0 {
			r.note("no final state of the elections and locks: leaderships not checked")
		}
		return r.done()
	}
	type nameToken struct {
		name  string
		token uint64
	}
	ended := make(map[nameToken]bool)
	for _, op := range leads {
		if (op.Kind == history.KindResign || op.Kind == history.KindRelease) && op.Status != history.StatusFail {
			ended[nameToken{op.Key, op.In.Token}] = true
		}
	}
	c := capped{r: r, what: "lost leaderships"}
	for _, op := range leads {
		var token uint64
		switch {
		case op.Status != history.StatusOK:
			continue
		case op.Kind == history.KindCampaign && op.Out.Leader, op.Kind == history.KindAcquire:
			token = op.Out.Token
		default:
			continue
		}
		h := final.Elections[op.Key]
		switch {
		case h.Token != 0 && h.Token < token:
			c.anomaly("%q: the final holder's token %d is below token %d of %s", op.Key, h.Token, token, op)
		case h.Token == token && h.Lease != op.In.Lease:
			c.anomaly("%q: the final holder of token %d is lease %d, but %s gave it to lease %d", op.Key, token, h.Lease, op, op.In.Lease)
		case h.Token == token:
		case ended[nameToken{op.Key, token}] || revoked[op.In.Lease]:
		default:
			now := "has no holder"
			if h.Token != 0 {
				now = fmt.Sprintf("is held by lease %d with token %d", h.Lease, h.Token)
			}
			c.anomaly("%q: leadership lost: %s made lease %d the holder with token %d, the final state %s, and no resign, release or revoke of it was sent",
				op.Key, op, op.In.Lease, token, now)
		}
	}
	c.flush()
	return r.done()
}

// kvDurable checks one key's final state against its writes.
func kvDurable(r *result, key string, ops []history.Op, fv history.KV, present bool) {
	var acked, candidates []history.Op
	for _, op := range ops {
		if op.Status == history.StatusOK {
			acked = append(acked, op)
		}
		if op.Status == history.StatusFail {
			continue
		}
		if present && op.Kind != history.KindDelete && op.In.Value == fv.Value || !present && op.Kind == history.KindDelete {
			candidates = append(candidates, op)
		}
	}
	superseded := func(c history.Op) bool {
		for _, w := range acked {
			if w.Index != c.Index && before(c, w) {
				return true
			}
		}
		return false
	}
	explained := !present && len(acked) == 0 // the initial state
	for _, c := range candidates {
		if !superseded(c) {
			explained = true
			break
		}
	}
	state := "absent"
	if present {
		state = fmt.Sprintf("%q (modify index %d)", fv.Value, fv.Index)
	}
	if !explained {
		msg := fmt.Sprintf("key %q: acknowledged write lost: the final state is %s", key, state)
		if len(candidates) == 0 && present {
			msg += ", a value no op in the history wrote"
		} else if len(candidates) > 0 {
			msg += fmt.Sprintf(", from %s", candidates[len(candidates)-1])
		}
		msg += "; the last acknowledged ops are " + describeLatest(acked)
		r.anomaly("%s", msg)
	}
	if !present || fv.Index == 0 {
		return
	}
	for _, w := range acked {
		if w.Kind == history.KindDelete || w.Out.Index == 0 {
			continue
		}
		switch {
		case w.Out.Index > fv.Index:
			r.anomaly("key %q: acknowledged write lost: %s got modify index %d, above the final state's %s", key, w, w.Out.Index, state)
		case w.Out.Index == fv.Index && w.In.Value != fv.Value:
			r.anomaly("key %q: %s got modify index %d, but the final state at that index is %s", key, w, w.Out.Index, state)
		}
	}
}

// describeLatest lists the acknowledged ops that no other acknowledged op
// follows in real time (at most three): one of them, or an op concurrent
// with them, should be visible.
func describeLatest(acked []history.Op) string {
	var latest []history.Op
	for _, a := range acked {
		last := true
		for _, b := range acked {
			if before(a, b) {
				last = false
				break
			}
		}
		if last {
			latest = append(latest, a)
		}
	}
	s := ""
	for i, op := range latest {
		if i == 3 {
			return s + fmt.Sprintf(", and %d more", len(latest)-3)
		}
		if i > 0 {
			s += ", "
		}
		s += op.String()
	}
	return s
}
