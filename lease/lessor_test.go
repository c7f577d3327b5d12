package lease

import (
	"errors"
	"testing"
	"time"
)

var t0 = time.Unix(1_700_000_000, 0)

const (
	sec = time.Second
	ms  = time.Millisecond
)

func newTestLessor(t testing.TB, cfg Config) (*Lessor, *FakeClock) {
	t.Helper()
	clk := NewFakeClock(t0)
	cfg.Clock = clk
	l := New(cfg)
	l.Promote(nil, t0.UnixNano())
	return l, clk
}

func ids(xs []Expiry) []uint64 {
	out := make([]uint64, len(xs))
	for i, x := range xs {
		out[i] = x.ID
	}
	return out
}

func cpIDs(xs []Checkpoint) []uint64 {
	out := make([]uint64, len(xs))
	for i, x := range xs {
		out[i] = x.ID
	}
	return out
}

func equalIDs(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func mustKeepalive(t *testing.T, l *Lessor, id uint64, wantCommit bool) {
	t.Helper()
	rem, nc, err := l.Keepalive(id)
	if err != nil {
		t.Fatalf("Keepalive(%d): %v", id, err)
	}
	if nc != wantCommit {
		t.Fatalf("Keepalive(%d): needsCommit = %v, want %v", id, nc, wantCommit)
	}
	if rem <= 0 {
		t.Fatalf("Keepalive(%d): remaining %v", id, rem)
	}
}

func mustRemaining(t *testing.T, l *Lessor, id uint64, want time.Duration) {
	t.Helper()
	got, err := l.Remaining(id)
	if err != nil || got != want {
		t.Fatalf("Remaining(%d) = %v, %v; want %v", id, got, err, want)
	}
}

func TestFakeClock(t *testing.T) {
	c := NewFakeClock(t0)
	c.Advance(3 * sec)
	c.Advance(-sec) // ignored
	if got := c.Now().Sub(t0); got != 3*sec {
		t.Fatalf("fake clock moved %v", got)
	}
	var sc SystemClock
	if a, b := sc.Now(), sc.Now(); b.Before(a) {
		t.Fatal("system clock went backwards")
	}
}

func TestDefaults(t *testing.T) {
	l := New(Config{})
	if _, ok := l.clock.(SystemClock); !ok || l.ext != int64(DefaultExtension) ||
		l.cpEvery != int64(DefaultCheckpointInterval) || l.maxBatch != DefaultMaxBatch {
		t.Fatalf("defaults: %+v", l)
	}
	l = New(Config{Extension: -1, CheckpointInterval: -1})
	if l.ext != 0 || l.cpEvery != 0 {
		t.Fatalf("negative settings: ext %d cp %d", l.ext, l.cpEvery)
	}
}

func TestGrantExpiresAtTTL(t *testing.T) {
	l, clk := newTestLessor(t, Config{})
	l.Grant(Info{ID: 7, TTL: 10 * sec, Epoch: 3})
	if l.Len() != 1 {
		t.Fatalf("Len = %d", l.Len())
	}
	mustRemaining(t, l, 7, 10*sec)
	clk.Advance(10*sec - 1)
	if got := l.Expired(); len(got) != 0 {
		t.Fatalf("expired 1ns before TTL: %v", got)
	}
	mustRemaining(t, l, 7, 1)
	clk.Advance(1)
	got := l.Expired()
	if len(got) != 1 || got[0] != (Expiry{ID: 7, Epoch: 3}) {
		t.Fatalf("Expired at TTL = %v", got)
	}
	mustRemaining(t, l, 7, 0)
	if l.Len() != 1 {
		t.Fatal("Expired must not forget the lease")
	}
}

func TestKeepaliveExtends(t *testing.T) {
	l, clk := newTestLessor(t, Config{CheckpointInterval: -1})
	l.Grant(Info{ID: 1, TTL: 10 * sec, Epoch: 1})
	for range 5 {
		clk.Advance(8 * sec)
		rem, nc, err := l.Keepalive(1)
		if err != nil || nc || rem != 10*sec {
			t.Fatalf("Keepalive = %v, %v, %v", rem, nc, err)
		}
		if got := l.Expired(); len(got) != 0 {
			t.Fatalf("expired while kept alive: %v", got)
		}
	}
	clk.Advance(10*sec - 1)
	if got := l.Expired(); len(got) != 0 {
		t.Fatalf("expired before the renewed deadline: %v", got)
	}
	clk.Advance(1)
	if got := l.Expired(); !equalIDs(ids(got), []uint64{1}) {
		t.Fatalf("Expired = %v", got)
	}
}

func TestKeepaliveAfterDeadlineNeverResurrects(t *testing.T) {
	l, clk := newTestLessor(t, Config{})
	l.Grant(Info{ID: 1, TTL: sec, Epoch: 1})
	clk.Advance(sec)
	for range 3 {
		if _, _, err := l.Keepalive(1); !errors.Is(err, ErrExpired) {
			t.Fatalf("Keepalive at the deadline: %v, want ErrExpired", err)
		}
		clk.Advance(sec)
	}
	// Still expired, and still reported (once per hold-off).
	if got := l.Expired(); !equalIDs(ids(got), []uint64{1}) {
		t.Fatalf("Expired = %v", got)
	}
	if _, _, err := l.Keepalive(1); !errors.Is(err, ErrExpired) {
		t.Fatalf("Keepalive after Expired: %v", err)
	}
	mustRemaining(t, l, 1, 0)
}

func TestForget(t *testing.T) {
	l, clk := newTestLessor(t, Config{})
	l.Grant(Info{ID: 1, TTL: sec, Epoch: 1})
	l.Grant(Info{ID: 2, TTL: sec, Epoch: 2})
	l.Forget(1)
	l.Forget(99) // unknown: no-op
	if l.Len() != 1 {
		t.Fatalf("Len = %d", l.Len())
	}
	if _, _, err := l.Keepalive(1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Keepalive of a forgotten lease: %v", err)
	}
	if _, err := l.Remaining(1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Remaining of a forgotten lease: %v", err)
	}
	clk.Advance(10 * sec)
	if got := l.Expired(); !equalIDs(ids(got), []uint64{2}) {
		t.Fatalf("Expired = %v", got)
	}
	if got := l.DueCheckpoints(); len(got) != 0 {
		t.Fatalf("DueCheckpoints = %v", got)
	}
	l.Checkpointed(1, 5) // unknown: no-op
	l.Renewed(1, 6)
	l.Retry(1)
	if l.Len() != 1 {
		t.Fatal("calls on a forgotten lease brought it back")
	}
}

func checkInactive(t *testing.T, l *Lessor) {
	t.Helper()
	if l.Active() {
		t.Fatal("Active")
	}
	l.Grant(Info{ID: 1, TTL: sec, Epoch: 1})
	l.Checkpointed(1, 2)
	l.Renewed(1, 3)
	l.Retry(1)
	l.Forget(1)
	if _, _, err := l.Keepalive(1); !errors.Is(err, ErrNotActive) {
		t.Fatalf("Keepalive: %v", err)
	}
	if _, err := l.Remaining(1); !errors.Is(err, ErrNotActive) {
		t.Fatalf("Remaining: %v", err)
	}
	if l.Expired() != nil || l.DueCheckpoints() != nil || l.Len() != 0 {
		t.Fatal("inactive lessor returned something")
	}
	if _, ok := l.NextEvent(); ok {
		t.Fatal("inactive lessor has a next event")
	}
}

func TestInactiveRefuses(t *testing.T) {
	clk := NewFakeClock(t0)
	l := New(Config{Clock: clk})
	checkInactive(t, l)

	l.Promote([]Info{{ID: 5, TTL: sec, Epoch: 1}}, t0.UnixNano())
	if !l.Active() || l.Len() != 1 {
		t.Fatal("Promote did not activate")
	}
	l.Grant(Info{ID: 6, TTL: sec, Epoch: 2})
	l.Demote()
	clk.Advance(time.Hour)
	checkInactive(t, l)

	// Promote again: only what it is given.
	l.Promote([]Info{{ID: 9, TTL: sec, Epoch: 4}}, t0.UnixNano())
	if l.Len() != 1 {
		t.Fatalf("Len after re-Promote = %d", l.Len())
	}
	if _, _, err := l.Keepalive(5); !errors.Is(err, ErrNotFound) {
		t.Fatalf("lease from before Demote: %v", err)
	}
}

func TestPromoteRules(t *testing.T) {
	const ttl, ext = 10 * sec, 2 * sec
	wall := t0.Add(time.Hour).UnixNano() // new leader's wall clock
	cases := []struct {
		name string
		in   Info
		want time.Duration // deadline - now
	}{
		{"no remainder: TTL+Extension", Info{TTL: ttl}, ttl + ext},
		{"remainder, 3s elapsed", Info{TTL: ttl, Remaining: 6 * sec, CheckpointStamp: wall - int64(3*sec)}, 3*sec + ext},
		{"remainder, nothing elapsed", Info{TTL: ttl, Remaining: 6 * sec, CheckpointStamp: wall}, 6*sec + ext},
		{"remainder exactly used up", Info{TTL: ttl, Remaining: 6 * sec, CheckpointStamp: wall - int64(6*sec)}, ext},
		// Ran out during the election: only what is left of the extension.
		{"remainder overrun by 1.5s", Info{TTL: ttl, Remaining: 6 * sec, CheckpointStamp: wall - int64(7500*ms)}, 500 * ms},
		{"remainder overrun by more than Extension", Info{TTL: ttl, Remaining: 6 * sec, CheckpointStamp: wall - int64(time.Hour)}, 0},
		{"stamp in the future (skew) deducts nothing", Info{TTL: ttl, Remaining: 6 * sec, CheckpointStamp: wall + int64(400*ms)}, 6*sec + ext},
		{"missing stamp deducts nothing", Info{TTL: ttl, Remaining: 6 * sec}, 6*sec + ext},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			clk := NewFakeClock(t0)
			l := New(Config{Clock: clk, Extension: ext})
			clk.Advance(time.Duration(i+1) * time.Minute) // any monotonic reading
			in := c.in
			in.ID, in.Epoch = 42, 17
			l.Promote([]Info{in}, wall)
			mustRemaining(t, l, 42, c.want)
			if c.want > 0 {
				clk.Advance(c.want - 1)
				if got := l.Expired(); len(got) != 0 {
					t.Fatalf("expired 1ns early: %v", got)
				}
				clk.Advance(1)
			}
			if got := l.Expired(); len(got) != 1 || got[0] != (Expiry{ID: 42, Epoch: 17}) {
				t.Fatalf("Expired at the deadline = %v", got)
			}
		})
	}
}

