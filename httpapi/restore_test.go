package httpapi_test

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/fsm"
	"github.com/coordd/coordd/httpapi"
)

// backupOf returns the snapshot file of n's state, as GET /v1/snapshot
// writes it.
func backupOf(t *testing.T, ta *testAPI) []byte {
	t.Helper()
	r := ta.do(t, "GET", "/v1/snapshot", "")
	if r.status != http.StatusOK {
		t.Fatalf("GET /v1/snapshot: %d %s", r.status, r.body)
	}
	return r.body
}

func TestSnapshotPost_RestoresABackupThroughAFollower(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	p.leader.putKV(t, "a", "1")
	lease := p.leader.node.applyLocal(fsmCmd(fsm.LeaseGrant{TTL: 5000})).Lease.ID
	p.leader.node.applyLocal(fsmCmd(fsm.Campaign{Kind: fsm.KindElection, Name: "e", Lease: lease}))
	backup := backupOf(t, p.leader)
	want, _ := fsm.ReadState(bytes.NewReader(backup))

	p.leader.putKV(t, "a", "2")
	p.leader.putKV(t, "b", "after the backup")
	before := p.leader.node.fsm.State().Index()

	r := p.follower.do(t, "POST", "/v1/snapshot", string(backup))
	var res api.RestoreResult
	wantJSON(t, r, &res)
	if res.BackupIndex != want.Index() || res.Index <= before || res.Keys != 1 || res.Leases != 1 || res.Elections != 1 {
		t.Fatalf("restore result %+v (backup index %d, index before %d)", res, want.Index(), before)
	}
	if len(p.forwarded(t)) != 1 {
		t.Fatalf("the follower did not forward the upload")
	}
	st := p.leader.node.fsm.State()
	if st.Digest() != want.Digest() || res.Digest != want.Digest() {
		t.Fatalf("restored digest %s (answered %s), backup %s", st.Digest(), res.Digest, want.Digest())
	}
	if e, _ := st.Get("a"); string(e.Value) != "1" {
		t.Fatalf("a = %q after restore, want the backup's 1", e.Value)
	}
	if el, _ := st.Election("e"); el.Holders[0].Token != res.Index {
		t.Fatalf("restored holder's token %d, want the fresh %d", el.Holders[0].Token, res.Index)
	}
}

func TestSnapshotPost_RefusesUnsoundFilesAndChangesNothing(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "L", &httpapi.Options{MaxSnapshotBytes: 4 << 10})
	ta.putKV(t, "keep", "me")
	good := backupOf(t, ta)
	flipped := bytes.Clone(good)
	flipped[len(flipped)/2] ^= 0x40
	cases := map[string]string{
		"truncated":      string(good[:len(good)-5]),
		"corrupted":      string(flipped),
		"not a snapshot": "hello",
		"empty":          "",
	}
	before := ta.node.fsm.State()
	for name, body := range cases {
		d := wantError(t, ta.do(t, "POST", "/v1/snapshot", body), http.StatusBadRequest, api.CodeInvalidSnapshot)
		if !strings.Contains(d.Message, "nothing was changed") {
			t.Errorf("%s: message %q", name, d.Message)
		}
	}
	big := newTestAPI(t, "B", nil)
	big.putKV(t, "big", strings.Repeat("x", 5<<10))
	wantError(t, ta.do(t, "POST", "/v1/snapshot", string(backupOf(t, big))), http.StatusRequestEntityTooLarge, api.CodeTooLarge)
	wantError(t, ta.do(t, "POST", "/v1/snapshot?force", string(good)), http.StatusBadRequest, api.CodeBadRequest)
	if ta.node.fsm.State() != before {
		t.Fatal("state changed")
	}
	ta.node.mu.Lock()
	calls := ta.node.restores
	ta.node.mu.Unlock()
	if calls != 0 {
		t.Fatalf("Restore called %d times for unsound files", calls)
	}
}

func TestSnapshotPost_MapsRestoreErrors(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "L", nil)
	good := backupOf(t, ta)
	for err, code := range map[error]string{
		httpapi.ErrRestoreInProgress: api.CodeRestoreInProgress,
		httpapi.ErrLeaderNotReady:    api.CodeLeaderNotReady,
		httpapi.ErrOutcomeUnknown:    api.CodeOutcomeUnknown,
		errors.New("disk on fire"):   api.CodeInternal,
	} {
		ta.node.set(func(n *fakeNode) { n.restoreErr = err })
		r := ta.do(t, "POST", "/v1/snapshot", string(good))
		if d := wantError(t, r, r.status, code); d.Code != code {
			t.Errorf("%v: code %s, want %s", err, d.Code, code)
		}
	}
}

func TestSnapshotPost_BumpRaisesTheIndexAndTokens(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "L", nil)
	lease := ta.node.applyLocal(fsmCmd(fsm.LeaseGrant{TTL: 5000})).Lease.ID
	ta.node.applyLocal(fsmCmd(fsm.Campaign{Kind: fsm.KindElection, Name: "e", Lease: lease}))
	backup := backupOf(t, ta)
	var res api.RestoreResult
	wantJSON(t, ta.do(t, "POST", "/v1/snapshot?bump=1000", string(backup)), &res)
	if res.Index < 1000 {
		t.Fatalf("index %d after a bump of 1000", res.Index)
	}
	for _, q := range []string{"bump=-1", "bump=x", "bump=1&bump=2", "bump=281474976710657"} {
		wantError(t, ta.do(t, "POST", "/v1/snapshot?"+q, string(backup)), http.StatusBadRequest, api.CodeBadRequest)
	}
}

// TestSnapshotPost_IntoANodeBehindTheBackupBumpsByDefault: without ?bump,
// a node whose history is behind the backup bumps by
// fsm.DefaultRestoreBump; ?bump=0 opts out; one at or past the backup's
// index needs no bump.
func TestSnapshotPost_IntoANodeBehindTheBackupBumpsByDefault(t *testing.T) {
	t.Parallel()
	src := newTestAPI(t, "S", nil)
	for i := range 5 {
		src.node.put(t, fmt.Sprint("k", i), "v")
	}
	backup := backupOf(t, src)
	for _, c := range []struct {
		query string
		bump  uint64
	}{{"", fsm.DefaultRestoreBump}, {"?bump=0", 0}, {"?bump=7", 7}} {
		ta := newTestAPI(t, "L", nil) // a fresh node: its history is behind the backup
		var res api.RestoreResult
		wantJSON(t, ta.do(t, "POST", "/v1/snapshot"+c.query, string(backup)), &res)
		if res.Bump != c.bump || res.Index <= res.BackupIndex+c.bump {
			t.Fatalf("%q: bump %d, index %d (backup %d), want a bump of %d", c.query, res.Bump, res.Index, res.BackupIndex, c.bump)
		}
	}
	// The source itself is not behind its own backup: no bump.
	var res api.RestoreResult
	wantJSON(t, src.do(t, "POST", "/v1/snapshot", string(backup)), &res)
	if res.Bump != 0 {
		t.Fatalf("restore into the backup's own node bumped by %d", res.Bump)
	}
}
