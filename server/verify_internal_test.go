package server

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeRounds is a verify function whose rounds block until released, and
// which records when each started.
type fakeRounds struct {
	mu      sync.Mutex
	starts  []time.Time
	release chan error
}

func (f *fakeRounds) verify() error {
	f.mu.Lock()
	f.starts = append(f.starts, time.Now())
	f.mu.Unlock()
	return <-f.release
}

func (f *fakeRounds) started() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.starts)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// Test_VerifyGroup_AKeepaliveWaitsForARoundThatStartedAfterIt: callers
// that arrive while a round runs are not answered by it, but by the next
// one, which they all share; a failed round fails everyone who shares it.
func Test_VerifyGroup_AKeepaliveWaitsForARoundThatStartedAfterIt(t *testing.T) {
	f := &fakeRounds{release: make(chan error)}
	var rounds atomic.Int32
	g := newVerifyGroup(f.verify, time.Millisecond, func() { rounds.Add(1) })
	g.maxInFlight = 1 // round 2 waits for round 1: its callers are counted first
	ctx := context.Background()

	first := make(chan error, 1)
	go func() { first <- g.wait(ctx) }()
	waitFor(t, "the first round to start", func() bool { return f.started() == 1 })

	// Ten callers arrive while round 1 runs.
	later := make(chan error, 10)
	var joined sync.WaitGroup
	for range 10 {
		joined.Add(1)
		go func() {
			joined.Done()
			later <- g.wait(ctx)
		}()
	}
	joined.Wait()
	waitFor(t, "the ten callers to join the next round", func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.next != nil && g.next.waiters == 10
	})
	f.release <- nil // round 1 succeeds: only the first caller is answered
	if err := <-first; err != nil {
		t.Fatalf("first caller: %v", err)
	}
	select {
	case err := <-later:
		t.Fatalf("a caller that arrived during round 1 was answered by it (%v)", err)
	default:
	}
	waitFor(t, "round 2 to start", func() bool { return f.started() == 2 })
	notLeader := errors.New("deposed")
	f.release <- notLeader // round 2 fails: all ten get the error
	for range 10 {
		if err := <-later; !errors.Is(err, notLeader) {
			t.Fatalf("caller of round 2 got %v, want %v", err, notLeader)
		}
	}
	if n := rounds.Load(); n != 2 {
		t.Errorf("%d rounds counted, want 2", n)
	}
	f.mu.Lock()
	if gap := f.starts[1].Sub(f.starts[0]); gap < time.Millisecond {
		t.Errorf("rounds started %s apart, want at least the gap", gap)
	}
	f.mu.Unlock()

	// A caller whose context ends stops waiting; the round goes on.
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- g.wait(cctx) }()
	waitFor(t, "round 3 to start", func() bool { return f.started() == 3 })
	cancel()
	if err := <-done; !errors.Is(err, ErrLeaderNotReady) {
		t.Errorf("cancelled caller got %v", err)
	}
	f.release <- nil
	waitFor(t, "the group to go idle", func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return !g.running
	})
}

// Test_VerifyGroup_ASlowRoundDoesNotHoldBackTheNext: rounds overlap, so a
// caller that arrives during a slow round is answered by the next one,
// which starts a gap later, not when the slow one ends.
func Test_VerifyGroup_ASlowRoundDoesNotHoldBackTheNext(t *testing.T) {
	f := &fakeRounds{release: make(chan error, 2)}
	g := newVerifyGroup(f.verify, time.Millisecond, nil)
	ctx := context.Background()
	first := make(chan error, 1)
	go func() { first <- g.wait(ctx) }()
	waitFor(t, "round 1 to start", func() bool { return f.started() == 1 })
	second := make(chan error, 1)
	go func() { second <- g.wait(ctx) }()
	waitFor(t, "round 2 to start while round 1 runs", func() bool { return f.started() == 2 })
	f.release <- nil // whichever round takes it
	f.release <- nil
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if err := <-second; err != nil {
		t.Fatal(err)
	}
}

// Test_PauseWatch_SuspectsRoundsRightAfterAPause: a round is suspect when
// it began less than pauseSuspectFor after a pause ended, or while the
// watch has not ticked for longer than the threshold (the pause is not
// noticed yet); not otherwise.
func Test_PauseWatch_SuspectsRoundsRightAfterAPause(t *testing.T) {
	w := newPauseWatch(100 * time.Millisecond)
	ms := func(n int) int64 { return int64(time.Duration(n) * time.Millisecond) }
	// Simulated ticks: the watch's own clock is only read by suspect.
	w.origin = time.Now().Add(-time.Hour)
	base := w.now()
	if !w.suspect(base) {
		t.Error("a watch that never ticked trusts a round")
	}
	for i := range 10 {
		w.tick(base + ms(10*i))
	}
	// Ticking regularly: nothing suspect, once it keeps up with now.
	w.tick(w.now())
	if w.suspect(w.now()) {
		t.Error("a round without a pause is suspect")
	}
	// A pause: the next tick comes 5 s late.
	now := w.now()
	w.lastTick.Store(now - ms(5000))
	if !w.suspect(now) {
		t.Error("a round while the pause is not noticed yet is trusted")
	}
	w.tick(now)
	if !w.suspect(now + ms(10)) {
		t.Error("a round right after a pause is trusted")
	}
	w.lastPause.Store(now - int64(2*pauseSuspectFor))
	if w.suspect(now) {
		t.Error("a round long after a pause is suspect")
	}
}
