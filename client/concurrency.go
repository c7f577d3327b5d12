package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// campaignChunk bounds one blocking campaign call, so that a lost lease or
// a dead node is noticed between calls too.
const campaignChunk = 30 * time.Second

// Election campaigns for a named role with a Session's lease.
type Election struct {
	s    *Session
	name string
}

// NewElection returns the election name for session s.
func NewElection(s *Session, name string) *Election { return &Election{s: s, name: name} }

// Leadership is held leadership. Its Context is cancelled the moment it is
// lost: the session ended, or the election names another leader (or none).
// Even so, a process can be paused past that moment: send Token with every
// write to a resource and let the resource refuse stale tokens.
type Leadership struct {
	e      *Election
	token  uint64
	ctx    context.Context
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup
}

// Token is the fencing token: the Raft index of the entry that made this
// session leader, strictly increasing per name.
func (l *Leadership) Token() uint64 { return l.token }

// Context is cancelled when leadership is lost or given up (Resign,
// Unlock); context.Cause says which. It does not depend on the context
// given to Campaign or Lock, which only bounds the wait.
func (l *Leadership) Context() context.Context { return l.ctx }

// Campaign waits until the session leads the election (or ctx ends, or the
// session is lost: then it fails at once with ErrLeaseLost) and returns the
// Leadership. If ctx ends first, the candidacy is withdrawn.
func (e *Election) Campaign(ctx context.Context, value string) (*Leadership, error) {
	res, err := acquireLoop(ctx, e.s, "elections", e.name, func(cctx context.Context) (*CampaignResult, error) {
		return e.s.c.Campaign(cctx, e.name, e.s.lease, value, campaignChunk)
	})
	if err != nil {
		return nil, err
	}
	return hold(e, res.Token, "elections"), nil
}

// withdrawTimeout bounds the withdrawal of a failed or abandoned campaign.
const withdrawTimeout = 5 * time.Second

// acquireLoop repeats a blocking campaign (or lock) until it leads, the
// session is lost or ctx ends. Whenever it fails for another reason than a
// lost lease — ctx ended, an error, an answer lost on the way — it
// withdraws the session's lease from name, whether it waits in the queue
// or was made a holder meanwhile: a candidacy nobody knows of must not be
// promoted later.
func acquireLoop(ctx context.Context, s *Session, kind, name string, call func(context.Context) (*CampaignResult, error)) (*CampaignResult, error) {
	// The calls stop at once when the session ends.
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(sessionContext(s), cancel)
	defer stop()
	for {
		res, err := call(cctx)
		switch {
		case s.Err() != nil:
			return nil, fmt.Errorf("coordd: campaign: %w", s.Err())
		case errors.Is(err, ErrLeaseLost), errors.Is(err, ErrLeaseNotFound):
			return nil, fmt.Errorf("coordd: campaign: %w: %v", ErrLeaseLost, err)
		case err == nil && res.Leader:
			return res, nil
		case err == nil && ctx.Err() == nil:
			continue // the wait ran out: wait again
		}
		if err == nil {
			err = ctx.Err()
		}
		if werr := s.withdraw(kind, name); werr != nil {
			return nil, fmt.Errorf("coordd: campaign for %q: %w (withdrawing the candidacy failed too: %v)", name, err, werr)
		}
		return nil, err
	}
}

// sessionContext is a context cancelled when s ends.
func sessionContext(s *Session) context.Context { return s.ctx }

// withdraw removes the session's lease from name, whether it waits there
// (token 0) or holds it (its token), with a linearizable read first. A
// name that does not exist, or does not list the lease, needs nothing.
func (s *Session) withdraw(kind, name string) error {
	ctx, cancel := context.WithTimeout(context.Background(), withdrawTimeout)
	defer cancel()
	var err error
	for range 3 {
		var st *ElectionState
		st, err = s.c.readElection(ctx, kind, name)
		if errors.Is(err, ErrNotHolder) { // election_not_found
			return nil
		}
		if err != nil {
			continue
		}
		token, found := uint64(0), false
		for _, h := range st.Holders {
			if h.Lease == s.lease {
				token, found = h.Token, true
			}
		}
		if st.Leader != nil && st.Leader.Lease == s.lease {
			token, found = st.Leader.Token, true
		}
		for _, w := range st.Candidates {
			if w.Lease == s.lease && !found {
				found = true
			}
		}
		if !found {
			return nil
		}
		if kind == "locks" {
			err = s.c.Unlock(ctx, name, s.lease, token)
		} else {
			_, err = s.c.Resign(ctx, name, s.lease, token)
		}
		if err == nil || errors.Is(err, ErrLeaseNotFound) {
			return nil
		}
		// ErrNotHolder: promoted (or released) between the read and the
		// withdrawal: read again.
	}
	return err
}

