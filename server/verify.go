package server

import (
	"context"
	"fmt"
	"sync"
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

	mu        sync.Mutex
	next      *verifyRound // the round the next caller joins; nil: none yet
	running   bool         // a goroutine runs rounds
	lastStart time.Time
}

type verifyRound struct {
	done    chan struct{}
	err     error
	waiters int // callers that joined (under the group's mu)
}

func newVerifyGroup(verify func() error, gap time.Duration, rounds func()) *verifyGroup {
	return &verifyGroup{verify: verify, gap: gap, rounds: rounds}
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

// run starts rounds while callers wait for one, then ends.
func (g *verifyGroup) run() {
	for {
		g.mu.Lock()
		r := g.next
		if r == nil {
			g.running = false
			g.mu.Unlock()
			return
		}
		if d := time.Until(g.lastStart.Add(g.gap)); d > 0 {
			g.mu.Unlock()
			time.Sleep(d)
			continue
		}
		// Whoever joined r did so before this point: r starts after all
		// of them arrived. Later callers make a new round.
		g.next = nil
		g.lastStart = time.Now()
		g.mu.Unlock()
		if g.rounds != nil {
			g.rounds()
		}
		r.err = g.verify()
		close(r.done)
	}
}

// verifyLeadership is one round of the server's verifyGroup: a quorum
// confirms that this node still leads, in the same term as when the round
// began (a node that stepped down and was elected again meanwhile may hold
// a lessor view that missed renewals made by the leader in between).
func (s *Server) verifyLeadership() error {
	term := s.raft.CurrentTerm()
	if s.raft.State() != raft.Leader {
		return ErrNotLeader
	}
	if err := s.raft.VerifyLeader().Error(); err != nil {
		return fmt.Errorf("%w: leadership not confirmed by a quorum: %v", ErrNotLeader, err)
	}
	if s.raft.State() != raft.Leader || s.raft.CurrentTerm() != term {
		return fmt.Errorf("%w: leadership changed while it was confirmed", ErrNotLeader)
	}
	return nil
}
