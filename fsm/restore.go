package fsm

import "errors"

// Restoring a backup into a running cluster takes two steps, so that every
// replica ends in the same state whatever fails in between:
//
//  1. The leader prepares the uploaded state (PrepareRestore) and hands it to
//     Raft as a user snapshot. Raft installs it on every replica under a new
//     index above everything in the log. The prepared state is marked
//     restore-pending.
//  2. The leader then commits CmdRestored. Applying it, every replica gives
//     each restored holder a fresh fencing token (the entry's index) and each
//     restored lease a fresh TTL, and clears the mark.
//
// If the leader dies between the two steps, the next leader finds the mark
// and commits CmdRestored itself before it serves anything.
//
// Invariant (tokens never go backwards): a token is the Raft index of the
// entry that issued it. CmdRestored's index is above the restore's index,
// which Raft puts above every entry in the log, so the tokens CmdRestored
// issues, and every token after them, are greater than any token issued
// before the restore, however old the snapshot.
//
// Invariant (no mass expiry): a restored lease's checkpointed remainder and
// stamp refer to the time the backup was taken; CmdRestored clears them, so
// a leader promoting the lease clock gives it TTL plus the failover
// extension from the moment it takes over: a fresh, bounded grace.

// CmdRestored finishes the restore of a backup (see PrepareRestore).
// Value is part of the log format.
const CmdRestored CommandType = 14

func init() {
	register(CmdRestored, "restored", payloadV1, func(uint8, *dec) Payload { return Restored{} })
}

// ErrNoRestorePending means CmdRestored applied to a state that has no
// restore to finish (another leader finished it first).
var ErrNoRestorePending = errors.New("fsm: no restore pending")

// RestoreInfo describes the last restore of a backup.
type RestoreInfo struct {
	// Pending is true between the installation of a restored state and the
	// commit of CmdRestored.
	Pending bool
	// SourceIndex is the index the restored backup was taken at.
	SourceIndex uint64
	// Index is the Raft index of the CmdRestored entry that finished the
	// last restore (0: never restored, or still pending).
	Index uint64
}

// Restore returns what is known of the last restore of a backup.
func (s *State) Restore() RestoreInfo { return s.restore }

// PrepareRestore returns the state to install when restoring backup into a
// running cluster whose log ends at lastIndex and whose member table is
// members:
//
//   - the member table is the running cluster's (the backup may come from
//     another cluster, or from before a membership change);
//   - the idempotency table is emptied: results recorded before the backup
//     would answer retries with tokens and indexes of the past;
//   - the state's index is lastIndex, so that blocking readers never see
//     the index go back, and the state is marked restore-pending.
//
// backup is not modified.
func PrepareRestore(backup *State, members []Member, lastIndex uint64) *State {
	next := *backup
	mt := emptyState().members.Txn()
	for _, m := range members {
		mt.Insert([]byte(m.ID), m)
	}
	next.members = committed(mt.CommitOnly())
	empty := emptyState()
	next.dedup, next.dedupByStamp = empty.dedup, empty.dedupByStamp
	next.index = max(lastIndex, backup.index)
	next.kvDeleteIndex, next.electionDeleteIndex = next.index, next.index
	next.restore = RestoreInfo{Pending: true, SourceIndex: backup.index}
	return &next
}

// Restored is the payload of CmdRestored (empty).
type Restored struct{}

// Type implements Payload.
func (Restored) Type() CommandType { return CmdRestored }

func (Restored) encode(*enc) uint8 { return payloadV1 }

func (Restored) validate() error { return nil }

// apply finishes a pending restore at this entry's index: fresh tokens for
// every holder, a fresh TTL for every lease. Watchers are not notified one
// by one: the FSM closes its reset channel instead (res.Reset).
func (Restored) apply(a *applier) {
	s, res, index := a.s, a.res, a.s.index
	if !s.restore.Pending {
		res.Err = ErrNoRestorePending
		return
	}
	// Collected first, then written: a tree is not walked while written.
	var leases []*Lease
	s.leases.Root().Walk(func(_ []byte, l *Lease) bool {
		c := *l
		c.Epoch, c.Remaining, c.CheckpointStamp = index, 0, 0
		leases = append(leases, &c)
		return false
	})
	for _, l := range leases {
		s.leases.put(s.w, u64key(l.ID), l)
	}
	var elections []*Election
	s.elections.Root().Walk(func(_ []byte, el *Election) bool {
		if len(el.Holders) == 0 {
			return false
		}
		c := *el
		c.Holders = make([]Candidate, len(el.Holders))
		for i, h := range el.Holders {
			h.Token = index
			c.Holders[i] = h
		}
		c.LastToken, c.ModifyIndex = index, index
		elections = append(elections, &c)
		return false
	})
	for _, el := range elections {
		s.elections.put(s.w, []byte(el.Name), el)
	}
	s.kvDeleteIndex, s.electionDeleteIndex = index, index
	s.restore = RestoreInfo{SourceIndex: s.restore.SourceIndex, Index: index}
	res.Reset = true
}

// DefaultRestoreBump is how far a restore raises the index above the
// backup's when the cluster's history is behind the backup (a new or wiped
// cluster): neither knows the tokens the backup's cluster issued after the
// backup was taken, so they are assumed fewer than this (etcd recommends
// the same order for etcdutl's --bump-revision). Far below overflowing an
// index after many restores, and below 2^53 for JSON readers.
const DefaultRestoreBump = 1 << 30

// RestoreBump is how far a restore raises the index above the backup's
// and the cluster's last index (lastIndex): bump when the operator gave
// one (explicit, 0 included: the opt-out), else DefaultRestoreBump when
// the cluster's history is behind the backup, else nothing (the cluster
// has issued every token up to lastIndex itself, and the backup's are
// below its index).
func RestoreBump(backupIndex, lastIndex, bump uint64, explicit bool) uint64 {
	switch {
	case explicit:
		return bump
	case lastIndex < backupIndex:
		return DefaultRestoreBump
	}
	return 0
}
