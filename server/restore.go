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
//     records, index at least the log's last index (plus opts.Bump),
//     marked pending.
//  3. raft.Restore: Raft writes it to the snapshot store under an index
//     above its whole log, installs it in this FSM, and sends it to
//     followers as an InstallSnapshot (they cannot be sent the hole in the
//     log).
//  4. Commit CmdRestored: fresh tokens above every earlier one, and fresh
//     lease TTLs; then restart the lease clock from the restored leases.
//
// A failure before step 3 installs the snapshot changes nothing. If this
// node loses leadership after step 3, the next leader finishes step 4
// before it serves (leaderDuties).
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
	if err := waitFuture(ctx, s.raft.Barrier(raftTimeout)); err != nil {
		return api.RestoreResult{}, fmt.Errorf("server: restore: wait for entries in flight: %w", translate(err))
	}

	// The running cluster's access tokens stay: a restore replaces data,
	// not who may reach it.
	prepared := fsm.PrepareRestore(backup, s.fsm.State().Members(), max(s.raft.LastIndex(), backup.Index())+opts.Bump).WithACLOf(s.fsm.State())
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
	meta := &raft.SnapshotMeta{Version: raft.SnapshotVersionMax, Index: prepared.Index(), Term: s.raft.CurrentTerm(), Size: size}
	if err := s.raft.Restore(meta, f, time.Until(deadlineOf(ctx))); err != nil {
		if s.fsm.State().Restore().Pending {
			// Installed, but the entry after it did not commit: the next
			// leader (perhaps this node again) finishes it.
			return api.RestoreResult{}, fmt.Errorf("%w: restore installed but not finished: %v", ErrOutcomeUnknown, err)
		}
		return api.RestoreResult{}, fmt.Errorf("server: restore: %w", translate(err))
	}
	if k := s.cfg.Knobs; k != nil && k.AfterRestoreInstall != nil {
		if err := k.AfterRestoreInstall(); err != nil {
			return api.RestoreResult{}, fmt.Errorf("%w: restore installed but not finished: %v", ErrOutcomeUnknown, err)
		}
	}
	res, err := s.finishRestore(ctx)
	if err != nil {
		return api.RestoreResult{}, err
	}
	s.promoteLessor()
	st := s.fsm.State()
	out := api.RestoreResult{
		BackupIndex: backup.Index(), Index: res.Index, Keys: st.KVLen(), Leases: st.LeaseCount(),
		Elections: len(st.Elections()), Digest: st.Digest(), Took: time.Since(start),
	}
	s.log.Warn("backup restored", "backup_index", out.BackupIndex, "index", out.Index, "keys", out.Keys,
		"leases", out.Leases, "elections", out.Elections, "took", out.Took)
	return out, nil
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
