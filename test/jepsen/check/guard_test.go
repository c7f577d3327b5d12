package check

import (
	"context"
	"slices"
	"sync"
	"testing"

	"github.com/coordd/coordd/fencing"
	h "github.com/coordd/coordd/test/jepsen/history"
)

// resource is the harness's resource in miniature: a list of elements,
// optionally fenced by a fencing.Guard checked on reads and writes, with a
// mutex across check, operation and Seq, as FencedLock assumes.
type resource struct {
	guard *fencing.Guard // nil: unfenced

	mu    sync.Mutex
	elems []string
	seq   uint64
}

func (r *resource) read(token uint64) ([]string, uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.guard != nil {
		if err := r.guard.Check(context.Background(), "r", fencing.Token(token)); err != nil {
			return nil, 0, err
		}
	}
	r.seq++
	return slices.Clone(r.elems), r.seq, nil
}

func (r *resource) write(token uint64, elems []string) (uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.guard != nil {
		if err := r.guard.Check(context.Background(), "r", fencing.Token(token)); err != nil {
			return 0, err
		}
	}
	r.seq++
	r.elems = slices.Clone(elems)
	return r.seq, nil
}

// pausedHolderScript runs the fenced-lock workload's worst case against res,
// with a scripted clock: A takes the lock, reads, and pauses past its lease;
// B takes the lock and reads; A wakes up and writes; B writes; C takes the
// lock after B released it, reads and writes.
func pausedHolderScript(t *testing.T, res *resource) ([]h.Op, h.FinalState) {
	t.Helper()
	var ops []h.Op
	record := func(op h.Op) { op.Index = len(ops); ops = append(ops, op) }
	acquire := func(p int, at int64, token uint64) {
		record(ok(p, h.KindAcquire, "r", at, at+5, in{Lease: uint64(p)}, out{Token: token}))
	}
	readAt := func(p int, at int64, token uint64) []string {
		elems, seq, err := res.read(token)
		if err != nil {
			record(fail(p, h.KindResourceRead, "r", at, at+1, "stale_token", in{Token: token}, out{}))
			return nil
		}
		record(ok(p, h.KindResourceRead, "r", at, at+1, in{Token: token}, out{Seq: seq, Values: elems}))
		return elems
	}
	writeAt := func(p int, at int64, token uint64, base []string, elem string) {
		seq, err := res.write(token, append(base, elem))
		if err != nil {
			record(fail(p, h.KindResourceWrite, "r", at, at+1, "stale_token", in{Token: token, Value: elem}, out{}))
			return
		}
		record(ok(p, h.KindResourceWrite, "r", at, at+1, in{Token: token, Value: elem}, out{Seq: seq}))
	}
	acquire(1, 0, 10)
	a := readAt(1, 10, 10)
	// A pauses; its lease expires; B gets the lock.
	acquire(2, 100, 12)
	b := readAt(2, 110, 12)
	writeAt(1, 200, 10, a, "a")
	writeAt(2, 210, 12, b, "b")
	record(ok(2, h.KindRelease, "r", 220, 225, in{Lease: 2, Token: 12}, out{}))
	acquire(3, 230, 14)
	c := readAt(3, 240, 14)
	writeAt(3, 250, 14, c, "c")
	elems, _, _ := res.read(99)
	return ops, h.FinalState{Resources: map[string][]string{"r": elems}}
}

func Test_FencedLock_WithFencingGuard_PausedHolderIsRefused_AndTheRunIsValid(t *testing.T) {
	res := &resource{guard: fencing.NewGuard(fencing.NewMemoryStore())}
	ops, final := pausedHolderScript(t, res)
	if got := final.Resources["r"]; !slices.Equal(got, []string{"b", "c"}) {
		t.Fatalf("fenced resource holds %q, want [b c]", got)
	}
	wantValid(t, FencedLock(ops, final))
}

func Test_FencedLock_Unfenced_SameScript_IsCaught(t *testing.T) {
	ops, final := pausedHolderScript(t, &resource{})
	wantAnomalies(t, FencedLock(ops, final), 3, "overlap", `accepted write lost: element "a"`, "accepted token 10")
}