func TestNeedsCommit(t *testing.T) {
	l, _ := newTestLessor(t, Config{})
	l.Grant(Info{ID: 1, TTL: 10 * sec, Epoch: 1})
	mustKeepalive(t, l, 1, false)
	l.Checkpointed(1, 2)
	mustKeepalive(t, l, 1, true) // first keepalive after a checkpoint
	mustKeepalive(t, l, 1, true) // still: the renew is not applied yet
	l.Renewed(1, 3)
	mustKeepalive(t, l, 1, false)
	mustKeepalive(t, l, 1, false)
	l.Checkpointed(1, 4)
	mustKeepalive(t, l, 1, true)
	l.Renewed(1, 5)
	mustKeepalive(t, l, 1, false)

	// Promoted with a remainder in the replicated state: commit needed.
	clk := NewFakeClock(t0)
	l = New(Config{Clock: clk})
	l.Promote([]Info{
		{ID: 1, TTL: 10 * sec, Epoch: 1},
		{ID: 2, TTL: 10 * sec, Epoch: 2, Remaining: 4 * sec, CheckpointStamp: t0.UnixNano()},
	}, t0.UnixNano())
	mustKeepalive(t, l, 2, true)
	l.Renewed(2, 3)
	mustKeepalive(t, l, 2, false)

	// A checkpoint handed out but not applied may still commit after an
	// acknowledged keepalive: it counts as held.
	// (lease 2's renew rescheduled its checkpoint)
	if got := l.DueCheckpoints(); !equalIDs(cpIDs(got), []uint64{1}) {
		t.Fatalf("DueCheckpoints after Promote = %v", got)
	}
	mustKeepalive(t, l, 1, true)
	l.Renewed(1, 4) // the renew overtook the checkpoint, which is now stale
	mustKeepalive(t, l, 1, false)
	l.Checkpointed(2, 5)
	mustKeepalive(t, l, 2, true)
}

