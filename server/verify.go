package server

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// verifyGap is the least time between the starts of two leadership rounds
// of one verifyGroup: keepalives arriving meanwhile share the next round,
// so that 10,000 leases cost a round per few milliseconds, not one each.
const verifyGap = 5 * time.Millisecond

// verifyGroup coalesces leadership checks (quorum rounds, Raft's
// VerifyLeader) for keepalives. Every caller of wait is answered by a
// round that started after it called: a round in flight when it arrives
// does not count, because that round's quorum may predate a newer leader
// (a leader paused after the round began would be confirmed by answers
// given before the others elected someone else). Callers that arrive while
// a round runs all share the next one. Rounds start at least gap apart.
type verifyGroup struct {
	verify func() error // one quorum round
	gap    time.Duration
	rounds func() // counts a round (a metric); may be nil
	// maxInFlight bounds the rounds that run at once.
	maxInFlight int

	mu        sync.Mutex
	next      *verifyRound // the round the next caller joins; nil: none yet
	running   bool         // a goroutine runs rounds
	inFlight  int          // rounds started and not finished
	lastStart time.Time
}

// maxVerifyInFlight bounds the rounds of one group that run at once.
const maxVerifyInFlight = 4

type verifyRound struct {
	done    chan struct{}
	err     error
	waiters int // callers that joined (under the group's mu)
}

func newVerifyGroup(verify func() error, gap time.Duration, rounds func()) *verifyGroup {
	return &verifyGroup{verify: verify, gap: gap, rounds: rounds, maxInFlight: maxVerifyInFlight}
}

// wait returns the result of a round that started after the call: nil if
// this node was confirmed as the leader, or why not. ctx bounds the wait
// (the round itself goes on for the others that share it).
func (g *verifyGroup) wait(ctx context.Context) error {
	g.mu.Lock()
	if g.next == nil {
		g.next = &verifyRound{done: make(chan struct{})}
	}
	r := g.next
	r.waiters++
	if !g.running {
		g.running = true
		go g.run()
	}
	g.mu.Unlock()
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return fmt.Errorf("%w: verify leader: %v", ErrLeaderNotReady, ctx.Err())
	}
}

// run starts rounds while callers wait for one, then ends. Rounds may
// overlap (up to maxInFlight), so that a slow round does not delay
// the next by more than the gap.
func (g *verifyGroup) run() {
	for {
		g.mu.Lock()
		r := g.next
		if r == nil {
			g.running = false
			g.mu.Unlock()
			return
		}
		if d := time.Until(g.lastStart.Add(g.gap)); d > 0 || g.inFlight >= g.maxInFlight {
			g.mu.Unlock()
			time.Sleep(max(d, time.Millisecond))
			continue
		}
		// Whoever joined r did so before this point: r starts after all
		// of them arrived. Later callers make a new round.
		g.next = nil
		g.lastStart = time.Now()
		g.inFlight++
		g.mu.Unlock()
		if g.rounds != nil {
			g.rounds()
		}
		go func() {
			r.err = g.verify()
			close(r.done)
			g.mu.Lock()
			g.inFlight--
			g.mu.Unlock()
		}()
	}
}

// verifyLeadership is one round of the server's verifyGroup: a quorum
// confirms that this node still leads, in the same term as when the round
// began (a node that stepped down and was elected again meanwhile may hold
// a lessor view that missed renewals made by the leader in between).
//
// Raft's VerifyLeader counts every heartbeat answer that arrives after it
// was called, even one to a heartbeat sent before: a leader paused while a
// heartbeat was in flight finds, when it resumes, an answer given before
// the others elected a new leader, and could count it. So a round that
// began within pauseSuspectFor of a pause of this process (or while one may
// not have been noticed yet) confirms leadership with a committed entry
// too (a Raft barrier): only followers that accept this term after it was
// written can commit it.
func (s *Server) verifyLeadership() error {
	start := s.pauses.now()
	term := s.raft.CurrentTerm()
	if s.raft.State() != raft.Leader {
		return ErrNotLeader
	}
	if err := s.raft.VerifyLeader().Error(); err != nil {
		return fmt.Errorf("%w: leadership not confirmed by a quorum: %v", ErrNotLeader, err)
	}
	if s.pauses.suspect(start) {
		s.metrics.verifyBarriers.Inc()
		if err := s.barrier(context.Background()); err != nil {
			return fmt.Errorf("%w: leadership not confirmed by a committed entry after a pause: %v", ErrNotLeader, err)
		}
	}
	if s.raft.State() != raft.Leader || s.raft.CurrentTerm() != term {
		return fmt.Errorf("%w: leadership changed while it was confirmed", ErrNotLeader)
	}
	return nil
}