// hold starts watching a held election or lock (in the background: the
// client's Close ends the session, which ends the watch).
func hold(e *Election, token uint64, kind string) *Leadership {
	ctx, cancel := context.WithCancelCause(context.Background())
	l := &Leadership{e: e, token: token, ctx: ctx, cancel: cancel}
	l.wg.Add(1)
	if !e.s.c.background(func() { l.watch(kind) }) {
		l.wg.Done()
		cancel(fmt.Errorf("coordd: leadership lost: %w", ErrClosed))
	}
	return l
}

// watch cancels the leadership when the session ends or the election shows
// another leader (or none).
func (l *Leadership) watch(kind string) {
	defer l.wg.Done()
	stop := context.AfterFunc(sessionContext(l.e.s), func() {
		l.cancel(fmt.Errorf("coordd: leadership lost: %w", l.e.s.Err()))
	})
	defer stop()
	lost := func(st *ElectionState) bool {
		for _, h := range st.Holders {
			if h.Lease == l.e.s.lease && h.Token == l.token {
				return false
			}
		}
		return true
	}
	var index uint64
	for l.ctx.Err() == nil {
		st, err := l.e.s.c.electionState(l.ctx, kind, l.e.name, index, campaignChunk)
		if err != nil {
			if sleep(l.ctx, 50*time.Millisecond) != nil {
				return
			}
			continue
		}
		if lost(st) {
			why := "nobody holds it now"
			if st.Leader != nil {
				why = fmt.Sprintf("lease %d holds it with token %d now", st.Leader.Lease, st.Leader.Token)
			}
			l.cancel(fmt.Errorf("coordd: leadership of %q lost: %w: %s", l.e.name, ErrNotHolder, why))
			return
		}
		index = st.Index
	}
}

// electionState reads an election or lock, blocking past index (0: now).
func (c *Client) electionState(ctx context.Context, kind, name string, index uint64, wait time.Duration) (*ElectionState, error) {
	if index == 0 {
		return c.readElection(ctx, kind, name)
	}
	return c.readElection(ctx, kind, name, WaitIndex(index, serverWait(ctx, wait)))
}

// Resign gives up leadership; the next candidate leads in the same entry.
func (l *Leadership) Resign(ctx context.Context) error {
	_, err := l.e.s.c.Resign(ctx, l.e.name, l.e.s.lease, l.token)
	l.cancel(errors.New("coordd: resigned"))
	l.wg.Wait()
	return err
}

// Proclaim changes the leader's value, keeping the token.
func (l *Leadership) Proclaim(ctx context.Context, value string) error {
	_, err := l.e.s.c.Proclaim(ctx, l.e.name, l.e.s.lease, l.token, value)
	return err
}

// Leader returns the election's leader, nil when there is none.
func (e *Election) Leader(ctx context.Context) (*Candidate, error) {
	st, err := e.s.c.Election(ctx, e.name)
	if err != nil {
		return nil, err
	}
	return st.Leader, nil
}

// LeaderEvent is one state of an observed election: Leader is nil when
// there is none. Coalesced counts holder changes between this event and the
// previous one that were not delivered one by one. Err reports a failed
// attempt; observing goes on.
type LeaderEvent struct {
	Leader    *Candidate
	Changes   uint64
	Coalesced uint64
	Index     uint64
	Err       error
}

// Observe delivers the election's leader now and after every leader change,
// including "no leader", until ctx ends. It reads linearizably, retrying
// other nodes across failures, so it never ends on a stale state.
func (e *Election) Observe(ctx context.Context) <-chan LeaderEvent {
	return e.s.c.Observe(ctx, e.name)
}

func sameLeader(a, b *Candidate) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Lease == b.Lease && a.Token == b.Token && a.Value == b.Value
}

