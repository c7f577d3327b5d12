package server_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/fsm"
	"github.com/coordd/coordd/internal/testcluster"
	"github.com/coordd/coordd/server"
)

// status reads a node's /v1/status.
func status(t *testing.T, c *testcluster.Cluster, n *testcluster.Node) api.Status {
	t.Helper()
	r := c.Do(http.MethodGet, n.URL()+"/v1/status", "")
	var st api.Status
	r.JSON(t, &st)
	return st
}

// latestSnapshotFile reads the newest snapshot in a node's snapshot store
// and verifies it as `coordd snapshot inspect` does.
func latestSnapshotFile(t *testing.T, n *testcluster.Node) *fsm.State {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(n.DataDir, "snapshots", "*", "state.bin"))
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no snapshot in %s: %v", n.DataDir, err)
	}
	b, err := os.ReadFile(dirs[len(dirs)-1]) // names sort by term, index, time
	if err != nil {
		t.Fatal(err)
	}
	st, err := fsm.ReadState(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("snapshot %s does not verify: %v", dirs[len(dirs)-1], err)
	}
	return st
}

func Test_Snapshots_TakenOnTheLogThreshold_CompactTheLog(t *testing.T) {
	t.Parallel()
	c := testcluster.New(t, 3, func(cfg *server.Config) {
		cfg.SnapshotThreshold = 40
		cfg.SnapshotThresholdCheck = 50 * time.Millisecond
		cfg.SnapshotInterval = time.Hour
		cfg.TrailingLogs = 10
	})
	l := c.Leader()
	for i := range 100 {
		putRetry(t, c, l, fmt.Sprintf("k%03d", i), "v")
	}
	for _, n := range c.Nodes {
		testcluster.Poll(t, 10*time.Second, func() error {
			st := status(t, c, n)
			if st.Snapshot == nil || st.Snapshot.Index < 40 || st.FirstLogIndex <= 1 {
				return fmt.Errorf("%s: snapshot %+v, first log index %d", n.ID, st.Snapshot, st.FirstLogIndex)
			}
			return nil
		})
		st := latestSnapshotFile(t, n)
		if st.KVLen() < 30 || len(st.Members()) != 3 {
			t.Fatalf("%s: snapshot at %d holds %d keys, %d members", n.ID, st.Index(), st.KVLen(), len(st.Members()))
		}
	}
	r := c.Do(http.MethodGet, l.URL()+"/metrics", "")
	for _, m := range []string{"coordd_snapshot_last_index", "coordd_snapshot_age_seconds", "coordd_snapshot_last_size_bytes", "coordd_snapshot_duration_seconds_count"} {
		if !strings.Contains(string(r.Body), m) {
			t.Errorf("metric %s missing", m)
		}
	}
}

// Test_Snapshots_TakenOnTheLogBytes_CompactTheLog: with Raft's entry
// threshold and the interval out of reach, entries holding more than 4 MiB
// (the size-aware trigger's floor) get every member a snapshot, and the
// log is compacted behind it to about 2 MiB of entries.
func Test_Snapshots_TakenOnTheLogBytes_CompactTheLog(t *testing.T) {
	t.Parallel()
	c := testcluster.New(t, 3, func(cfg *server.Config) {
		cfg.SnapshotThreshold = 1 << 40
		cfg.SnapshotInterval = time.Hour
	})
	l := c.Leader()
	value := strings.Repeat("x", 256<<10)
	const puts = 24 // 6 MiB
	for i := range puts {
		putRetry(t, c, l, fmt.Sprintf("big%03d", i), value)
	}
	for _, n := range c.Nodes {
		testcluster.Poll(t, 20*time.Second, func() error {
			st := status(t, c, n)
			if st.Snapshot == nil || st.Snapshot.Index < 16 || st.FirstLogIndex <= 1 {
				return fmt.Errorf("%s: snapshot %+v, first log index %d", n.ID, st.Snapshot, st.FirstLogIndex)
			}
			return nil
		})
	}
}

