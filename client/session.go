package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Session is a lease kept alive in the background, at a third of its TTL.
//
// Done closes, and Err says why, as soon as the lease is lost (expired or
// revoked) or the session can no longer be sure of it: its safe deadline
// passed without a successful keepalive. The safe deadline is counted from
// the time the last successful keepalive was SENT (the lease cannot have
// been renewed earlier than that), plus the remaining time the leader
// answered, minus a drift margin for the rate difference between this
// process's clock and the leader's. After Done, assume nothing: another
// session may hold what this one held.
//
// Each keepalive's budget is what is left until the safe deadline: a
// keepalive that a stalled node leaves unanswered is hedged to the leader
// the other nodes name within a quarter of that budget (see
// Config.HedgeAfter), so a Session keeps its lease through a stalled,
// isolated or killed leader as long as a quorum is healthy. Client.Close
// ends every Session of the client.
type Session struct {
	c     *Client
	lease uint64
	ttl   time.Duration
	drift time.Duration

	mu       sync.Mutex
	deadline time.Time // safe deadline
	err      error
	done     chan struct{}
	ctx      context.Context // cancelled when done closes
	endCtx   context.CancelFunc

	stop    context.CancelFunc
	stopped chan struct{}
}

// SessionOption adjusts a Session.
type SessionOption func(*Session)

// WithDriftMargin sets how much earlier than the leader's deadline the
// session gives up (default: TTL/10, at least 20 ms).
func WithDriftMargin(d time.Duration) SessionOption { return func(s *Session) { s.drift = d } }

// NewSession grants a lease of the given TTL and keeps it alive until Close
// or until it is lost.
func NewSession(ctx context.Context, c *Client, ttl time.Duration, opts ...SessionOption) (*Session, error) {
	s := &Session{c: c, ttl: ttl, drift: max(ttl/10, 20*time.Millisecond), done: make(chan struct{}), stopped: make(chan struct{})}
	s.ctx, s.endCtx = context.WithCancel(context.Background())
	for _, o := range opts {
		o(s)
	}
	if s.drift >= ttl/2 {
		s.endCtx()
		return nil, fmt.Errorf("%w: drift margin %s must be under half the TTL %s", ErrBadConfig, s.drift, ttl)
	}
	sent := time.Now()
	l, err := c.Grant(ctx, ttl)
	if err != nil {
		s.endCtx()
		return nil, fmt.Errorf("coordd: session: grant: %w", err)
	}
	s.lease = l.ID
	s.deadline = sent.Add(l.Remaining() - s.drift)
	lctx, cancel := context.WithCancel(context.Background())
	s.stop = cancel
	if !c.startSession(s, func() { s.run(lctx) }) {
		cancel()
		close(s.stopped)
		s.end(ErrSessionClosed)
		rctx, rcancel := context.WithTimeout(ctx, closeRevokeTimeout)
		defer rcancel()
		_ = c.Revoke(rctx, s.lease) // fails with ErrClosed once the client is closed: the lease expires by its TTL
		return nil, fmt.Errorf("coordd: session: %w", ErrClosed)
	}
	return s, nil
}

// startSession registers s and runs its keepalive loop in the background;
// false when the client is closing.
func (c *Client) startSession(s *Session, run func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return false
	}
	c.sessions[s] = struct{}{}
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		run()
	}()
	return true
}

func (c *Client) forgetSession(s *Session) {
	c.mu.Lock()
	delete(c.sessions, s)
	c.mu.Unlock()
}

// Lease is the session's lease id.
func (s *Session) Lease() uint64 { return s.lease }

// TTL is the session's lease TTL.
func (s *Session) TTL() time.Duration { return s.ttl }

// Done is closed when the session ends: lost, untrusted, or closed.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err says why Done closed (wrapping ErrLeaseLost or ErrSessionClosed); nil
// while the session is alive.
func (s *Session) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Deadline is the time until which the session is safe without news.
func (s *Session) Deadline() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deadline
}

func (s *Session) end(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
		close(s.done)
		s.endCtx()
	}
}

func (s *Session) run(ctx context.Context) {
	defer close(s.stopped)
	defer func() {
		if s.Err() != nil && !errors.Is(s.Err(), ErrSessionClosed) {
			s.c.forgetSession(s) // lost: nothing left for Client.Close to do
		}
	}()
	interval := s.ttl / 3
	next := time.NewTimer(interval)
	defer next.Stop()
	// Why the last keepalive did not extend the deadline, for the error
	// that ends a session at its safe deadline.
	var why string
	for {
		deadline := s.Deadline()
		expire := time.NewTimer(time.Until(deadline))
		select {
		case <-ctx.Done():
			expire.Stop()
			return
		case <-expire.C:
			s.end(fmt.Errorf("%w: no keepalive succeeded before the safe deadline %s%s", ErrLeaseLost, deadline.Format(time.RFC3339Nano), why))
			return
		case <-next.C:
		}
		expire.Stop()
		// One keepalive, retried by the client until it succeeds or the
		// safe deadline passes.
		kctx, cancel := context.WithDeadline(ctx, deadline)
		sent := time.Now()
		l, err := s.c.KeepAlive(kctx, s.lease)
		cancel()
		switch {
		case err == nil:
			s.mu.Lock()
			if d := sent.Add(l.Remaining() - s.drift); d.After(s.deadline) {
				s.deadline, why = d, ""
			} else {
				why = fmt.Sprintf(" (the last keepalive, sent %s before its answer, left %s: no later deadline)",
					time.Since(sent).Round(time.Millisecond), l.Remaining())
			}
			s.mu.Unlock()
			next.Reset(interval)
		case errors.Is(err, ErrLeaseNotFound):
			s.end(fmt.Errorf("%w: lease %d expired or was revoked", ErrLeaseLost, s.lease))
			return
		case ctx.Err() != nil:
			return
		default:
			// The deadline check at the top of the loop ends the session
			// if nothing succeeds in time; try again soon.
			why = fmt.Sprintf(" (last keepalive, sent %s before it failed: %v)", time.Since(sent).Round(time.Millisecond), err)
			next.Reset(min(interval, 50*time.Millisecond))
		}
	}
}

// Close stops the keepalives and revokes the lease, releasing everything
// the session holds. Done closes with ErrSessionClosed. Client.Close closes
// every session of the client.
func (s *Session) Close(ctx context.Context) error {
	s.stop()
	<-s.stopped
	s.end(ErrSessionClosed)
	s.c.forgetSession(s)
	if err := s.c.Revoke(ctx, s.lease); err != nil && !errors.Is(err, ErrLeaseNotFound) {
		return fmt.Errorf("coordd: session: revoke lease %d: %w", s.lease, err)
	}
	return nil
}
