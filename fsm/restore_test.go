package fsm_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/coordd/coordd/fsm"
)

// backupState is a state with leases (one checkpointed), an election with a
// holder and a waiter, a lock, keys and an idempotency record, at index 8.
func backupState(t *testing.T) *fsm.State {
	t.Helper()
	cmds := []fsm.Command{
		cmdOf(fsm.LeaseGrant{TTL: 10_000}), // lease 1
		cmdOf(fsm.LeaseGrant{TTL: 20_000}), // lease 2
		cmdOf(fsm.Campaign{Kind: fsm.KindElection, Name: "e", Lease: 1, Value: []byte("a")}),
		cmdOf(fsm.Campaign{Kind: fsm.KindElection, Name: "e", Lease: 2, Value: []byte("b")}),
		cmdOf(fsm.Campaign{Kind: fsm.KindLock, Name: "l", Lease: 2, Limit: 1}),
		put("k", "v"),
		cmdOf(fsm.LeaseCheckpoint{Leases: []fsm.LeaseRemaining{{ID: 1, Epoch: 1, Remaining: 7}}}),
		cmdOf(fsm.MemberSet{fsm.Member{ID: "old", RaftAddr: "10.9.9.9:1", HTTPAddr: "10.9.9.9:2"}}),
	}
	s := fsm.New().State()
	for i, c := range cmds {
		c.Stamp = int64(i+1) * 1e9
		if i == 5 {
			c.IdempotencyKey = "put-k"
		}
		var res *fsm.Result
		if s, res = fsm.ApplyCommand(s, uint64(i+1), 1, c); res.Err != nil {
			t.Fatalf("command %d: %v", i+1, res.Err)
		}
	}
	return s
}

func TestPrepareRestoreKeepsTheRunningClustersMembersAndMarksTheStatePending(t *testing.T) {
	t.Parallel()
	backup := backupState(t)
	before := stateBytes(t, backup)
	cur := []fsm.Member{{ID: "n1", RaftAddr: "127.0.0.1:1", HTTPAddr: "127.0.0.1:2"}}
	p := fsm.PrepareRestore(backup, cur, 500)

	if !bytes.Equal(stateBytes(t, backup), before) {
		t.Fatal("PrepareRestore modified the backup")
	}
	if got := p.Members(); len(got) != 1 || got[0] != cur[0] {
		t.Fatalf("members = %+v, want the running cluster's %+v", got, cur)
	}
	if p.Index() != 500 {
		t.Fatalf("index = %d, want 500 (never behind the running cluster)", p.Index())
	}
	if r := p.Restore(); !r.Pending || r.SourceIndex != 8 || r.Index != 0 {
		t.Fatalf("Restore() = %+v, want pending from source index 8", r)
	}
	if p.DedupLen() != 0 {
		t.Fatalf("%d idempotency records kept; results of the past must not answer retries", p.DedupLen())
	}
	if _, idx, _ := p.WatchKey("missing"); idx != 500 {
		t.Fatalf("delete index = %d, want 500 so that blocking readers of missing keys wake", idx)
	}
	if e, ok := p.Get("k"); !ok || string(e.Value) != "v" {
		t.Fatalf("Get(k) = %v %v", e, ok)
	}
	// A backup newer than the log (restoring into an emptier cluster)
	// keeps its own index.
	if q := fsm.PrepareRestore(backup, cur, 3); q.Index() != 8 {
		t.Fatalf("index = %d, want the backup's 8", q.Index())
	}
}

func TestThePendingMarkSurvivesASnapshot(t *testing.T) {
	t.Parallel()
	p := fsm.PrepareRestore(backupState(t), nil, 500)
	s, err := fsm.ReadState(bytes.NewReader(stateBytes(t, p)))
	if err != nil {
		t.Fatal(err)
	}
	if s.Restore() != p.Restore() || s.Index() != 500 {
		t.Fatalf("after a round trip: %+v at %d, want %+v at 500", s.Restore(), s.Index(), p.Restore())
	}
}