func Test_Snapshots_TakenOnTheInterval_OnlyWhenSomethingChanged(t *testing.T) {
	t.Parallel()
	c := testcluster.New(t, 1, func(cfg *server.Config) {
		cfg.SnapshotThreshold = 1 << 40
		cfg.SnapshotInterval = 200 * time.Millisecond
	})
	n := c.Nodes[0]
	r := putRetry(t, c, n, "a", "1")
	var wr api.KVWriteResult
	r.JSON(t, &wr)
	var first api.SnapshotStatus
	testcluster.Poll(t, 10*time.Second, func() error {
		st := status(t, c, n)
		if st.Snapshot == nil || st.Snapshot.Index < wr.ModifyIndex {
			return fmt.Errorf("snapshot %+v, want one covering index %d", st.Snapshot, wr.ModifyIndex)
		}
		first = *st.Snapshot
		return nil
	})
	if st := latestSnapshotFile(t, n); st.KVLen() != 1 {
		t.Fatalf("snapshot holds %d keys", st.KVLen())
	}
	// Nothing new: no new snapshot.
	time.Sleep(600 * time.Millisecond)
	if st := status(t, c, n); st.Snapshot.Index != first.Index {
		t.Fatalf("snapshot index moved from %d to %d without writes", first.Index, st.Snapshot.Index)
	}
	if _, err := n.Server().TakeSnapshot(context.Background()); !errors.Is(err, server.ErrNothingNewToSnapshot) {
		t.Fatalf("TakeSnapshot with nothing new = %v", err)
	}
}

// restoreBackup posts a backup through n and returns the result.
func restoreBackup(t *testing.T, c *testcluster.Cluster, n *testcluster.Node, backup []byte, query string) api.RestoreResult {
	t.Helper()
	r := call(t, c, http.MethodPost, n.URL()+"/v1/snapshot"+query, string(backup))
	if r.Status != http.StatusOK {
		t.Fatalf("restore: %d %s", r.Status, r.Body)
	}
	var res api.RestoreResult
	r.JSON(t, &res)
	return res
}

func saveBackup(t *testing.T, c *testcluster.Cluster, n *testcluster.Node) []byte {
	t.Helper()
	r := call(t, c, http.MethodGet, n.URL()+"/v1/snapshot", "")
	if r.Status != http.StatusOK {
		t.Fatalf("backup: %d %s", r.Status, r.Body)
	}
	return r.Body
}