// Observe is Election.Observe without a session: it delivers the leader of
// name now and whenever it changes (a new holder, a new value, or none),
// not when only the queue of candidates changes.
func (c *Client) Observe(ctx context.Context, name string) <-chan LeaderEvent {
	ch := make(chan LeaderEvent, 1)
	ctx, unbind := c.bind(ctx)
	started := c.background(func() {
		defer unbind()
		defer close(ch)
		var index, changes uint64
		var last *Candidate
		first := true
		for ctx.Err() == nil {
			st, err := c.electionState(ctx, "elections", name, index, campaignChunk)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				select {
				case ch <- LeaderEvent{Err: err}:
				case <-ctx.Done():
					return
				}
				if sleep(ctx, 100*time.Millisecond) != nil {
					return
				}
				continue
			}
			if !first && (st.Index == index || sameLeader(st.Leader, last)) {
				index = max(st.Index, index) // the wait ran out, or only the queue changed
				continue
			}
			ev := LeaderEvent{Leader: st.Leader, Changes: st.Changes, Index: st.Index}
			if !first && st.Changes > changes+1 {
				ev.Coalesced = st.Changes - changes - 1
			}
			first, index, changes, last = false, max(st.Index, 1), st.Changes, st.Leader
			select {
			case ch <- ev:
			case <-ctx.Done():
				return
			}
		}
	})
	if !started {
		unbind()
		close(ch)
	}
	return ch
}

// Mutex is a distributed lock held by a Session. A counting semaphore when
// LockOptions.Limit > 1.
type Mutex struct {
	s    *Session
	name string
	opts LockOptions

	mu        sync.Mutex
	l         *Leadership
	acquiring bool
}

// NewMutex returns the lock name for session s.
func NewMutex(s *Session, name string, opts LockOptions) *Mutex {
	return &Mutex{s: s, name: name, opts: opts}
}

// begin claims the Mutex for one Lock or TryLock: ErrAlreadyLocked when it
// holds the lock (and has not lost it) or another acquisition runs.
func (m *Mutex) begin() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.acquiring || m.l != nil && m.l.ctx.Err() == nil {
		return fmt.Errorf("%w: %q", ErrAlreadyLocked, m.name)
	}
	if m.l != nil { // lost: forget it
		m.l.cancel(errors.New("coordd: lock taken again"))
		m.l = nil
	}
	m.acquiring = true
	return nil
}

func (m *Mutex) finish(l *Leadership) {
	m.mu.Lock()
	m.acquiring = false
	if l != nil {
		m.l = l
	}
	m.mu.Unlock()
}

// Lock waits until the session holds the lock (or ctx ends: the waiting
// acquisition is withdrawn; or the session is lost: ErrLeaseLost). Lock on
// a Mutex that holds the lock, or while another Lock of it waits, returns
// ErrAlreadyLocked.
func (m *Mutex) Lock(ctx context.Context) error {
	if err := m.begin(); err != nil {
		return err
	}
	res, err := acquireLoop(ctx, m.s, "locks", m.name, func(cctx context.Context) (*CampaignResult, error) {
		return m.s.c.Lock(cctx, m.name, m.s.lease, campaignChunk, m.opts)
	})
	if err != nil {
		m.finish(nil)
		return err
	}
	m.finish(hold(&Election{s: m.s, name: m.name}, res.Token, "locks"))
	return nil
}

// TryLock takes the lock if it is free, or returns ErrLocked at once
// (ErrAlreadyLocked if this Mutex holds it already).
func (m *Mutex) TryLock(ctx context.Context) error {
	if err := m.begin(); err != nil {
		return err
	}
	res, err := m.s.c.Lock(ctx, m.name, m.s.lease, 0, m.opts)
	switch {
	case err == nil && res.Leader:
		m.finish(hold(&Election{s: m.s, name: m.name}, res.Token, "locks"))
		return nil
	case err == nil:
		err = ErrLocked
	}
	m.finish(nil)
	if errors.Is(err, ErrLeaseLost) || errors.Is(err, ErrLeaseNotFound) {
		return err
	}
	// Queued, or the answer was lost: leave nothing behind.
	if werr := m.s.withdraw("locks", m.name); werr != nil {
		return fmt.Errorf("%w (withdrawing the attempt failed too: %v)", err, werr)
	}
	return err
}

// Unlock releases the lock.
func (m *Mutex) Unlock(ctx context.Context) error {
	m.mu.Lock()
	l := m.l
	m.l = nil
	m.mu.Unlock()
	if l == nil {
		return fmt.Errorf("%w: %q is not locked by this mutex", ErrNotHolder, m.name)
	}
	err := m.s.c.Unlock(ctx, m.name, m.s.lease, l.token)
	l.cancel(errors.New("coordd: unlocked"))
	l.wg.Wait()
	return err
}

// Token is the fencing token of the held lock (0 when not held).
func (m *Mutex) Token() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.l == nil {
		return 0
	}
	return m.l.token
}

// Context is cancelled the moment the held lock is lost or unlocked (nil
// when not held: take it once after Lock).
func (m *Mutex) Context() context.Context {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.l == nil {
		return nil
	}
	return m.l.ctx
}
