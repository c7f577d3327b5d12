package server

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/httpapi"
)

// leaderView is the one place that knows who this node thinks leads: the
// leader's id, HTTP address and term, when that view began, and a channel
// closed when it changes. runLeaderWatch feeds it from Raft's leader
// observations, and drops a leader this node has not heard from for longer
// than contactBound (Raft itself gives up after one to two heartbeat
// timeouts; this is the backstop). Forwards follow it (httpapi.forward):
// every forward in flight is cancelled the moment it changes.
type leaderView struct {
	mu   sync.Mutex
	cur  httpapi.LeaderView
	ch   chan struct{}
	addr func(id string) string
}

func newLeaderView(addr func(id string) string) *leaderView {
	ch := make(chan struct{})
	return &leaderView{cur: httpapi.LeaderView{Since: time.Now(), Changed: ch}, ch: ch, addr: addr}
}

// get returns the current view, with the leader's HTTP address as known
// now (the member table may learn it after the view began).
func (v *leaderView) get() httpapi.LeaderView {
	v.mu.Lock()
	cur := v.cur
	v.mu.Unlock()
	if cur.Known && cur.Leader.HTTPAddr == "" {
		cur.Leader.HTTPAddr = v.addr(cur.Leader.ID)
	}
	return cur
}

// set records that id (empty: none) leads in term, as seen from raftAddr,
// and reports whether that changed the view. A change closes the channel
// of the view it replaces.
func (v *leaderView) set(id, raftAddr string, term uint64) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	switch {
	case id == "" && !v.cur.Known:
		return false
	case id != "" && v.cur.Known && v.cur.Leader.ID == id:
		// The same leader: a term read a moment late is no change (a
		// forward in flight to it must not be cancelled for that).
		v.cur.Term = max(v.cur.Term, term)
		return false
	}
	close(v.ch)
	v.ch = make(chan struct{})
	next := httpapi.LeaderView{Known: id != "", Term: term, Since: time.Now(), Changed: v.ch}
	if id != "" {
		next.Leader = api.Member{ID: id, RaftAddr: raftAddr, HTTPAddr: v.addr(id), Voter: true, Leader: true}
	}
	v.cur = next
	return true
}

// contactBound is how long a follower keeps a leader it has not heard
// from in its view: two heartbeat timeouts (the longest Raft's randomised
// timer waits before it starts an election and forgets the leader) plus
// one election timeout.
func (s *Server) contactBound() time.Duration {
	return 2*s.cfg.HeartbeatTimeout + s.cfg.ElectionTimeout
}

// updateLeaderView refreshes the leader view from Raft. A follower whose
// last contact with the leader is older than contactBound knows no leader.
func (s *Server) updateLeaderView() (id string, changed bool) {
	addr, rid := s.raft.LeaderWithID()
	id = string(rid)
	if id != "" && id != s.cfg.NodeID && s.raft.State() != raft.Leader {
		if lc := s.raft.LastContact(); !lc.IsZero() && time.Since(lc) > s.contactBound() {
			id, addr = "", ""
		}
	}
	return id, s.leaders.set(id, string(addr), s.raft.CurrentTerm())
}

// runLeaderView keeps the leader view current: on every leader
// observation of Raft at once, and every half heartbeat timeout for the
// contact check (and for observations dropped when the channel was full).
func (s *Server) runLeaderView() {
	obsCh := make(chan raft.Observation, 16)
	obs := raft.NewObserver(obsCh, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.LeaderObservation, raft.RaftState:
			return true
		}
		return false
	})
	s.raft.RegisterObserver(obs)
	defer s.raft.DeregisterObserver(obs)
	tick := time.NewTicker(max(s.cfg.HeartbeatTimeout/2, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-obsCh:
		case <-tick.C:
		}
		s.updateLeaderView()
	}
}

// LeaderView implements httpapi.Node: what this node knows of the leader,
// and a channel closed when that changes.
func (s *Server) LeaderView() httpapi.LeaderView { return s.leaders.get() }