func TestExpiredBatchesInDeadlineOrder(t *testing.T) {
	l, clk := newTestLessor(t, Config{MaxBatch: 3})
	ttls := map[uint64]time.Duration{1: 7, 2: 3, 3: 9, 4: 1, 5: 5, 6: 8, 7: 2, 8: 10, 9: 4, 10: 6}
	for id, s := range ttls {
		l.Grant(Info{ID: id, TTL: s * sec, Epoch: 100 + id})
	}
	l.Grant(Info{ID: 11, TTL: time.Hour, Epoch: 111})
	clk.Advance(time.Minute)
	want := []uint64{4, 7, 2, 9, 5, 10, 1, 6, 3, 8}
	var got []uint64
	for range 4 {
		b := l.Expired()
		if len(b) > 3 {
			t.Fatalf("batch of %d > MaxBatch", len(b))
		}
		for _, x := range b {
			if x.Epoch != 100+x.ID {
				t.Fatalf("epoch %d for %d", x.Epoch, x.ID)
			}
		}
		got = append(got, ids(b)...)
	}
	if !equalIDs(got, want) {
		t.Fatalf("expiry order %v, want %v", got, want)
	}
	if b := l.Expired(); len(b) != 0 {
		t.Fatalf("repeated within the hold-off: %v", b)
	}
	clk.Advance(sec - 1)
	if b := l.Expired(); len(b) != 0 {
		t.Fatalf("repeated 1ns before the hold-off ended: %v", b)
	}
	l.Retry(8)
	l.Checkpointed(3, 200) // a new epoch: the old proposal will be ignored
	if b := l.Expired(); len(b) != 2 || b[0] != (Expiry{3, 200}) || b[1] != (Expiry{8, 108}) {
		t.Fatalf("after Retry/Checkpointed: %v", b)
	}
	clk.Advance(1)
	got = got[:0]
	for b := l.Expired(); len(b) > 0; b = l.Expired() {
		got = append(got, ids(b)...)
	}
	// Everything not retried comes back after its hold-off, all held back
	// until the same instant, so in ID order.
	if !equalIDs(got, []uint64{1, 2, 4, 5, 6, 7, 9, 10}) {
		t.Fatalf("after the hold-off: %v", got)
	}
}

