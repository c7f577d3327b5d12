package server

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// skewWindow is the window of the skew estimate (see skewEstimator).
const skewWindow = 10 * time.Second

// skewFreshEntries: an entry applied within this many entries of the end
// of this node's log is fresh, and its stamp says something about the
// leader's clock now; older ones (a node catching up) do not.
const skewFreshEntries = 64

// skewWarnEvery rate-limits the warning about a clock skew.
const skewWarnEvery = time.Minute

// skewEstimator estimates how far the replicated clock (the leader's
// stamps) is ahead of this node's wall clock, from the stamps of the
// entries this node applies as they arrive. One sample is stamp − wall
// clock at apply; the entry took some time to arrive, so samples are low by
// that, and the estimate is the largest sample of the last one to two
// windows. A leader reads its own clock instead (exact).
type skewEstimator struct {
	window time.Duration

	mu       sync.Mutex
	curStart time.Time
	cur      int64 // max sample in the current window
	prev     int64 // max sample in the previous window
	hasCur   bool
	hasPrev  bool
	est      time.Duration
	known    bool
}

func newSkewEstimator(window time.Duration) *skewEstimator {
	return &skewEstimator{window: window}
}

// sample records stamp − wall seen at at.
func (e *skewEstimator) sample(skew time.Duration, at time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.roll(at)
	if !e.hasCur || int64(skew) > e.cur {
		e.cur, e.hasCur = int64(skew), true
	}
	e.est, e.known = e.estimate(), true
}

// set records an exact value (the leader's own).
func (e *skewEstimator) set(skew time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.est, e.known = skew, true
}

// roll starts a new window when the current one is over.
func (e *skewEstimator) roll(at time.Time) {
	switch {
	case e.curStart.IsZero():
		e.curStart = at
	case at.Sub(e.curStart) >= 2*e.window:
		e.hasPrev, e.hasCur, e.curStart = false, false, at
	case at.Sub(e.curStart) >= e.window:
		e.prev, e.hasPrev = e.cur, e.hasCur
		e.hasCur, e.curStart = false, at
	}
}

func (e *skewEstimator) estimate() time.Duration {
	switch {
	case e.hasCur && e.hasPrev:
		return time.Duration(max(e.cur, e.prev))
	case e.hasCur:
		return time.Duration(e.cur)
	default:
		return time.Duration(e.prev)
	}
}

// get returns the estimate; ok is false before the first sample.
func (e *skewEstimator) get() (time.Duration, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.est, e.known
}

// observeStamp takes a skew sample from an entry this follower has just
// applied (state stamp after it, and its index). It runs in the FSM's
// goroutine.
func (s *Server) observeStamp(stamp int64, index uint64) {
	if !s.raftStarted.Load() || s.raft.State() == raft.Leader || index+skewFreshEntries < s.raft.LastIndex() {
		return
	}
	now := s.wall()
	s.skew.sample(time.Duration(stamp-now.UnixNano()), time.Now())
	s.warnSkew()
}

// clockSkew is coordd_clock_skew_seconds: how far this node's wall clock
// is ahead of the replicated clock (the leader's stamps; negative: behind).
// The leader reads its own clock; a follower estimates it from the stamps
// of the entries it applies (0 until it has applied a fresh one).
func (s *Server) clockSkew() time.Duration {
	if s.raftStarted.Load() && s.raft.State() == raft.Leader && s.stamps.isRunning() {
		s.skew.set(time.Duration(s.stamps.now(s.fsm.State().Stamp()) - s.wall().UnixNano()))
		s.warnSkew()
	}
	est, _ := s.skew.get()
	return -est
}

// warnSkew logs, at most once per skewWarnEvery, that this node's wall
// clock and the replicated clock differ by more than the lease extension,
// which the lease bounds assume they do not.
func (s *Server) warnSkew() {
	est, ok := s.skew.get()
	if !ok || est.Abs() <= s.cfg.LeaseExtension {
		return
	}
	s.skewWarnMu.Lock()
	defer s.skewWarnMu.Unlock()
	if time.Since(s.skewWarned) < skewWarnEvery {
		return
	}
	s.skewWarned = time.Now()
	s.log.Warn("this node's clock differs from the replicated clock (the leader's stamps) by more than the lease extension: fix its time synchronisation; should it lead, lock-delays and idempotency records would end early and checkpointed leases could expire before their holders' safe deadline",
		"wall_clock_ahead_by", -est, "lease_extension", s.cfg.LeaseExtension)
}
