package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/hashicorp/raft"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/fsm"
	"github.com/coordd/coordd/httpapi"
)

// The methods in this file implement httpapi.Node.
var _ httpapi.Node = (*Server)(nil)

// ID is this node's Raft server id.
func (s *Server) ID() string { return s.cfg.NodeID }

// IsLeader reports whether Raft says this node leads.
func (s *Server) IsLeader() bool { return s.raft.State() == raft.Leader }

// Leader returns the leader this node knows of, with its HTTP address from
// the replicated member table (or the bootstrap list before that is filled).
func (s *Server) Leader() (api.Member, bool) {
	addr, id := s.raft.LeaderWithID()
	if id == "" {
		return api.Member{}, false
	}
	return api.Member{
		ID: string(id), RaftAddr: string(addr), HTTPAddr: s.httpAddrOf(string(id)), Voter: true, Leader: true,
	}, true
}

func (s *Server) httpAddrOf(id string) string {
	if id == s.cfg.NodeID {
		return s.cfg.HTTPAdvertise
	}
	if m, ok := s.fsm.State().Member(id); ok {
		return m.HTTPAddr
	}
	for _, p := range s.cfg.Bootstrap {
		if p.ID == id {
			return p.HTTPAddr
		}
	}
	return ""
}

// waitLeaderReady waits until this node leads and has applied its first
// entry of the term, or returns at once if it does not lead. Raft's own
// state is checked every time, so a leader that has just stepped down stops
// serving (keepalives included) at once, even before its duties are torn
// down: a deposed leader steps down after LeaderLeaseTimeout without a
// quorum, before any other node can be elected (HeartbeatTimeout is longer).
//
// A leader that is not ready within leaderReadyWait (its first entry of the
// term does not commit: it may have lost its quorum at once) answers
// ErrLeaderNotReady then, not at the request's deadline, so that a client
// or a forwarding node tries again soon. A restore in progress holds
// requests for as long as it runs.
func (s *Server) waitLeaderReady(ctx context.Context) error {
	var giveUp time.Time
	for {
		if s.raft.State() != raft.Leader {
			return ErrNotLeader
		}
		if s.leaderReady.Load() && !s.restoring.Load() && !s.fsm.State().Restore().Pending {
			return nil
		}
		if !s.restoring.Load() {
			if giveUp.IsZero() {
				giveUp = time.Now().Add(s.leaderReadyWait())
			} else if time.Now().After(giveUp) {
				return fmt.Errorf("%w: the first entry of its term is not applied after %s", ErrLeaderNotReady, s.leaderReadyWait())
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %v", ErrLeaderNotReady, ctx.Err())
		case <-s.stop:
			return ErrShutdown
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// leaderReadyWait is how long a request waits for a new leader to become
// ready: four election timeouts (600 ms by default); a new leader with a
// quorum is ready within milliseconds of its election.
func (s *Server) leaderReadyWait() time.Duration { return 4 * s.cfg.ElectionTimeout }

// Apply proposes cmd through Raft and waits until it is applied here. The
// command is stamped with this leader's wall clock: the FSM's only time.
//
// Invariant (validated before Raft): cmd is decoded and validated with the
// code Apply runs (fsm.Check) before it is proposed, and refused with an
// error wrapping fsm.ErrBadCommand if it fails: a committed entry that
// every replica would refuse stops them all, on every restart.
func (s *Server) Apply(ctx context.Context, cmd fsm.Command) (*fsm.Result, error) {
	if err := fsm.Check(cmd); err != nil {
		s.metrics.refusedCommands.Inc()
		s.log.Error("refused to propose a command that would not apply", "type", cmd.Type, "error", err)
		return nil, fmt.Errorf("server: not proposed: %w", err)
	}
	if err := s.waitLeaderReady(ctx); err != nil {
		return nil, err
	}
	cmd.Stamp = s.stamps.now(s.fsm.State().Stamp())
	timeout := raftTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	start := time.Now()
	f := s.raft.Apply(cmd.Encode(), timeout)
	if err := waitFuture(ctx, f); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %v", ErrOutcomeUnknown, ctx.Err())
		}
		if errors.Is(err, raft.ErrRaftShutdown) {
			// Proposed, then shut down: followers may still commit it.
			return nil, fmt.Errorf("%w: shut down after proposing: %v", ErrOutcomeUnknown, err)
		}
		return nil, translate(err)
	}
	took := time.Since(start).Seconds()
	s.metrics.applyDuration.Observe(took)
	res, ok := f.Response().(*fsm.Result)
	if !ok {
		return nil, fmt.Errorf("server: unexpected apply response %T", f.Response())
	}
	if res.Promoted > 0 && res.Type != fsm.CmdCampaign {
		s.metrics.handoff.Observe(took)
	}
	return res, nil
}

// propose builds the command of p and applies it (see Apply).
func (s *Server) propose(ctx context.Context, p fsm.Payload) (*fsm.Result, error) {
	cmd, err := fsm.NewCommand(p)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	return s.Apply(ctx, cmd)
}

// ReadBarrier implements a linearizable read point on the leader: note the
// commit index, confirm leadership with a quorum (VerifyLeader), then wait
// until the FSM has applied up to the noted index. A new leader first waits
// for its first entry of the term, so the commit index covers every entry
// acknowledged by earlier leaders.
func (s *Server) ReadBarrier(ctx context.Context) error {
	if err := s.waitLeaderReady(ctx); err != nil {
		return err
	}
	ci := s.raft.CommitIndex()
	if err := waitFuture(ctx, s.raft.VerifyLeader()); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%w: verify leader: %v", ErrLeaderNotReady, ctx.Err())
		}
		// A read changes nothing, so losing leadership here is as safe to
		// retry (or forward) as never having led.
		if err = translate(err); errors.Is(err, ErrOutcomeUnknown) {
			return fmt.Errorf("%w: %v", ErrNotLeader, err)
		}
		return err
	}
	if err := s.applied.wait(ctx, ci); err != nil {
		return fmt.Errorf("%w: wait for index %d: %v", ErrLeaderNotReady, ci, err)
	}
	return nil
}