func TestKeepalivePushesTheCheckpointBack(t *testing.T) {
	const ttl, ci = 20 * sec, 5 * sec
	l, clk := newTestLessor(t, Config{CheckpointInterval: ci})
	l.Grant(Info{ID: 1, TTL: ttl, Epoch: 1})
	// A holder keeping alive more often than ci is never checkpointed, so
	// it never needs a renew commit: a live holder costs no Raft write.
	for range 10 {
		clk.Advance(ci - 1)
		mustKeepalive(t, l, 1, false)
		if got := l.DueCheckpoints(); len(got) != 0 {
			t.Fatalf("checkpoint of a lease kept alive within the interval: %v", got)
		}
	}
	// A holder that stops is checkpointed ci after its last keepalive.
	clk.Advance(ci)
	if got := l.DueCheckpoints(); len(got) != 1 || got[0].Remaining != ttl-ci {
		t.Fatalf("checkpoint ci after the last keepalive: %v", got)
	}
}

func TestCheckpointCadence(t *testing.T) {
	const ttl, ci = 20 * sec, 5 * sec
	l, clk := newTestLessor(t, Config{CheckpointInterval: ci})
	l.Grant(Info{ID: 1, TTL: ttl, Epoch: 1})
	clk.Advance(ci - 1)
	if got := l.DueCheckpoints(); len(got) != 0 {
		t.Fatalf("checkpoint before the interval: %v", got)
	}
	clk.Advance(1)
	got := l.DueCheckpoints()
	if len(got) != 1 || got[0] != (Checkpoint{ID: 1, Remaining: ttl - ci, Epoch: 1}) {
		t.Fatalf("DueCheckpoints after grant = %v", got)
	}
	clk.Advance(sec - 1)
	if got := l.DueCheckpoints(); len(got) != 0 {
		t.Fatalf("repeated within the hold-off: %v", got)
	}
	clk.Advance(1)
	if got := l.DueCheckpoints(); len(got) != 1 || got[0].Remaining != ttl-ci-sec {
		t.Fatalf("not repeated after the hold-off: %v", got)
	}
	l.Checkpointed(1, 2) // at ci+1s
	clk.Advance(ci - 1)
	if got := l.DueCheckpoints(); len(got) != 0 {
		t.Fatalf("checkpoint before the interval after Checkpointed: %v", got)
	}
	clk.Advance(ms)
	mustKeepalive(t, l, 1, true)
	l.Renewed(1, 3) // at 2ci+1s+1ms-1ns
	clk.Advance(ci - 1)
	if got := l.DueCheckpoints(); len(got) != 0 {
		t.Fatalf("checkpoint before the interval after Renewed: %v", got)
	}
	clk.Advance(1)
	if got := l.DueCheckpoints(); len(got) != 1 || got[0] != (Checkpoint{ID: 1, Remaining: ttl - ci, Epoch: 3}) {
		t.Fatalf("DueCheckpoints after Renewed = %v", got)
	}
	l.Retry(1)
	if got := l.DueCheckpoints(); len(got) != 1 {
		t.Fatalf("Retry did not release the checkpoint: %v", got)
	}

	// Disabled: never.
	l2, clk2 := newTestLessor(t, Config{CheckpointInterval: -1})
	l2.Grant(Info{ID: 1, TTL: ttl, Epoch: 1})
	clk2.Advance(ttl - 1)
	if got := l2.DueCheckpoints(); got != nil {
		t.Fatalf("checkpoints disabled: %v", got)
	}
}

