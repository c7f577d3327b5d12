package server

import (
	"context"
	"time"

	"github.com/coordd/coordd/fsm"
)

// Releasing what expired or revoked leases held, in bounded entries.
//
// An expiry or revoke ends its lease in its own entry but releases at most
// fsm.ReleasePerEntry of the elections, locks and keys the lease held (a
// lease may hold 10,000 of them: released in one entry, they would hold up
// every other request for tens of milliseconds). The leader releases the
// rest in fsm.LeaseRelease entries of the same size, one after the other,
// so that other requests' entries interleave with them; see fsm/lease.go
// for what is observable meanwhile. A new leader carries on from the state.

// releaseDuties runs while this node leads (after the leader is ready):
// it proposes a LeaseRelease while the state holds a dead lease with
// attachments left, and otherwise waits for an entry that leaves some.
func (s *Server) releaseDuties(ctx context.Context) {
	for {
		ids := s.fsm.State().UnreleasedLeases(1)
		if len(ids) == 0 {
			select {
			case <-ctx.Done():
				return
			case <-s.releaseKick:
			}
			continue
		}
		actx, cancel := context.WithTimeout(ctx, raftTimeout)
		_, err := s.propose(actx, fsm.LeaseRelease{ID: ids[0], Release: fsm.ReleasePerEntry})
		cancel()
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			return
		}
		// Safe to retry whatever happened: releasing is idempotent (a
		// release of what is already released changes nothing).
		s.log.Warn("lease release not committed; will retry", "lease", ids[0], "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// kickRelease wakes releaseDuties (from the FSM goroutine, after a batch
// that left attachments of dead leases to release). Nil-safe.
func kickRelease(ch chan struct{}) {
	if ch == nil {
		return
	}
	select {
	case ch <- struct{}{}:
	default:
	}
}
