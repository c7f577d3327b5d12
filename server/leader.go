package server

import (
	"context"
	"time"

	"github.com/hashicorp/raft"

	"github.com/coordd/coordd/fsm"
)

// leaderWatchTick is how often runLeaderWatch looks at Raft's state
// without an observation: only observations dropped from a full channel
// need it.
const leaderWatchTick = 500 * time.Millisecond

// runLeaderWatch follows Raft's observations (not LeaderCh, which may drop
// signals) and starts or stops the leader's duties. Observations can be
// dropped too when the channel is full, so a slow tick (leaderWatchTick)
// reconciles as well.
func (s *Server) runLeaderWatch() {
	obsCh := make(chan raft.Observation, 64)
	obs := raft.NewObserver(obsCh, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.LeaderObservation, raft.RaftState:
			return true
		}
		return false
	})
	s.raft.RegisterObserver(obs)
	defer s.raft.DeregisterObserver(obs)

	tick := time.NewTicker(leaderWatchTick)
	defer tick.Stop()

	var (
		cancelDuties context.CancelFunc
		dutiesDone   chan struct{}
		lastLeader   raft.ServerID
	)
	stopDuties := func() {
		if cancelDuties != nil {
			s.leaderReady.Store(false)
			cancelDuties()
			<-dutiesDone
			cancelDuties, dutiesDone = nil, nil
			s.pauses.setActive(false)
		}
	}
	defer stopDuties()

	for {
		select {
		case <-s.stop:
			return
		case <-obsCh:
		case <-tick.C:
		}
		if _, id := s.raft.LeaderWithID(); id != lastLeader {
			if id != "" {
				s.metrics.leaderChanges.Inc()
				s.log.Info("leader changed", "leader", id, "term", s.raft.CurrentTerm())
				if s.readyTarget.Load() == 0 {
					s.readyTarget.Store(max(s.raft.CommitIndex(), 1))
				}
			} else {
				s.log.Warn("no leader", "previous", lastLeader)
			}
			lastLeader = id
		}
		leading := s.raft.State() == raft.Leader
		switch {
		case leading && cancelDuties == nil:
			// Pauses matter from now on (verify.go), before the
			// barrier that makes this leader ready.
			s.pauses.setActive(true)
			ctx, cancel := context.WithCancel(context.Background())
			cancelDuties, dutiesDone = cancel, make(chan struct{})
			go func(done chan struct{}) {
				defer close(done)
				s.leaderDuties(ctx)
			}(dutiesDone)
		case !leading && cancelDuties != nil:
			s.log.Info("stepped down; stopping leader duties")
			stopDuties()
		}
	}
}

// leaderDuties runs while this node leads. First it waits until the first
// entry of its term is applied (a barrier); only then does it serve
// anything. Then it makes sure the member table knows every server's HTTP
// address so that followers can forward to whoever leads.
func (s *Server) leaderDuties(ctx context.Context) {
	start := time.Now()
	for {
		// The barrier counts the term's no-op and itself as applied
		// (barrier.go).
		err := s.barrier(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("leader barrier failed; retrying", "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	// The replicated clock starts now that every stamp of earlier leaders
	// is applied here (clock.go).
	s.stamps.begin(s.fsm.State().Stamp())
	defer s.stamps.end()
	// A cluster whose data dirs predate cluster ids gets one from its
	// leader once every member runs a build that knows them (clusterid.go).
	if s.clusterID.get() == "" {
		go s.giveClusterID(ctx)
	}
	if s.fsm.State().PeerSecret() == nil {
		go s.givePeerSecret(ctx)
	}
	// A restore whose leader died before finishing it is finished first:
	// nothing may be served from a restored state with its old tokens.
	for s.finishPendingRestore(ctx) {
		if ctx.Err() != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	// The lease clock starts before anything is served, so that the first
	// keepalive finds every lease.
	s.promoteLessor()
	defer s.lessor.Demote()
	s.leaderReady.Store(true)
	s.metrics.barrierLatency.Observe(time.Since(start).Seconds())
	s.log.Info("leader ready", "term", s.raft.CurrentTerm(), "after", time.Since(start))
	released := make(chan struct{})
	go func() {
		defer close(released)
		s.releaseDuties(ctx)
	}()
	defer func() { <-released }() // it ends with ctx, as leaseDuties does
	s.reconcileMembers(ctx)
	s.leaseDuties(ctx)
}

// reconcileMembers records the HTTP address of this node and of bootstrap
// peers in the replicated member table when it is missing or outdated.
func (s *Server) reconcileMembers(ctx context.Context) {
	want := []fsm.Member{{ID: s.cfg.NodeID, RaftAddr: s.RaftAddr(), HTTPAddr: s.cfg.HTTPAdvertise}}
	conf := s.raft.GetConfiguration()
	if err := conf.Error(); err != nil {
		return
	}
	inConf := map[string]string{}
	for _, srv := range conf.Configuration().Servers {
		inConf[string(srv.ID)] = string(srv.Address)
	}
	for _, p := range s.cfg.Bootstrap {
		if addr, ok := inConf[p.ID]; ok && p.ID != s.cfg.NodeID {
			want = append(want, fsm.Member{ID: p.ID, RaftAddr: addr, HTTPAddr: p.HTTPAddr})
		}
	}
	st := s.fsm.State()
	for _, m := range want {
		if cur, ok := st.Member(m.ID); ok && (cur == m || m.ID != s.cfg.NodeID) {
			continue // only this node's own record may overwrite a known one
		}
		actx, cancel := context.WithTimeout(ctx, raftTimeout)
		_, err := s.propose(actx, fsm.MemberSet{Member: m})
		cancel()
		if err != nil {
			s.log.Warn("could not record member address", "member", m.ID, "error", err)
			return
		}
	}
}