// State returns the current local state.
func (s *Server) State() *fsm.State { return s.fsm.State() }

// ResetCh is closed when a snapshot replaces the whole state.
func (s *Server) ResetCh() <-chan struct{} { return s.fsm.ResetCh() }

// Staleness says how far a local read may lag.
func (s *Server) Staleness() httpapi.Staleness {
	st := httpapi.Staleness{
		AppliedIndex: s.fsm.State().Index(),
		CommitIndex:  s.raft.CommitIndex(),
	}
	_, id := s.raft.LeaderWithID()
	st.KnownLeader = id != ""
	if s.raft.State() != raft.Leader {
		if lc := s.raft.LastContact(); !lc.IsZero() {
			st.LastContact = time.Since(lc)
		} else {
			st.LastContact = -1
		}
	}
	return st
}

// Status reports this node's view of the cluster.
func (s *Server) Status() api.Status {
	st := api.Status{
		PID:          os.Getpid(),
		ID:           s.cfg.NodeID,
		State:        s.raft.State().String(),
		Term:         s.raft.CurrentTerm(),
		CommitIndex:  s.raft.CommitIndex(),
		AppliedIndex: s.raft.AppliedIndex(),
		LastIndex:    s.raft.LastIndex(),
		Ready:        s.Ready() == nil,
		ClusterID:    s.clusterID.get(),
	}
	if l, ok := s.Leader(); ok {
		st.Leader = &l
	}
	if s.raft.State() != raft.Leader {
		if lc := s.raft.LastContact(); !lc.IsZero() {
			st.LastContact = time.Since(lc).Round(time.Millisecond).String()
		}
	}
	st.Members, _ = s.Members(context.Background())
	st.FirstLogIndex, _ = s.store.FirstIndex()
	if snap, ok := s.LastSnapshot(); ok {
		st.Snapshot = &api.SnapshotStatus{Index: snap.Index, Term: snap.Term, SizeBytes: snap.Size,
			DurationMS: snap.Duration.Milliseconds()}
		if !snap.Time.IsZero() {
			st.Snapshot.AgeSeconds = time.Since(snap.Time).Round(time.Millisecond).Seconds()
		}
	}
	s.integrityStatus(&st)
	if r := s.fsm.State().Restore(); r.Pending || r.Index != 0 {
		st.LastRestore = &api.RestoreStatus{Pending: r.Pending, BackupIndex: r.SourceIndex, Index: r.Index}
	}
	return st
}

// Ready returns nil when the node knows a leader, has applied what was
// committed when it first saw one, and, if it leads, has applied its first
// entry of the term.
func (s *Server) Ready() error {
	if s.closed.Load() {
		return ErrShutdown
	}
	_, id := s.raft.LeaderWithID()
	if id == "" {
		return ErrNoLeader
	}
	if s.raft.State() == raft.Leader && (!s.leaderReady.Load() || s.restoring.Load() || s.fsm.State().Restore().Pending) {
		return ErrLeaderNotReady
	}
	if !s.caughtUp.Load() {
		target := s.readyTarget.Load()
		if target == 0 {
			target = s.raft.CommitIndex()
			s.readyTarget.CompareAndSwap(0, max(target, 1))
			target = s.readyTarget.Load()
		}
		if s.raft.AppliedIndex() < target {
			return fmt.Errorf("%w: applied %d of %d", ErrCatchingUp, s.raft.AppliedIndex(), target)
		}
		s.caughtUp.Store(true)
	}
	return nil
}
