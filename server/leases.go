package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/coordd/coordd/fsm"
	"github.com/coordd/coordd/lease"
)

// Lease timing, derived from the Raft timing unless configured:
//
//   - TTL floor: ElectionTimeout + LeaderLeaseTimeout (300 ms by default). A
//     shorter lease could not be kept alive across one leader failover.
//   - Extension: 2 × ElectionTimeout (300 ms by default), added to every
//     lease's deadline when a new leader takes over, to cover the time the
//     failover itself took.
//   - Checkpoint interval: 5 s. A lease not kept alive for that long gets its
//     remaining TTL recorded through Raft, so that the next leader resumes
//     the countdown instead of restarting it.
//
// Bound: a lease whose holder stops keeping it alive at t expires by
// t + TTL + checkpoint interval + failover time + extension, however many
// failovers happen, provided each new leader commits its first checkpoint
// batch (milliseconds after it is ready) and node clocks agree within the
// extension.
//
// Safety: an expiry never precedes the deadline promised to the holder by an
// acknowledged keepalive. The first keepalive after a checkpoint is
// committed through Raft (clearing the remainder) before it is acknowledged,
// and expiry proposals are conditional on the lease's epoch and made only
// after the leader has re-confirmed its leadership with a quorum.
const (
	DefaultLeaseCheckpointInterval = 5 * time.Second
	DefaultMaxLeaseTTL             = 24 * time.Hour
	// leaseTick is the least time between two looks of the leader at
	// expiries, checkpoints and lock-delays when applied commands wake it
	// (a busy leader looks at most this often); and the most time between
	// two looks when the lease clock is not the system's (tests move it
	// without waking anyone).
	leaseTick = 10 * time.Millisecond
	// leaseIdleLook bounds the time between two looks when nothing is
	// due: the look finds nothing then, it only backs up the wake-ups.
	leaseIdleLook = time.Second
	// restoreRetry is how soon the leader's duties try again to finish an
	// installed restore.
	restoreRetry = 50 * time.Millisecond
)

// LeaseTTLRange is the range of TTLs a grant may ask for.
func (s *Server) LeaseTTLRange() (time.Duration, time.Duration) {
	return s.cfg.ElectionTimeout + s.cfg.LeaderLeaseTimeout, DefaultMaxLeaseTTL
}

// leaseInfo converts the replicated view of a lease for the lessor.
func leaseInfo(l *fsm.Lease) lease.Info {
	return lease.Info{
		ID: l.ID, TTL: time.Duration(l.TTL) * time.Millisecond, Epoch: l.Epoch,
		Remaining: time.Duration(l.Remaining) * time.Millisecond, CheckpointStamp: l.CheckpointStamp,
	}
}

// observeApplied keeps the lessor in step with applied lease commands. It
// runs in the FSM goroutine, under leaseMu, right after the command applied.
func (s *Server) observeApplied(res *fsm.Result) {
	if res == nil || res.Duplicate {
		return
	}
	if res.Promoted > 0 {
		s.metrics.holderChanges.Add(float64(res.Promoted))
	}
	if !s.lessor.Active() {
		return
	}
	defer s.kickLeaseDuties()
	if res.Reset {
		// A restore finished: the lease clock restarts from the restored
		// leases (whatever became of the request that asked for it).
		s.promoteLessorLocked()
		return
	}
	switch res.Type {
	case fsm.CmdLeaseGrant, fsm.CmdCampaign:
		// A campaign may grant its own lease (fsm.Campaign.NewLeaseTTL);
		// res.Lease is set only then, and only if it was applied.
		if res.Lease != nil {
			s.lessor.Grant(leaseInfo(res.Lease))
			s.metrics.leasesGranted.Inc()
		}
	case fsm.CmdLeaseRevoke:
		if res.Err == nil && res.Lease != nil {
			s.lessor.Forget(res.Lease.ID)
		}
	case fsm.CmdLeaseExpire:
		for _, id := range res.Expired {
			s.lessor.Forget(id)
		}
		s.metrics.leasesExpired.Add(float64(len(res.Expired)))
	case fsm.CmdLeaseCheckpoint:
		for _, id := range res.Checkpointed {
			s.lessor.Checkpointed(id, res.Index)
		}
		s.metrics.leasesCheckpointed.Add(float64(len(res.Checkpointed)))
	case fsm.CmdLeaseRenew:
		s.metrics.leaseRenewCommits.Inc()
		if res.Err == nil && res.Lease != nil {
			s.lessor.Renewed(res.Lease.ID, res.Index)
			s.metrics.leasesRenewed.Inc()
		}
	case fsm.CmdLeaseRenewMany:
		s.metrics.leaseRenewCommits.Inc()
		for _, id := range res.Renewed {
			s.lessor.Renewed(id, res.Index)
		}
		s.metrics.leasesRenewed.Add(float64(len(res.Renewed)))
	}
}

