package server

import "context"

// barrier commits a Raft barrier and waits until every entry before it is
// applied, then counts the barrier itself as applied.
//
// Invariant: every committed index this node's linearizable reads may
// wait for advances s.applied. Commands advance it as the FSM applies
// them and configuration entries as they are stored, but no-op and
// barrier entries never reach the FSM: a barrier whose index was not
// counted leaves the commit index above the applied index until the next
// command, and a read that noted the commit index (ReadBarrier) waits for
// that command — forever, if nobody writes. Once a barrier is done, every
// entry up to its index is applied (the FSM applies in order), the leader's
// no-op of the term included. Every barrier of the server goes through
// here.
func (s *Server) barrier(ctx context.Context) error {
	last := s.raft.LastIndex()
	f := s.raft.Barrier(raftTimeout)
	if err := waitFuture(ctx, f); err != nil {
		return err
	}
	if b, ok := f.(interface{ Index() uint64 }); ok && b.Index() > last {
		last = b.Index()
	}
	s.applied.advance(last)
	return nil
}
