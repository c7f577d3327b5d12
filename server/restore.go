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

// restoreTimeout bounds a restore once the backup has been read: writing it
// to the snapshot store, installing it, and committing CmdRestored.
const restoreTimeout = 10 * time.Minute

// ErrRestoreInProgress is returned when a restore is asked for while another
// one runs on this node.
var ErrRestoreInProgress = httpapi.ErrRestoreInProgress

// Restore replaces the replicated state with backup, a state read (and
// verified) from a snapshot file, in the running cluster. This node must be
// the leader. While it runs, this node serves nothing (requests wait, as for
// a new leader).
//
// How (see fsm.PrepareRestore for the invariants):
//
//  1. Hold requests back and wait for what is in flight (a barrier).
//  2. Prepare the backup: this cluster's member table, no idempotency
//     records, index at least the log's last index plus the bump
//     (fsm.RestoreBump: opts.Bump if given, else fsm.DefaultRestoreBump
//     when the cluster's history is behind the backup), marked pending.
//  3. raft.Restore: Raft writes it to the snapshot store under an index
//     above its whole log, installs it in this FSM, and sends it to
//     followers as an InstallSnapshot (they cannot be sent the hole in the
//     log).
//  4. Commit CmdRestored: fresh tokens above every earlier one, and fresh
//     lease TTLs; applying it restarts the lease clock from the restored
//     leases (observeApplied).
//
// Invariant (a restore completes or changes nothing, whatever the request
// does): ctx bounds steps 1 and 2 only; a request that goes away then
// changes nothing. From step 3 on the node owns the restore: the leader's
// duties commit CmdRestored (retrying, see finishPendingRestore), this
// node or the next leader, and no request is served from the pending
// state (waitLeaderReady); Restore only waits for the outcome, bounded by
// ctx, and answers ErrOutcomeUnknown if it ends first.
func (s *Server) Restore(ctx context.Context, backup *fsm.State, opts httpapi.RestoreOptions) (api.RestoreResult, error) {
	if !s.restoreMu.TryLock() {
		return api.RestoreResult{}, ErrRestoreInProgress
	}
	defer s.restoreMu.Unlock()
	if err := s.waitLeaderReady(ctx); err != nil {
		return api.RestoreResult{}, err
	}
	start := time.Now()
	s.restoring.Store(true)
	defer s.restoring.Store(false)
	s.log.Warn("restoring a backup: requests are held until it is installed",
		"backup_index", backup.Index(), "keys", backup.KVLen(), "leases", backup.LeaseCount())

	ctx, cancel := context.WithTimeout(ctx, restoreTimeout)
	defer cancel()
	if err := s.barrier(ctx); err != nil {
		return api.RestoreResult{}, fmt.Errorf("server: restore: wait for entries in flight: %w", translate(err))
	}

	// The running cluster's access tokens and peer secret stay: a restore
	// replaces data, not who may reach it.
	last := s.raft.LastIndex()
	bump := fsm.RestoreBump(backup.Index(), last, opts.Bump, opts.ExplicitBump)
	prepared := fsm.PrepareRestore(backup, s.fsm.State().Members(), max(last, backup.Index())+bump).WithClusterOf(s.fsm.State())
	f, err := os.CreateTemp(s.cfg.DataDir, "restore-*.snap")
	if err != nil {
		return api.RestoreResult{}, fmt.Errorf("server: restore: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := fsm.WriteState(f, prepared); err != nil {
		return api.RestoreResult{}, fmt.Errorf("server: restore: write prepared snapshot: %w", err)
	}
	size, err := f.Seek(0, 1)
	if err == nil {
		_, err = f.Seek(0, 0)
	}
	if err != nil {
		return api.RestoreResult{}, fmt.Errorf("server: restore: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return api.RestoreResult{}, fmt.Errorf("server: restore: nothing changed: %w", err)
	}
	// From here on the node finishes the restore whatever ctx does:
	// raft.Restore does not stop halfway, and the leader's duties commit
	// CmdRestored.
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Index: prepared.Index(), Term: s.raft.CurrentTerm(), Size: size}
	if err := s.raft.Restore(meta, f, restoreTimeout); err != nil {
		if s.fsm.State().Restore().Pending {
			// Installed, but the entry after it did not commit: the next
			// leader (perhaps this node again) finishes it.
			return api.RestoreResult{}, fmt.Errorf("%w: restore installed but not finished: %v", ErrOutcomeUnknown, err)
		}
		return api.RestoreResult{}, fmt.Errorf("server: restore: %w", translate(err))
	}
	s.log.Warn("backup installed; committing the restore", "index", s.fsm.State().Index(), "bump", bump)
	if k := s.cfg.Knobs; k != nil && k.AfterRestoreInstall != nil {
		if err := k.AfterRestoreInstall(); err != nil {
			return api.RestoreResult{}, fmt.Errorf("%w: restore installed but not finished: %v", ErrOutcomeUnknown, err)
		}
	}
	st, err := s.waitRestoreFinished(ctx, prepared.Index())
	if err != nil {
		return api.RestoreResult{}, err
	}
	out := api.RestoreResult{
		BackupIndex: backup.Index(), Index: st.Restore().Index, Bump: bump, Keys: st.KVLen(), Leases: st.LeaseCount(),
		Elections: len(st.Elections()), Digest: st.Digest(), Took: time.Since(start),
	}
	s.log.Warn("backup restored", "backup_index", out.BackupIndex, "index", out.Index, "bump", bump, "keys", out.Keys,
		"leases", out.Leases, "elections", out.Elections, "took", out.Took)
	return out, nil
}

// waitRestoreFinished waits until the restore installed at index is
// finished (CmdRestored applied here), bounded by ctx. The leader's duties
// finish it; this only watches.
func (s *Server) waitRestoreFinished(ctx context.Context, index uint64) (*fsm.State, error) {
	for {
		st := s.fsm.State()
		if r := st.Restore(); !r.Pending && r.Index > index {
			return st, nil
		}
		select {
		case s.restoreKick <- struct{}{}:
		default:
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: restore installed; the leader finishes it: %v", ErrOutcomeUnknown, ctx.Err())
		case <-s.stop:
			return nil, fmt.Errorf("%w: restore installed; the next leader finishes it: %v", ErrOutcomeUnknown, ErrShutdown)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// finishPendingRestore is the leader's duty of finishing an installed
// restore (CmdRestored), whoever installed it and whatever became of the
// request that asked for it. It returns whether a restore is pending
// still, so that other duties (expiry, checkpoints, which work from the
// lease clock of the state before) wait for it.
func (s *Server) finishPendingRestore(ctx context.Context) (pending bool) {
	if !s.fsm.State().Restore().Pending {
		return false
	}
	if k := s.cfg.Knobs; k != nil && k.FinishRestore != nil {
		if err := k.FinishRestore(); err != nil {
			return true
		}
	}
	if _, err := s.finishRestore(ctx); err != nil {
		if ctx.Err() == nil {
			s.log.Warn("could not finish the pending restore; retrying", "error", err)
		}
		return true
	}
	s.log.Warn("restore finished", "index", s.fsm.State().Restore().Index)
	return false
}

// finishRestore commits CmdRestored (bypassing the readiness wait that
// holds every other request back).
func (s *Server) finishRestore(ctx context.Context) (*fsm.Result, error) {
	cmd, err := fsm.NewCommand(fsm.Restored{})
	if err != nil {
		return nil, fmt.Errorf("server: finish restore: %w", err)
	}
	cmd.Stamp = s.stamps.now(s.fsm.State().Stamp())
	f := s.raft.Apply(cmd.Encode(), raftTimeout)
	if err := waitFuture(ctx, f); err != nil {
		return nil, fmt.Errorf("%w: finish restore: %v", ErrOutcomeUnknown, translate(err))
	}
	res, ok := f.Response().(*fsm.Result)
	if !ok {
		return nil, fmt.Errorf("server: unexpected apply response %T", f.Response())
	}
	if res.Err != nil && !errors.Is(res.Err, fsm.ErrNoRestorePending) {
		return nil, res.Err
	}
	return res, nil
}

func deadlineOf(ctx context.Context) time.Time {
	if dl, ok := ctx.Deadline(); ok {
		return dl
	}
	return time.Now().Add(restoreTimeout)
}