// promoteLessor hands every lease of the state to the lessor. It holds
// leaseMu so that no lease command applies between reading the state and
// activating the lessor.
func (s *Server) promoteLessor() {
	s.leaseMu.Lock()
	defer s.leaseMu.Unlock()
	s.promoteLessorLocked()
}

// promoteLessorLocked is promoteLessor with leaseMu held.
func (s *Server) promoteLessorLocked() {
	ls := s.fsm.State().Leases()
	infos := make([]lease.Info, 0, len(ls))
	for _, l := range ls {
		infos = append(infos, leaseInfo(l))
	}
	s.lessor.Promote(infos, s.stamps.now(s.fsm.State().Stamp()))
	s.log.Info("lease clock promoted", "leases", len(infos))
}

// Keepalive renews a lease. Keepalives are leader memory only, except the
// first one after a checkpoint, which is committed (clearing the remainder)
// before it is acknowledged.
//
// A keepalive is acknowledged only by a confirmed leader: after a quorum
// round that started after it arrived (shared with the keepalives that
// arrived meanwhile, see verifyGroup). A leader that was paused and
// deposed still believes it leads and holds a lease clock frozen at its
// last view: it must answer not_leader, never promise a deadline the new
// leader does not know of (etcd #15247), nor say that a lease the new
// leader keeps is gone.
func (s *Server) Keepalive(ctx context.Context, id uint64) (time.Duration, error) {
	if err := s.waitLeaderReady(ctx); err != nil {
		return 0, err
	}
	if err := s.verify.wait(ctx); err != nil {
		return 0, err
	}
	rem, needsCommit, err := s.lessor.Keepalive(id)
	if err != nil {
		return 0, translateLease(id, err)
	}
	s.metrics.keepalives.Inc()
	if needsCommit {
		res, err := s.propose(ctx, fsm.LeaseRenew{ID: id})
		if err != nil {
			return 0, err
		}
		if res.Err != nil {
			return 0, res.Err
		}
	}
	return rem, nil
}

// renewPerEntry bounds the leases one LeaseRenewMany entry renews, so
// that applying one holds up other requests for about 1.5 ms, not the
// 15 ms of a whole 10,000-lease call (fsm BenchmarkApply_LeaseRenewMany).
const renewPerEntry = 1000

// KeepaliveMany renews many leases in one call, as Keepalive does each:
// remaining[i] is ids[i]'s time left (its TTL: it was just renewed), or
// -1 if that lease does not exist (or has expired). An error (not the
// leader, not ready, a renewal that could not be committed) fails the
// whole call; renewals done before it stand, and a retry renews them
// again, which is harmless.
//
// Like Keepalive, the batch is answered only after a quorum round that
// started after it arrived.
func (s *Server) KeepaliveMany(ctx context.Context, ids []uint64) (remaining []time.Duration, err error) {
	if err := s.waitLeaderReady(ctx); err != nil {
		return nil, err
	}
	if err := s.verify.wait(ctx); err != nil {
		return nil, err
	}
	remaining = make([]time.Duration, len(ids))
	var commit []int // indexes into ids
	for i, id := range ids {
		rem, needsCommit, err := s.lessor.Keepalive(id)
		switch {
		case gone(err):
			remaining[i] = -1
			continue
		case err != nil:
			return nil, translateLease(id, err)
		}
		remaining[i] = rem
		if needsCommit {
			commit = append(commit, i)
		}
	}
	s.metrics.keepalives.Add(float64(len(ids)))
	if err := s.renewCheckpointed(ctx, ids, commit, remaining); err != nil {
		return nil, err
	}
	return remaining, nil
}

