package lease

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// model is the reference: plain maps and linear scans.
type model struct {
	ttl, base, deadline, notBefore int64
	epoch                          uint64
	held, pending                  bool
	cpKey, cpDue                   int64
	cpIn                           int // 1 in the checkpoint heap, 0 not, -1 unknown
}

func (m *model) eligible() int64 { return max(m.deadline, m.notBefore) }

// TestPropertyAgainstModel runs random operations on a Lessor and on a
// reference model and compares every answer: Expired never returns a lease
// whose deadline is in the future, returns every lease past its deadline
// (in order, in batches), Keepalive never resurrects, NextEvent is never
// late, DueCheckpoints hands out the right remainders.
func TestPropertyAgainstModel(t *testing.T) {
	for _, tc := range []struct {
		name string
		ci   time.Duration
		seed uint64
	}{
		{"checkpoints", 500 * ms, 1},
		{"checkpoints-2", 300 * ms, 2},
		{"no-checkpoints", -1, 3},
		{"no-checkpoints-2", -1, 4},
	} {
		t.Run(tc.name, func(t *testing.T) { runProperty(t, tc.seed, tc.ci) })
	}
}

func runProperty(t *testing.T, seed uint64, ci time.Duration) {
	const (
		steps    = 60000
		maxBatch = 4
		ext      = 300 * ms
	)
	rng := rand.New(rand.NewPCG(seed, seed*7919))
	clk := NewFakeClock(t0)
	l := New(Config{Clock: clk, Extension: ext, CheckpointInterval: ci, MaxBatch: maxBatch})
	cpOn := ci > 0
	now := func() int64 { return int64(clk.Now().Sub(t0)) }
	ms := map[uint64]*model{}
	var nextID, index uint64
	l.Promote(nil, t0.UnixNano())

	var keys []uint64       // IDs in ms, in no particular order
	pick := func() uint64 { // a known ID most of the time, sometimes an unknown one
		if len(keys) == 0 || rng.IntN(10) == 0 {
			return nextID + 1 + uint64(rng.IntN(3))
		}
		return keys[rng.IntN(len(keys))]
	}
	forget := func(id uint64) {
		l.Forget(id)
		if ms[id] == nil {
			return
		}
		delete(ms, id)
		i := slices.Index(keys, id)
		keys[i] = keys[len(keys)-1]
		keys = keys[:len(keys)-1]
	}
	schedule := func(m *model, at int64) {
		if cpOn {
			m.cpKey, m.cpDue, m.cpIn = at, at, 1
		}
	}
	returned := 0
	for step := range steps {
		n := now()
		switch op := rng.IntN(100); {
		case op < 12: // grant
			nextID++
			index++
			ttl := int64(time.Duration(50+rng.IntN(2000)) * time.Millisecond)
			l.Grant(Info{ID: nextID, TTL: time.Duration(ttl), Epoch: index})
			m := &model{ttl: ttl, base: n + ttl, deadline: n + ttl, epoch: index}
			schedule(m, n+int64(ci))
			ms[nextID] = m
			keys = append(keys, nextID)
		case op < 40: // keepalive
			id := pick()
			rem, nc, err := l.Keepalive(id)
			m := ms[id]
			switch {
			case m == nil:
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("step %d: Keepalive(unknown %d) = %v", step, id, err)
				}
			case m.deadline <= n:
				if !errors.Is(err, ErrExpired) {
					t.Fatalf("step %d: Keepalive(%d) past its deadline = %v", step, id, err)
				}
			default:
				if err != nil || rem != time.Duration(m.ttl) || nc != (m.held || m.pending) {
					t.Fatalf("step %d: Keepalive(%d) = %v, %v, %v; model %+v", step, id, rem, nc, err, *m)
				}
				m.base, m.deadline = n+m.ttl, n+m.ttl
				if cpOn && !m.held && !m.pending && m.cpIn == 1 {
					m.cpKey, m.cpDue = n+int64(ci), n+int64(ci) // a keepalive pushes the checkpoint back
				}
			}
		case op < 45: // forget
			forget(pick())
		case op < 60: // time passes
			clk.Advance(time.Duration(rng.IntN(300)) * time.Millisecond)
		case op < 70: // Expired
			got := l.Expired()
			if len(got) > maxBatch {
				t.Fatalf("step %d: batch of %d", step, len(got))
			}
			seen := map[uint64]bool{}
			var last *model
			var lastID uint64
			for _, x := range got {
				m := ms[x.ID]
				if m == nil {
					t.Fatalf("step %d: Expired returned unknown %d", step, x.ID)
				}
				if m.deadline > n {
					t.Fatalf("step %d: Expired returned %d, deadline %v in the future", step, x.ID, time.Duration(m.deadline-n))
				}
				if m.notBefore > n {
					t.Fatalf("step %d: Expired returned %d within its hold-off", step, x.ID)
				}
				if x.Epoch != m.epoch {
					t.Fatalf("step %d: Expired epoch %d, model %d", step, x.Epoch, m.epoch)
				}
				if last != nil && (m.eligible() < last.eligible() || m.eligible() == last.eligible() && x.ID < lastID) {
					t.Fatalf("step %d: Expired out of order: %v", step, got)
				}
				seen[x.ID] = true
				last, lastID = m, x.ID
			}
			// Every eligible lease not returned sorts after the batch, and
			// with a partial batch there is none.
			for id, m := range ms {
				if seen[id] || m.eligible() > n {
					continue
				}
				if len(got) < maxBatch {
					t.Fatalf("step %d: lease %d past its deadline not returned (%v)", step, id, got)
				}
				if m.eligible() < last.eligible() || m.eligible() == last.eligible() && id < lastID {
					t.Fatalf("step %d: lease %d skipped by the batch %v", step, id, got)
				}
			}
			for id := range seen {
				ms[id].notBefore = n + int64(time.Second)
			}
			returned += len(got)
			for _, x := range got { // some expiries are applied at once
				if rng.IntN(3) == 0 {
					forget(x.ID)
				}
			}
		case op < 78: // DueCheckpoints
			got := l.DueCheckpoints()
			if !cpOn {
				if got != nil {
					t.Fatalf("step %d: checkpoints while disabled: %v", step, got)
				}
				break
			}
			if len(got) > maxBatch {
				t.Fatalf("step %d: batch of %d", step, len(got))
			}
			seen := map[uint64]bool{}
			for i, c := range got {
				m := ms[c.ID]
				if m == nil || m.cpIn == 0 || m.cpKey > n || m.deadline <= n || m.held && m.base <= n {
					t.Fatalf("step %d: DueCheckpoints returned %+v; model %+v", step, c, m)
				}
				if want := time.Duration(ceilMillis(m.base - n)); c.Remaining != want || c.Epoch != m.epoch {
					t.Fatalf("step %d: checkpoint %+v, want remaining %v epoch %d", step, c, want, m.epoch)
				}
				if i > 0 {
					p := ms[got[i-1].ID]
					if m.cpKey < p.cpKey || m.cpKey == p.cpKey && c.ID < got[i-1].ID {
						t.Fatalf("step %d: checkpoints out of order: %v", step, got)
					}
				}
				seen[c.ID] = true
			}
			for id, m := range ms {
				if seen[id] || m.cpIn == 0 || m.cpKey > n {
					continue
				}
				due := m.deadline > n && !(m.held && m.base <= n)
				if len(got) < maxBatch {
					if due && m.cpIn == 1 {
						t.Fatalf("step %d: lease %d due for a checkpoint not returned (%v)", step, id, got)
					}
					m.cpIn = 0 // all due entries were visited: the dead ones dropped
				} else if !due {
					m.cpIn = -1 // perhaps dropped
				}
			}
			for id := range seen {
				m := ms[id]
				m.pending, m.cpIn, m.cpKey = true, 1, n+int64(time.Second)
			}
		case op < 84: // a checkpoint or renew is applied
			id := pick()
			index++
			held := rng.IntN(2) == 0
			if held {
				l.Checkpointed(id, index)
			} else {
				l.Renewed(id, index)
			}
			if m := ms[id]; m != nil {
				m.epoch, m.held, m.pending, m.notBefore = index, held, false, 0
				schedule(m, n+int64(ci))
			}
		case op < 88: // Retry
			id := pick()
			l.Retry(id)
			if m := ms[id]; m != nil {
				m.notBefore = 0
				if m.cpIn != 0 {
					m.cpKey = m.cpDue
				}
			}
		case op < 97: // NextEvent
			got, ok := l.NextEvent()
			var lo, hi int64 = 1<<63 - 1, 1<<63 - 1 // earliest pending item; latest allowed answer
			for _, m := range ms {
				lo, hi = min(lo, m.eligible()), min(hi, m.eligible())
				if m.cpIn != 0 {
					lo = min(lo, m.cpKey)
					if m.cpIn == 1 && m.deadline > max(m.cpKey, n) && m.base > max(m.cpKey, n) {
						hi = min(hi, m.cpKey) // certainly handed out at cpKey
					}
				}
			}
			if len(ms) == 0 {
				if ok {
					t.Fatalf("step %d: NextEvent with nothing", step)
				}
				break
			}
			at := int64(got.Sub(t0))
			if !ok || at > hi || at < lo {
				t.Fatalf("step %d: NextEvent = %v, %v; want in [%v, %v]", step, time.Duration(at), ok, time.Duration(lo), time.Duration(hi))
			}
			if !cpOn && at != hi {
				t.Fatalf("step %d: NextEvent = %v, want %v", step, time.Duration(at), time.Duration(hi))
			}
		case op < 98: // Remaining
			id := pick()
			rem, err := l.Remaining(id)
			if m := ms[id]; m == nil {
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("step %d: Remaining(unknown) = %v", step, err)
				}
			} else if err != nil || rem != time.Duration(max(m.deadline-n, 0)) {
				t.Fatalf("step %d: Remaining(%d) = %v, %v; model %+v", step, id, rem, err, *m)
			}
		default: // failover onto the same lessor: Demote, then Promote what the state holds
			l.Demote()
			wall := t0.UnixNano() + n
			var infos []Info
			for id, m := range ms {
				in := Info{ID: id, TTL: time.Duration(m.ttl), Epoch: m.epoch}
				if rng.IntN(2) == 0 {
					in.Remaining = time.Duration(1 + rng.Int64N(m.ttl))
					in.CheckpointStamp = wall - int64(time.Duration(rng.IntN(2500)-500)*time.Millisecond)
				}
				infos = append(infos, in)
				*m = model{ttl: m.ttl, epoch: m.epoch, held: in.Remaining > 0}
				if in.Remaining == 0 {
					m.deadline = n + m.ttl + int64(ext)
				} else {
					elapsed := max(wall-in.CheckpointStamp, 0)
					m.deadline = n + max(int64(in.Remaining)-elapsed+int64(ext), 0)
				}
				m.base = m.deadline - int64(ext)
				if in.Remaining == 0 {
					m.base = n + m.ttl
				}
				schedule(m, n)
			}
			l.Promote(infos, wall)
		}
		if step%97 == 0 {
			checkHeaps(t, l)
			if l.Len() != len(ms) {
				t.Fatalf("step %d: Len %d, model %d", step, l.Len(), len(ms))
			}
		}
	}

	// Eventually every lease past its deadline is returned: past every
	// hold-off, repeated calls drain exactly the expired ones.
	clk.Advance(2 * time.Second)
	n := now()
	want := map[uint64]bool{}
	for id, m := range ms {
		if m.deadline <= n {
			want[id] = true
		}
	}
	got := map[uint64]bool{}
	for b := l.Expired(); len(b) > 0; b = l.Expired() {
		for _, x := range b {
			if got[x.ID] {
				t.Fatalf("lease %d returned twice while draining", x.ID)
			}
			got[x.ID] = true
		}
	}
	if len(got) != len(want) {
		t.Fatalf("drained %d expired leases, model has %d", len(got), len(want))
	}
	for id := range want {
		if !got[id] {
			t.Fatalf("expired lease %d never returned", id)
		}
	}
	t.Logf("seed %d: %d leases at the end, %d expiries returned during the run, %d drained", seed, len(ms), returned, len(got))
}
