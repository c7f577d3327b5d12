package check

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	h "github.com/coordd/coordd/test/jepsen/history"
)

// simulateRegister runs clients against a correct, atomic KV store: each op
// takes effect at one random instant in its interval (a write of unknown
// outcome: maybe never, maybe after the client gave up). No checker may
// find anything wrong with such a history.
func simulateRegister(seed uint64, clients, each int, keys []string) ([]h.Op, h.FinalState) {
	rng := rand.New(rand.NewPCG(seed, 1))
	type planned struct {
		op    h.Op
		at    int64 // when it takes effect
		apply bool
	}
	var plan []planned
	for p := range clients {
		t := int64(rng.IntN(5))
		for i := range each {
			op := h.Op{Process: p, Key: keys[rng.IntN(len(keys))], Call: t * ms, Status: h.StatusOK}
			switch x := rng.IntN(10); {
			case x < 4:
				op.Kind = h.KindGet
			case x < 7:
				op.Kind = h.KindPut
			case x < 9:
				op.Kind = h.KindCAS
			default:
				op.Kind = h.KindDelete
			}
			if op.Kind != h.KindGet && op.Kind != h.KindDelete {
				op.In.Value = string(rune('a'+p)) + string(rune('0'+i%10)) + string(rune('A'+i/10))
			}
			at := op.Call + int64(rng.IntN(10))*ms
			op.Return = at + int64(rng.IntN(10))*ms
			pl := planned{op: op, at: at, apply: true}
			switch x := rng.IntN(20); {
			case x == 0 && op.Kind != h.KindGet:
				// Gave up early; took effect (or not) whenever.
				pl.op.Status, pl.op.Error = h.StatusUnknown, "timeout"
				pl.op.Return = op.Call + 2*ms
				pl.apply = rng.IntN(2) == 0
				pl.at += int64(rng.IntN(50)) * ms
			case x == 1:
				pl.op.Status, pl.op.Error = h.StatusFail, "no_leader"
				pl.apply = false
			}
			plan = append(plan, pl)
			t = pl.op.Return/ms + 1 + int64(rng.IntN(3))
		}
	}
	slices.SortStableFunc(plan, func(a, b planned) int { return cmpInt64(a.at, b.at) })
	state := make(map[string]h.KV)
	index := uint64(1)
	var ops []h.Op
	for _, pl := range plan {
		op := pl.op
		if pl.apply {
			cur, exists := state[op.Key]
			switch op.Kind {
			case h.KindGet:
				op.Out = h.Values{Found: exists, Value: cur.Value, Index: cur.Index}
			case h.KindPut:
				index++
				state[op.Key] = h.KV{Value: op.In.Value, Index: index}
				op.Out.Index = index
			case h.KindCAS:
				index++
				// Half the time the client guesses the right index.
				if rng.IntN(2) == 0 {
					op.In.Index = cur.Index
				} else {
					op.In.Index = uint64(rng.IntN(int(index)))
				}
				if exists && op.In.Index == cur.Index || !exists && op.In.Index == 0 {
					state[op.Key] = h.KV{Value: op.In.Value, Index: index}
					op.Out.Index = index
				} else {
					op.Status, op.Error = h.StatusFail, h.CodeCASConflict
					op.Out.Index = cur.Index
				}
			case h.KindDelete:
				index++
				if exists {
					delete(state, op.Key)
				} else if op.Status == h.StatusOK {
					op.Status, op.Error = h.StatusFail, h.CodeKeyNotFound
				}
			}
			if pl.op.Status == h.StatusUnknown {
				op.Status, op.Error, op.Out = h.StatusUnknown, pl.op.Error, h.Values{}
			}
		}
		ops = append(ops, op)
	}
	slices.SortStableFunc(ops, func(a, b h.Op) int { return cmpInt64(a.Return, b.Return) })
	return number(ops...), h.FinalState{KV: state}
}

func Test_Simulated_CorrectStoreHistories_PassLinearizableAndDurability(t *testing.T) {
	for seed := range uint64(5) {
		ops, final := simulateRegister(seed, 4, 40, []string{"a", "b"})
		start := time.Now()
		r := Linearizable(ops, LinearizableOptions{Timeout: 10 * time.Second})
		if !r.Valid {
			t.Fatalf("seed %d: a correct store's history fails:\n%s", seed, r)
		}
		if d := Durability(ops, final); !d.Valid {
			t.Fatalf("seed %d: a correct store's final state fails:\n%s", seed, d)
		}
		t.Logf("seed %d: %d ops checked in %s", seed, len(ops), time.Since(start))
	}
}

func Test_Simulated_StaleReadInjected_IsCaught(t *testing.T) {
	ops, _ := simulateRegister(7, 4, 40, []string{"a"})
	isWrite := func(op h.Op) bool {
		return (op.Kind == h.KindPut || op.Kind == h.KindCAS) && op.Status == h.StatusOK
	}
	// A read G of the value of write W, which completed before G began:
	// make G read the value of a write V that completed before W began.
	for g := range ops {
		G := ops[g]
		if G.Kind != h.KindGet || G.Status != h.StatusOK || !G.Out.Found {
			continue
		}
		for _, W := range ops {
			if !isWrite(W) || W.In.Value != G.Out.Value || W.Return >= G.Call {
				continue
			}
			for _, V := range ops {
				if isWrite(V) && V.Return < W.Call {
					ops[g].Out = h.Values{Found: true, Value: V.In.Value, Index: V.Out.Index}
					r := Linearizable(ops, LinearizableOptions{Timeout: 10 * time.Second})
					wantAnomalies(t, r, 1, "not linearizable")
					return
				}
			}
		}
	}
	t.Fatal("the simulated history has no stale read to inject")
}