// pauseSuspectFor is how long after a pause of this process a leadership
// round is not trusted on heartbeats alone.
const pauseSuspectFor = time.Second

// pauseWatch notices when this process did not run for a while (SIGSTOP, a
// long GC or swap pause, a frozen VM, CPU starvation): a goroutine ticks
// every period, and a tick later than threshold after the one before
// marks a pause that ended then. The server's threshold is the heartbeat
// timeout: the others cannot have elected a new leader during a shorter
// pause (they wait at least that long without hearing from the leader).
//
// Only a leader's rounds need it, so it ticks only while active: the
// server activates it when this node becomes the Raft leader, before its
// duties start (so before the barrier that makes it ready: a pause before
// that barrier is caught by the barrier itself, which cannot commit once
// the others moved on), and deactivates it when the node steps down. While
// inactive every round is suspect (as if it never ticked).
type pauseWatch struct {
	threshold time.Duration
	period    time.Duration // between ticks: a fifth of the threshold
	origin    time.Time
	lastTick  atomic.Int64 // since origin (0: inactive or never ticked)
	lastPause atomic.Int64 // end of the last pause, since origin (0: none)

	mu     sync.Mutex
	active bool
	wake   chan struct{} // tells run that active changed
}

// pauseTick is the shortest period between ticks.
const pauseTick = 10 * time.Millisecond

func newPauseWatch(threshold time.Duration) *pauseWatch {
	threshold = max(threshold, 5*pauseTick)
	return &pauseWatch{threshold: threshold, period: threshold / 5, origin: time.Now(), wake: make(chan struct{}, 1)}
}

// now reads the watch's monotonic clock.
func (w *pauseWatch) now() int64 { return int64(time.Since(w.origin)) }

// tick records one tick at now.
func (w *pauseWatch) tick(now int64) {
	if last := w.lastTick.Load(); last != 0 && time.Duration(now-last) > w.threshold {
		w.lastPause.Store(now)
	}
	w.lastTick.Store(now)
}

// setActive starts (true) or stops the ticking. Activation counts as a
// tick (without a pause before it).
func (w *pauseWatch) setActive(on bool) {
	w.mu.Lock()
	if w.active != on {
		w.active = on
		if on {
			w.lastTick.Store(w.now())
		} else {
			w.lastTick.Store(0)
		}
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// run ticks while active, until stop is closed.
func (w *pauseWatch) run(stop <-chan struct{}) {
	var t *time.Ticker
	var tc <-chan time.Time
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	for {
		select {
		case <-stop:
			return
		case <-w.wake:
			w.mu.Lock()
			on := w.active
			w.mu.Unlock()
			switch {
			case on && t == nil:
				t = time.NewTicker(w.period)
				tc = t.C
			case !on && t != nil:
				t.Stop()
				t, tc = nil, nil
			}
		case <-tc:
			w.mu.Lock()
			if w.active {
				w.tick(w.now())
			}
			w.mu.Unlock()
		}
	}
}

// suspect reports whether a round that started at start may have counted
// an answer given before a pause: a pause ended less than pauseSuspectFor
// before it, or the watch has not ticked for longer than the threshold (a
// pause that is not noticed yet).
func (w *pauseWatch) suspect(start int64) bool {
	now := w.now()
	if last := w.lastTick.Load(); last == 0 || time.Duration(now-last) > w.threshold {
		return true
	}
	p := w.lastPause.Load()
	return p != 0 && time.Duration(start-p) < pauseSuspectFor
}