func TestRestoredIssuesFreshTokensAndFreshLeaseTTLs(t *testing.T) {
	t.Parallel()
	f := fsm.New()
	if err := f.Restore(newRC(stateBytes(t, fsm.PrepareRestore(backupState(t), nil, 500)))); err != nil {
		t.Fatal(err)
	}
	reset := f.ResetCh()
	res := applyTo(t, f, 502, cmdOf(fsm.Restored{}))
	if res.Err != nil {
		t.Fatalf("restored: %v", res.Err)
	}
	if !closed(reset) {
		t.Fatal("watchers of the old state were not woken")
	}
	s := f.State()
	if r := s.Restore(); r.Pending || r.Index != 502 || r.SourceIndex != 8 {
		t.Fatalf("Restore() = %+v, want finished at 502 from source 8", r)
	}
	e, ok := s.Election("e")
	if !ok || len(e.Holders) != 1 || e.Holders[0].Lease != 1 || e.Holders[0].Token != 502 || e.LastToken != 502 {
		t.Fatalf("election e = %+v, want lease 1 holding with token 502", e)
	}
	if len(e.Waiting) != 1 || e.Waiting[0].Token != 0 {
		t.Fatalf("waiters = %+v, want lease 2 still waiting without a token", e.Waiting)
	}
	if l, _ := s.Election("l"); l.Holders[0].Token != 502 {
		t.Fatalf("lock token = %d, want 502", l.Holders[0].Token)
	}
	for _, l := range s.Leases() {
		if l.Remaining != 0 || l.CheckpointStamp != 0 || l.Epoch != 502 {
			t.Fatalf("lease %+v keeps the backup's countdown; want a fresh TTL at epoch 502", l)
		}
	}
	// The next token is greater again, and an expiry proposed against a
	// pre-restore epoch is ignored.
	next := applyTo(t, f, 503, cmdOf(fsm.LeaseExpire{Leases: []fsm.LeaseExpiry{{ID: 1, Epoch: 3}}}))
	if len(next.Expired) != 0 {
		t.Fatalf("expiry with a pre-restore epoch applied: %v", next.Expired)
	}
	res = applyTo(t, f, 504, cmdOf(fsm.Resign{Name: "e", Lease: 1, Token: 502}))
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if e, _ := f.State().Election("e"); e.Holders[0].Lease != 2 || e.Holders[0].Token != 504 {
		t.Fatalf("after resign: %+v, want lease 2 with token 504", e.Holders)
	}
}

func TestRestoredWithoutAPendingRestoreChangesNothing(t *testing.T) {
	t.Parallel()
	f := fsm.New()
	if err := f.Restore(newRC(stateBytes(t, backupState(t)))); err != nil {
		t.Fatal(err)
	}
	before := f.State()
	res := applyTo(t, f, 9, cmdOf(fsm.Restored{}))
	if !errors.Is(res.Err, fsm.ErrNoRestorePending) {
		t.Fatalf("Err = %v, want ErrNoRestorePending", res.Err)
	}
	if e, _ := f.State().Election("e"); e.Holders[0].Token != 3 {
		t.Fatalf("token changed to %d", e.Holders[0].Token)
	}
	if r := f.State().Restore(); r != before.Restore() {
		t.Fatalf("restore info changed: %+v", r)
	}
	// A second CmdRestored after a finished one is refused the same way.
	if err := f.Restore(newRC(stateBytes(t, fsm.PrepareRestore(backupState(t), nil, 9)))); err != nil {
		t.Fatal(err)
	}
	applyTo(t, f, 11, cmdOf(fsm.Restored{}))
	if res := applyTo(t, f, 12, cmdOf(fsm.Restored{})); !errors.Is(res.Err, fsm.ErrNoRestorePending) {
		t.Fatalf("second restored: %v", res.Err)
	}
}

func TestDigestIsEqualForTheSameDataAfterARestoreAndDiffersOtherwise(t *testing.T) {
	t.Parallel()
	backup := backupState(t)
	f := fsm.New()
	if err := f.Restore(newRC(stateBytes(t, fsm.PrepareRestore(backup, nil, 500)))); err != nil {
		t.Fatal(err)
	}
	applyTo(t, f, 501, cmdOf(fsm.Restored{}))
	if got, want := f.State().Digest(), backup.Digest(); got != want {
		t.Fatalf("digest after restore %s, want the backup's %s", got, want)
	}
	for name, cmd := range map[string]fsm.Command{
		"a put":    put("k", "other"),
		"a grant":  cmdOf(fsm.LeaseGrant{TTL: 5000}),
		"a resign": cmdOf(fsm.Resign{Name: "e", Lease: 1, Token: 501}),
	} {
		s, res := fsm.ApplyCommand(f.State(), 600, 2, cmd)
		if res.Err != nil {
			t.Fatalf("%s: %v", name, res.Err)
		}
		if s.Digest() == backup.Digest() {
			t.Errorf("%s did not change the digest", name)
		}
	}
}