func Test_Restore_IntoTheSameCluster_TokensNeverGoBackAndLeasesGetAGrace(t *testing.T) {
	t.Parallel()
	c := testcluster.New(t, 3)
	f := c.Followers()[0]
	l1 := grant(t, c, f, "2s")
	cr, _ := campaign(t, c, f, "e", l1.ID, "a", "")
	putRetry(t, c, f, "k", "backup")
	backup := saveBackup(t, c, f)
	want, err := fsm.ReadState(bytes.NewReader(backup))
	if err != nil {
		t.Fatal(err)
	}

	// After the backup: new holders get higher tokens, keys change.
	r := call(t, c, http.MethodPost, f.URL()+"/v1/elections/e/resign", fmt.Sprintf(`{"lease":%d,"token":%d}`, l1.ID, cr.Token))
	if r.Status != http.StatusOK {
		t.Fatalf("resign: %d %s", r.Status, r.Body)
	}
	l2 := grant(t, c, f, "1h")
	later, _ := campaign(t, c, f, "e", l2.ID, "b", "")
	putRetry(t, c, f, "k", "after")
	putRetry(t, c, f, "new", "x")
	if later.Token <= cr.Token {
		t.Fatalf("tokens %d then %d", cr.Token, later.Token)
	}

	// The backup's lease had a 2 s TTL and was never kept alive: by the
	// time it is restored it would be long dead by the backup's clock.
	time.Sleep(2500 * time.Millisecond)
	res := restoreBackup(t, c, f, backup, "")
	if res.Index <= later.Token {
		t.Fatalf("restore index %d not above the token %d issued before it", res.Index, later.Token)
	}
	if res.BackupIndex != want.Index() || res.Digest != want.Digest() {
		t.Fatalf("result %+v, backup index %d digest %s", res, want.Index(), want.Digest())
	}
	for _, n := range c.Nodes {
		testcluster.Poll(t, 10*time.Second, func() error {
			st := n.Server().State()
			if st.Digest() != want.Digest() || st.Restore().Pending {
				return fmt.Errorf("%s: digest %s pending %v", n.ID, st.Digest(), st.Restore().Pending)
			}
			return nil
		})
	}
	kv, _ := getKV(t, c, f.URL()+"/v1/kv/k")
	if string(kv.Value) != "backup" {
		t.Fatalf("k = %q after restore", kv.Value)
	}
	if _, r := getKV(t, c, f.URL()+"/v1/kv/new"); r.Status != http.StatusNotFound {
		t.Fatalf("key written after the backup still there: %d", r.Status)
	}
	// The restored holder is back, with a token above every earlier one.
	r = call(t, c, http.MethodGet, f.URL()+"/v1/elections/e", "")
	var el api.Election
	r.JSON(t, &el)
	if el.Leader == nil || el.Leader.Lease != l1.ID || el.Token < res.Index || el.Token <= later.Token {
		t.Fatalf("after restore: %+v (restore index %d, last token before %d)", el, res.Index, later.Token)
	}
	// The restored lease got a fresh TTL, not an instant expiry: it can
	// be kept alive right away.
	r = call(t, c, http.MethodPost, fmt.Sprintf("%s/v1/leases/%d/keepalive", f.URL(), l1.ID), "")
	if r.Status != http.StatusOK {
		t.Fatalf("keepalive of the restored lease: %d %s", r.Status, r.Body)
	}
	// The lease granted after the backup is gone.
	if r := call(t, c, http.MethodPost, fmt.Sprintf("%s/v1/leases/%d/keepalive", f.URL(), l2.ID), ""); r.Status != http.StatusNotFound {
		t.Fatalf("keepalive of a lease the backup does not know: %d %s", r.Status, r.Body)
	}
	// A new campaign gets a token above the restore's.
	l3 := grant(t, c, f, "1h")
	cr3, _ := campaign(t, c, f, "other", l3.ID, "c", "")
	if cr3.Token <= res.Index {
		t.Fatalf("token %d after restore at %d", cr3.Token, res.Index)
	}
	if st := status(t, c, f); st.LastRestore == nil || st.LastRestore.Index != res.Index || st.LastRestore.BackupIndex != want.Index() {
		t.Fatalf("status last_restore %+v", st.LastRestore)
	}
	// If nobody keeps it alive, the restored lease expires after its TTL
	// plus the failover extension: a bounded grace.
	testcluster.Poll(t, 10*time.Second, func() error {
		r := call(t, c, http.MethodGet, fmt.Sprintf("%s/v1/leases/%d", f.URL(), l1.ID), "")
		if r.Status != http.StatusNotFound {
			return fmt.Errorf("restored lease still there: %d", r.Status)
		}
		return nil
	})
}

func Test_Restore_BackupWipeRestore_GivesBackTheSameState(t *testing.T) {
	t.Parallel()
	old := testcluster.New(t, 3)
	n := old.Followers()[0]
	for i := range 50 {
		putRetry(t, old, n, fmt.Sprintf("data/%02d", i), strings.Repeat("v", i))
	}
	var last uint64
	for i := range 3 {
		l := grant(t, old, n, "1h")
		cr, _ := campaign(t, old, n, fmt.Sprintf("role-%d", i), l.ID, "me", "")
		r := call(t, old, http.MethodPost, fmt.Sprintf("%s/v1/locks/lock-%d", n.URL(), i), fmt.Sprintf(`{"lease":%d}`, l.ID))
		if r.Status != http.StatusOK {
			t.Fatalf("lock: %d %s", r.Status, r.Body)
		}
		last = max(last, cr.Token)
	}
	backup := saveBackup(t, old, n)
	want, err := fsm.ReadState(bytes.NewReader(backup))
	if err != nil {
		t.Fatal(err)
	}
	// The old cluster goes on issuing tokens after the backup, then dies
	// with its data.
	for range 20 {
		putRetry(t, old, n, "after", "x")
	}
	l := grant(t, old, n, "1h")
	cr, _ := campaign(t, old, n, "late", l.ID, "", "")
	last = max(last, cr.Token)
	for _, node := range old.Nodes {
		old.Kill(node)
		if err := os.RemoveAll(node.DataDir); err != nil {
			t.Fatal(err)
		}
	}

	// A fresh cluster, restored with a bump larger than what the old
	// cluster wrote after the backup.
	fresh := testcluster.New(t, 3)
	res := restoreBackup(t, fresh, fresh.Followers()[1], backup, "?bump=1000")
	if res.Digest != want.Digest() || res.Keys != 50 || res.Leases != 3 || res.Elections != 6 {
		t.Fatalf("restored %+v, want the backup's digest %s", res, want.Digest())
	}
	if res.Index <= last {
		t.Fatalf("restore index %d, old cluster's last token %d", res.Index, last)
	}
	for _, node := range fresh.Nodes {
		testcluster.Poll(t, 10*time.Second, func() error {
			if d := node.Server().State().Digest(); d != want.Digest() {
				return fmt.Errorf("%s digest %s", node.ID, d)
			}
			return nil
		})
	}
	// The fresh cluster's own members, not the old ones, are in the table.
	for _, m := range fresh.Leader().Server().State().Members() {
		found := false
		for _, node := range fresh.Nodes {
			found = found || (m.ID == node.ID && m.HTTPAddr == node.HTTPAddr)
		}
		if !found {
			t.Fatalf("member table holds %+v from the old cluster", m)
		}
	}
	// Restarting a restored node recovers the restored state from disk.
	node := fresh.Followers()[0]
	fresh.Kill(node)
	fresh.Restart(node)
	fresh.WaitReady(node)
	testcluster.Poll(t, 10*time.Second, func() error {
		if d := node.Server().State().Digest(); d != want.Digest() {
			return fmt.Errorf("restarted %s digest %s", node.ID, d)
		}
		return nil
	})
}