// renewCheckpointed commits the renewal of the checkpointed leases among
// ids (commit indexes them) in LeaseRenewMany entries of at most
// renewPerEntry leases, all proposed at once so that they share appends,
// and sets remaining[i] to -1 for a lease gone in the meantime.
//
// The number of entries is the number of leases over renewPerEntry, not
// the number of leases: a call renewing 10,000 checkpointed leases (a
// client that fell behind, on a loaded machine, lets its leases reach
// the checkpoint interval) costs 10 entries, where one entry a lease
// made the call outlast its client's timeout, and the leases expired.
func (s *Server) renewCheckpointed(ctx context.Context, ids []uint64, commit []int, remaining []time.Duration) error {
	chunks := (len(commit) + renewPerEntry - 1) / renewPerEntry
	errs := make([]error, chunks)
	var wg sync.WaitGroup
	for c := range chunks {
		part := commit[c*renewPerEntry : min((c+1)*renewPerEntry, len(commit))]
		wg.Go(func() {
			p := fsm.LeaseRenewMany{IDs: make([]uint64, len(part))}
			for j, i := range part {
				p.IDs[j] = ids[i]
			}
			res, err := s.propose(ctx, p)
			if err == nil {
				err = res.Err
			}
			if err != nil {
				errs[c] = err
				return
			}
			// Renewed lists the leases renewed in the order given: the
			// others were expired or revoked in the meantime.
			r := res.Renewed
			for j, i := range part {
				if len(r) > 0 && r[0] == p.IDs[j] {
					r = r[1:]
					continue
				}
				remaining[i] = -1
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// gone reports whether the lessor says a lease does not exist or has
// expired.
func gone(err error) bool {
	return errors.Is(err, lease.ErrNotFound) || errors.Is(err, lease.ErrExpired)
}

// LeaseRemaining is this leader's view of a lease's remaining TTL.
func (s *Server) LeaseRemaining(id uint64) (time.Duration, error) {
	rem, err := s.lessor.Remaining(id)
	return rem, translateLease(id, err)
}

func translateLease(id uint64, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, lease.ErrNotFound), errors.Is(err, lease.ErrExpired):
		return fmt.Errorf("%w: %d (%v)", fsm.ErrLeaseNotFound, id, err)
	case errors.Is(err, lease.ErrNotActive):
		return fmt.Errorf("%w: %v", ErrLeaderNotReady, err)
	default:
		return err
	}
}

// leaseDuties runs while this node leads and is ready: it proposes expiries
// (conditional, after re-checking leadership), checkpoints, and the promotion
// of candidates whose lock-delay ended.
//
// It sleeps until the next event is due: the lessor's next expiry or
// checkpoint, the end of the first lock-delay. Whatever may bring an event
// forward wakes it: every applied command (grants, renewals, expiries and
// revokes that start lock-delays; observeApplied) and a keepalive that
// moves a deadline earlier (the lessor's Wake). A wake-up looks at most
// every leaseTick, so a busy leader looks no more often than before.
func (s *Server) leaseDuties(ctx context.Context) {
	// A lease clock that is not the system's may jump or stand still:
	// look every leaseTick, as its deadlines cannot be slept until.
	maxWait := leaseIdleLook
	if s.cfg.LeaseClock != nil || s.cfg.UnsafeLeaseClockControl {
		maxWait = leaseTick
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	due := time.Now() // when the timer fires
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-s.restoreKick:
		case <-s.lessor.Wake():
		case <-s.leaseKick:
			if at := last.Add(leaseTick); time.Now().Before(at) {
				// Looked a moment ago: look again leaseTick after that,
				// or when the timer says, whichever comes first.
				if at.Before(due) {
					due = at
					resetTimer(timer, time.Until(at))
				}
				continue
			}
		}
		last = time.Now()
		next := restoreRetry
		if !s.finishPendingRestore(ctx) && !s.restoring.Load() {
			s.expireLeases(ctx)
			s.checkpointLeases(ctx)
			next = min(maxWait, s.promoteDelayed(ctx))
			if d, ok := s.lessor.NextEventIn(); ok {
				next = min(next, d)
			}
			next = max(next, time.Millisecond)
		}
		// (While a restore is pending, the lease clock holds the leases of
		// the state before it until CmdRestored applies: observeApplied.)
		due = time.Now().Add(next)
		resetTimer(timer, next)
	}
}

// resetTimer resets t to d, draining a tick that fired meanwhile.
func resetTimer(t *time.Timer, d time.Duration) {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	t.Reset(d)
}

// kickLeaseDuties wakes the leader's lease duties: an applied command may
// have brought an event forward. It never blocks.
func (s *Server) kickLeaseDuties() {
	select {
	case s.leaseKick <- struct{}{}:
	default:
	}
}

func (s *Server) expireLeases(ctx context.Context) {
	exp := s.lessor.Expired()
	if len(exp) == 0 {
		return
	}
	// A stalled leader that wakes up believes every deadline passed: it
	// must not revoke leases a newer leader keeps alive. Confirm with a
	// quorum first; the epoch condition covers the rest.
	if err := waitFuture(ctx, s.raft.VerifyLeader()); err != nil {
		s.log.Warn("not proposing lease expiry: leadership not confirmed", "leases", len(exp), "error", err)
		for _, e := range exp {
			s.lessor.Retry(e.ID)
		}
		return
	}
	batch := fsm.LeaseExpire{Leases: make([]fsm.LeaseExpiry, len(exp)), Release: fsm.ReleasePerEntry}
	for i, e := range exp {
		batch.Leases[i] = fsm.LeaseExpiry{ID: e.ID, Epoch: e.Epoch}
	}
	actx, cancel := context.WithTimeout(ctx, raftTimeout)
	defer cancel()
	if _, err := s.propose(actx, batch); err != nil {
		s.log.Warn("lease expiry not committed; will retry", "leases", len(exp), "error", err)
		for _, e := range exp {
			s.lessor.Retry(e.ID)
		}
		return
	}
	s.log.Debug("leases expired", "count", len(exp))
}

func (s *Server) checkpointLeases(ctx context.Context) {
	cps := s.lessor.DueCheckpoints()
	if len(cps) == 0 {
		return
	}
	batch := fsm.LeaseCheckpoint{Leases: make([]fsm.LeaseRemaining, len(cps))}
	for i, c := range cps {
		batch.Leases[i] = fsm.LeaseRemaining{ID: c.ID, Epoch: c.Epoch, Remaining: max(c.Remaining.Milliseconds(), 1)}
	}
	actx, cancel := context.WithTimeout(ctx, raftTimeout)
	defer cancel()
	if _, err := s.propose(actx, batch); err != nil {
		s.log.Warn("lease checkpoint not committed", "leases", len(cps), "error", err)
	}
}

// promoteDelayed proposes a promote for each name whose lock-delay has
// ended by the replicated clock. The FSM checks the stamp again. It
// returns the time until the next lock-delay ends (leaseIdleLook if none;
// leaseTick after a failed promote, to try again).
func (s *Server) promoteDelayed(ctx context.Context) time.Duration {
	next := leaseIdleLook
	delayed := s.fsm.State().DelayedElections()
	if len(delayed) == 0 {
		return next
	}
	now := s.stamps.now(s.fsm.State().Stamp())
	for name, until := range delayed {
		if now < until {
			next = min(next, time.Duration(until-now))
			continue
		}
		actx, cancel := context.WithTimeout(ctx, raftTimeout)
		_, err := s.propose(actx, fsm.Promote{Name: name})
		cancel()
		if err != nil {
			s.log.Warn("promote after lock-delay failed", "name", name, "error", err)
			return leaseTick
		}
	}
	return next
}