func TestCheckpointAfterPromote(t *testing.T) {
	const ttl, ext = 10 * sec, sec
	clk := NewFakeClock(t0)
	l := New(Config{Clock: clk, Extension: ext, CheckpointInterval: 5 * sec, MaxBatch: 2})
	wall := t0.UnixNano()
	l.Promote([]Info{
		{ID: 3, TTL: ttl, Epoch: 1},
		{ID: 1, TTL: ttl, Epoch: 2, Remaining: 4 * sec, CheckpointStamp: wall - int64(sec)},
		{ID: 2, TTL: ttl, Epoch: 3},
	}, wall)
	// Due right away; the extension is enforced but never checkpointed.
	got := l.DueCheckpoints()
	want := []Checkpoint{{1, 3 * sec, 2}, {2, ttl, 3}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("first batch = %v, want %v", got, want)
	}
	if got := l.DueCheckpoints(); len(got) != 1 || got[0] != (Checkpoint{3, ttl, 1}) {
		t.Fatalf("second batch = %v", got)
	}
	mustRemaining(t, l, 1, 3*sec+ext)
}

func TestCheckpointInsideExtension(t *testing.T) {
	const ttl, ext = sec, sec
	clk := NewFakeClock(t0)
	l := New(Config{Clock: clk, Extension: ext, CheckpointInterval: 10 * sec})
	wall := t0.UnixNano()
	l.Promote([]Info{
		{ID: 1, TTL: ttl, Epoch: 1},
		{ID: 2, TTL: ttl, Epoch: 2, Remaining: 500 * ms, CheckpointStamp: wall - int64(700*ms)},
	}, wall)
	// Lease 2's remainder ran out during the election; the state already
	// says so: it is not checkpointed again.
	got := l.DueCheckpoints()
	if len(got) != 1 || got[0] != (Checkpoint{1, ttl, 1}) {
		t.Fatalf("DueCheckpoints = %v", got)
	}
	mustRemaining(t, l, 2, 800*ms)
	// Lease 1's checkpoint was not applied; when it is handed out again its
	// promised deadline has passed: the smallest remainder, not 0 (which
	// would mean "no checkpoint" and buy a full TTL on the next failover).
	clk.Advance(ttl)
	got = l.DueCheckpoints()
	if len(got) != 1 || got[0] != (Checkpoint{1, time.Millisecond, 1}) {
		t.Fatalf("DueCheckpoints inside the extension = %v", got)
	}
	if _, ok := l.NextEvent(); !ok {
		t.Fatal("no next event")
	}
	checkHeaps(t, l)
}