func Test_Restore_OfAnUnsoundFile_ChangesNothing(t *testing.T) {
	t.Parallel()
	c := testcluster.New(t, 3)
	l := c.Leader()
	putRetry(t, c, l, "k", "v")
	backup := saveBackup(t, c, l)
	before := l.Server().State()
	for name, body := range map[string][]byte{
		"truncated": backup[:len(backup)-1],
		"corrupted": append(append([]byte(nil), backup[:40]...), append([]byte{backup[40] ^ 1}, backup[41:]...)...),
	} {
		r := call(t, c, http.MethodPost, c.Followers()[0].URL()+"/v1/snapshot", string(body))
		if r.Status != http.StatusBadRequest || r.ErrorCode() != api.CodeInvalidSnapshot {
			t.Fatalf("%s: %d %s", name, r.Status, r.Body)
		}
	}
	if after := l.Server().State(); after.Digest() != before.Digest() || after.Restore() != before.Restore() {
		t.Fatalf("state changed: restore %+v", after.Restore())
	}
}

func Test_Restore_LeftPendingByADeadLeader_IsFinishedByTheNext(t *testing.T) {
	t.Parallel()
	var die atomic.Bool
	die.Store(true)
	c := testcluster.New(t, 3, func(cfg *server.Config) {
		dies := func() error {
			if die.Load() {
				return errors.New("leader dies now")
			}
			return nil
		}
		cfg.Knobs = &server.Knobs{AfterRestoreInstall: dies, FinishRestore: dies}
	})
	l := c.Leader()
	lease := grant(t, c, l, "1h")
	cr, _ := campaign(t, c, l, "e", lease.ID, "", "")
	backup := saveBackup(t, c, l)
	want, _ := fsm.ReadState(bytes.NewReader(backup))
	r := call(t, c, http.MethodPost, l.URL()+"/v1/snapshot", string(backup))
	if r.Status != http.StatusServiceUnavailable || r.ErrorCode() != api.CodeOutcomeUnknown {
		t.Fatalf("interrupted restore: %d %s", r.Status, r.Body)
	}
	if !l.Server().State().Restore().Pending {
		t.Fatal("the installed restore is not pending")
	}
	c.Kill(l)
	die.Store(false)
	next := c.Leader()
	c.WaitReady(next)
	st := next.Server().State()
	if st.Restore().Pending || st.Digest() != want.Digest() {
		t.Fatalf("new leader serves pending=%v digest %s (want %s)", st.Restore().Pending, st.Digest(), want.Digest())
	}
	el, _ := st.Election("e")
	if el.Holders[0].Token <= cr.Token || el.Holders[0].Token != st.Restore().Index {
		t.Fatalf("holder token %d, before %d, restore finished at %d", el.Holders[0].Token, cr.Token, st.Restore().Index)
	}
	// The old leader comes back and catches up with the finished restore.
	c.Restart(l)
	c.WaitReady(l)
	testcluster.Poll(t, 10*time.Second, func() error {
		if r := l.Server().State().Restore(); r.Pending || r.Index != st.Restore().Index {
			return fmt.Errorf("restarted old leader: %+v", r)
		}
		return nil
	})
}
