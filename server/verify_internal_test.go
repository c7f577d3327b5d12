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