func TestKeepaliveInsideExtension(t *testing.T) {
	const ttl, ext = sec, 5 * sec
	clk := NewFakeClock(t0)
	l := New(Config{Clock: clk, Extension: ext})
	wall := t0.UnixNano()
	l.Promote([]Info{{ID: 2, TTL: ttl, Epoch: 2, Remaining: 500 * ms, CheckpointStamp: wall - int64(700*ms)}}, wall)
	mustRemaining(t, l, 2, ext-200*ms)
	// A keepalive inside the extension needs a commit (a remainder is held)
	// and moves the deadline to now + TTL, earlier than the extended one:
	// everything any leader promised ended before now + TTL.
	mustKeepalive(t, l, 2, true)
	mustRemaining(t, l, 2, ttl)
	clk.Advance(ttl - 1)
	if got := l.Expired(); len(got) != 0 {
		t.Fatalf("Expired early = %v", got)
	}
	clk.Advance(1)
	if got := l.Expired(); !equalIDs(ids(got), []uint64{2}) {
		t.Fatalf("Expired = %v", got)
	}
	checkHeaps(t, l)
}

func TestNextEvent(t *testing.T) {
	l, clk := newTestLessor(t, Config{CheckpointInterval: 5 * sec})
	if _, ok := l.NextEvent(); ok {
		t.Fatal("next event with no leases")
	}
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	check := func(want time.Time) {
		t.Helper()
		got, ok := l.NextEvent()
		if !ok || !got.Equal(want) {
			t.Fatalf("NextEvent = %v, %v; want %v", got.Sub(t0), ok, want.Sub(t0))
		}
	}
	l.Grant(Info{ID: 1, TTL: 10 * sec, Epoch: 1})
	check(at(5 * sec)) // checkpoint due
	clk.Advance(5 * sec)
	l.DueCheckpoints()
	check(at(6 * sec)) // checkpoint hold-off
	l.Checkpointed(1, 2)
	check(at(10 * sec)) // deadline before the next checkpoint (at 10s too: ID tie)
	clk.Advance(4 * sec)
	mustKeepalive(t, l, 1, true)
	check(at(10 * sec)) // next checkpoint; the lazy expiry key is repaired
	l.Renewed(1, 3)
	check(at(14 * sec)) // deadline 9+10=19s, checkpoint 9+5=14s
	clk.Advance(5 * sec)
	l.DueCheckpoints()
	check(at(15 * sec))
	clk.Advance(sec)
	l.DueCheckpoints()
	l.DueCheckpoints()
	check(at(16 * sec))
	clk.Advance(3 * sec)
	check(at(16 * sec)) // in the past: the checkpoint is due again
	clk.Advance(sec)
	check(at(19 * sec)) // the deadline, now; the checkpoint entry is dropped
	if got := l.Expired(); len(got) != 1 {
		t.Fatalf("Expired = %v", got)
	}
	check(at(20 * sec)) // hold-off of the expiry
	l.Forget(1)
	if _, ok := l.NextEvent(); ok {
		t.Fatal("next event after Forget")
	}

	// Without checkpoints, the next event is the earliest deadline even
	// after keepalives moved it.
	l, clk = newTestLessor(t, Config{CheckpointInterval: -1})
	l.Grant(Info{ID: 1, TTL: 10 * sec, Epoch: 1})
	l.Grant(Info{ID: 2, TTL: 12 * sec, Epoch: 2})
	check(at(10 * sec))
	clk.Advance(3 * sec)
	mustKeepalive(t, l, 1, false)
	check(at(12 * sec))
	mustKeepalive(t, l, 2, false)
	check(at(13 * sec))
}

func TestDemoteClears(t *testing.T) {
	l, clk := newTestLessor(t, Config{})
	for id := uint64(1); id <= 100; id++ {
		l.Grant(Info{ID: id, TTL: sec, Epoch: id})
	}
	clk.Advance(2 * sec)
	l.Demote()
	if l.Active() || l.Len() != 0 || len(l.exp.s) != 0 || len(l.cp.s) != 0 || l.leases != nil {
		t.Fatal("Demote left state behind")
	}
	l.Promote(nil, t0.UnixNano())
	if l.Expired() != nil || l.DueCheckpoints() != nil {
		t.Fatal("old leases came back after Demote and Promote")
	}
}

func TestGrantReplaces(t *testing.T) {
	l, clk := newTestLessor(t, Config{})
	l.Grant(Info{ID: 1, TTL: sec, Epoch: 1})
	clk.Advance(2 * sec)
	if len(l.Expired()) != 1 {
		t.Fatal("not expired")
	}
	l.Grant(Info{ID: 1, TTL: 5 * sec, Epoch: 9})
	if l.Len() != 1 {
		t.Fatalf("Len = %d", l.Len())
	}
	mustRemaining(t, l, 1, 5*sec)
	clk.Advance(5 * sec)
	if got := l.Expired(); len(got) != 1 || got[0] != (Expiry{1, 9}) {
		t.Fatalf("Expired = %v", got)
	}
	checkHeaps(t, l)
}

