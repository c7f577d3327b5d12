package server_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/fsm"
	"github.com/coordd/coordd/httpapi"
	"github.com/coordd/coordd/internal/testcluster"
	"github.com/coordd/coordd/server"
)

// Test_Restore_ClientGoneAtAnyStep_TheNodeFinishesIt: a restore completes,
// or changes nothing, whatever the request does. The finding: the
// handler's context drove the end of a restore, so a client that went
// away once the backup was installed left the lease clock without the
// restored leases (a restored lease whose holder is dead never expired)
// and CmdRestored to whoever led next. Now the node finishes it.
func Test_Restore_ClientGoneAtAnyStep_TheNodeFinishesIt(t *testing.T) {
	t.Parallel()
	var atInstall atomic.Pointer[func()]
	c := testcluster.New(t, 1, func(cfg *server.Config) {
		cfg.Knobs = &server.Knobs{AfterRestoreInstall: func() error {
			if f := atInstall.Load(); f != nil {
				(*f)()
			}
			return nil
		}}
	})
	n := c.Leader()
	// The backup: a lease of 1 s nobody keeps alive, holding an election.
	l := grant(t, c, n, "1s")
	if _, r := campaign(t, c, n, "e", l.ID, "v", ""); r.Status != http.StatusOK {
		t.Fatalf("campaign: %d %s", r.Status, r.Body)
	}
	putRetry(t, c, n, "k", "backup")
	raw := saveBackup(t, c, n)
	backup, err := fsm.ReadState(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	// finished waits until the restore is done whatever the request saw:
	// the state is the backup's, nothing pending, tokens above every
	// earlier one, and the restored lease expires (the lease clock knows
	// it).
	finished := func(step string, before uint64) {
		testcluster.Poll(t, 30*time.Second, func() error {
			st := n.Server().State()
			switch r := st.Restore(); {
			case r.Pending:
				return fmt.Errorf("%s: the restore is still pending", step)
			case r.Index <= before:
				return fmt.Errorf("%s: restore finished at %d, not after %d", step, r.Index, before)
			}
			if _, ok := st.Lease(l.ID); ok {
				return fmt.Errorf("%s: the restored lease %d, whose holder is gone, has not expired", step, l.ID)
			}
			if e, ok := st.Election("e"); ok && len(e.Holders) > 0 {
				return fmt.Errorf("%s: election still held: %+v", step, e.Holders)
			}
			if kv, ok := st.Get("k"); !ok || string(kv.Value) != "backup" {
				return fmt.Errorf("%s: k is not the backup's", step)
			}
			return nil
		})
	}

	// 1. Gone before the restore starts: nothing changes.
	putRetry(t, c, n, "k", "after")
	before := n.Server().State()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := n.Server().Restore(ctx, backup, httpapi.RestoreOptions{}); err == nil {
		t.Fatal("a restore with a cancelled request succeeded")
	}
	if st := n.Server().State(); st.Digest() != before.Digest() || st.Restore().Pending {
		t.Fatalf("a cancelled restore changed the state (pending %v)", st.Restore().Pending)
	}

	// 2. Gone once the backup is installed (the request's context ends).
	last := n.Server().State().Index()
	ctx, cancel = context.WithCancel(context.Background())
	cancelAtInstall := func() { cancel() }
	atInstall.Store(&cancelAtInstall)
	_, err = n.Server().Restore(ctx, backup, httpapi.RestoreOptions{})
	t.Logf("restore with the request gone at install: %v", err)
	atInstall.Store(nil)
	finished("context ended at install", last)

	// 3. The same through HTTP: the client hangs up once it is installed.
	putRetry(t, c, n, "k", "after")
	last = n.Server().State().Index()
	reqCtx, hangUp := context.WithCancel(context.Background())
	hangUpAtInstall := func() {
		hangUp()
		time.Sleep(300 * time.Millisecond) // let the server see the connection close
	}
	atInstall.Store(&hangUpAtInstall)
	req, err := http.NewRequestWithContext(reqCtx, http.MethodPost, n.URL()+"/v1/snapshot", bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Logf("restore answered %d before the client hung up", resp.StatusCode)
	}
	atInstall.Store(nil)
	finished("client hung up at install", last)
	// The node serves again.
	putRetry(t, c, n, "k", "served")
}

// Test_Restore_IntoAWipedCluster_TokensNeverGoBack is the finding
// as a user met it: tokens 25 before, 15 after a backup was restored into
// a fresh cluster without ?bump. A cluster whose history is behind the
// backup now bumps the index past anything the backup's cluster can have
// issued by default (fsm.DefaultRestoreBump); ?bump=0 opts out.
func Test_Restore_IntoAWipedCluster_TokensNeverGoBack(t *testing.T) {
	t.Parallel()
	old := testcluster.New(t, 1)
	n := old.Leader()
	l := grant(t, old, n, "1h")
	if _, r := campaign(t, old, n, "e", l.ID, "v", ""); r.Status != http.StatusOK {
		t.Fatalf("campaign: %d %s", r.Status, r.Body)
	}
	raw := saveBackup(t, old, n)
	// The old cluster goes on after the backup, then is wiped.
	for i := range 10 {
		putRetry(t, old, n, "after", fmt.Sprint(i))
	}
	l2 := grant(t, old, n, "1h")
	late, _ := campaign(t, old, n, "late", l2.ID, "", "")
	if late.Token == 0 {
		t.Fatal("no token after the backup")
	}
	old.Kill(n)
	if err := os.RemoveAll(n.DataDir); err != nil {
		t.Fatal(err)
	}
	tokenAfter := func(c *testcluster.Cluster, query string) (api.RestoreResult, uint64) {
		t.Helper()
		m := c.Leader()
		res := restoreBackup(t, c, m, raw, query)
		r := call(t, c, http.MethodGet, m.URL()+"/v1/elections/e", "")
		var el api.Election
		r.JSON(t, &el)
		if el.Leader == nil {
			t.Fatalf("restored election has no leader: %s", r.Body)
		}
		return res, el.Token
	}
	// By default: past everything the old cluster issued.
	res, tok := tokenAfter(testcluster.New(t, 1), "")
	if tok <= late.Token || res.Bump < fsm.DefaultRestoreBump {
		t.Fatalf("token %d after the restore (bump %d), %d issued before it: tokens went back", tok, res.Bump, late.Token)
	}
	// The explicit opt-out does what it says.
	res, tok = tokenAfter(testcluster.New(t, 1), "?bump=0")
	if res.Bump != 0 || tok >= late.Token {
		t.Fatalf("?bump=0: bump %d token %d (the old cluster's last %d)", res.Bump, tok, late.Token)
	}
}
