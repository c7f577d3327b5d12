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
// recheck is when the view should be refreshed again at the latest even if
// Raft reports nothing: when the leader's contact would go stale, or soon
// while the view and Raft disagree (contact lost, or no leader).
func (s *Server) updateLeaderView() (id string, changed bool, recheck time.Duration) {
	addr, rid := s.raft.LeaderWithID()
	id = string(rid)
	recheck = s.leaderViewPoll()
	switch {
	case id == "":
		// No leader: an election runs; observations tell its end.
	case id != s.cfg.NodeID && s.raft.State() != raft.Leader:
		if lc := s.raft.LastContact(); !lc.IsZero() {
			if stale := time.Until(lc.Add(s.contactBound())); stale < 0 {
				id, addr = "", "" // keep polling: contact may resume
			} else {
				recheck = stale + time.Millisecond
			}
		}
	default:
		// This node leads: Raft observes its stepping down.
		recheck = s.contactBound()
	}
	return id, s.leaders.set(id, string(addr), s.raft.CurrentTerm()), recheck
}

// leaderViewPoll is how often the view is refreshed while it is not
// settled: half a heartbeat timeout.
func (s *Server) leaderViewPoll() time.Duration {
	return max(s.cfg.HeartbeatTimeout/2, 10*time.Millisecond)
}

// runLeaderView keeps the leader view current: on every leader
// observation of Raft at once; on a follower when the leader's last
// contact would become older than contactBound (so a follower that keeps
// hearing from its leader wakes about once per contactBound, not per
// heartbeat); every half heartbeat timeout while there is no leader or its
// contact was lost; and at least every contactBound (observations dropped
// when the channel was full).
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
	timer := time.NewTimer(s.leaderViewPoll())
	defer timer.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-obsCh:
		case <-timer.C:
		}
		_, _, recheck := s.updateLeaderView()
		resetTimer(timer, min(recheck, s.contactBound()))
	}
}

// LeaderView implements httpapi.Node: what this node knows of the leader,
// and a channel closed when that changes.
func (s *Server) LeaderView() httpapi.LeaderView { return s.leaders.get() }