// checkHeaps verifies the heap invariants of l.
func checkHeaps(t testing.TB, l *Lessor) {
	t.Helper()
	for _, h := range []*leaseHeap{&l.exp, &l.cp} {
		for i, slot := range h.s {
			e := slot.e
			if slot.key != e.key[h.w] || slot.id != e.id {
				t.Fatalf("heap %d: slot %d holds key %d id %d, its entry %d %d", h.w, i, slot.key, slot.id, e.key[h.w], e.id)
			}
			if int(e.idx[h.w]) != i {
				t.Fatalf("heap %d: entry %d at %d records %d", h.w, e.id, i, e.idx[h.w])
			}
			if i > 0 && h.less(i, (i-1)/2) {
				t.Fatalf("heap %d: order broken at %d", h.w, i)
			}
			if l.leases[e.id] != e {
				t.Fatalf("heap %d: entry %d not in the map", h.w, e.id)
			}
		}
	}
	if len(l.exp.s) != len(l.leases) {
		t.Fatalf("expiry heap has %d entries, map %d", len(l.exp.s), len(l.leases))
	}
	for id, e := range l.leases {
		if e.idx[expHeap] < 0 {
			t.Fatalf("lease %d missing from the expiry heap", id)
		}
		if e.key[expHeap] > e.eligible() {
			t.Fatalf("lease %d: expiry key %d above its eligibility %d", id, e.key[expHeap], e.eligible())
		}
		if e.idx[cpHeap] >= 0 && (l.cpEvery == 0 || e.key[cpHeap] > e.cpAt()) {
			t.Fatalf("lease %d: checkpoint key %d above its due time %d", id, e.key[cpHeap], e.cpAt())
		}
	}
}

func TestPromoteDuplicateIDs(t *testing.T) {
	clk := NewFakeClock(t0)
	l := New(Config{Clock: clk, Extension: -1})
	l.Promote([]Info{
		{ID: 1, TTL: sec, Epoch: 1},
		{ID: 2, TTL: 2 * sec, Epoch: 2},
		{ID: 1, TTL: 3 * sec, Epoch: 3}, // the last one wins
		{ID: 3, TTL: 4 * sec, Epoch: 4},
	}, t0.UnixNano())
	checkHeaps(t, l)
	if l.Len() != 3 || len(l.cp.s) != 3 {
		t.Fatalf("Len %d, checkpoint heap %d", l.Len(), len(l.cp.s))
	}
	mustRemaining(t, l, 1, 3*sec)
	if got := l.DueCheckpoints(); !equalIDs(cpIDs(got), []uint64{1, 2, 3}) || got[0].Epoch != 3 {
		t.Fatalf("DueCheckpoints = %v", got)
	}
	clk.Advance(3 * sec)
	if got := l.Expired(); len(got) != 2 || got[0] != (Expiry{2, 2}) || got[1] != (Expiry{1, 3}) {
		t.Fatalf("Expired = %v", got)
	}
}

func TestCheckpointRemainderRoundsUpToMillis(t *testing.T) {
	for _, c := range []struct{ in, want time.Duration }{
		{-sec, ms}, {0, ms}, {1, ms}, {ms, ms}, {ms + 1, 2 * ms},
		{1500 * time.Microsecond, 2 * ms}, {sec - 1, sec}, {sec, sec},
	} {
		if got := time.Duration(ceilMillis(int64(c.in))); got != c.want {
			t.Errorf("ceilMillis(%v) = %v, want %v", c.in, got, c.want)
		}
	}
	l, clk := newTestLessor(t, Config{CheckpointInterval: sec})
	l.Grant(Info{ID: 1, TTL: 10 * sec, Epoch: 1})
	clk.Advance(sec + 1500*time.Microsecond)
	if got := l.DueCheckpoints(); len(got) != 1 || got[0].Remaining != 8999*ms {
		t.Fatalf("DueCheckpoints = %v, want 8.999s (8.9985s rounded up)", got)
	}
}
