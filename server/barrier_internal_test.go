package server

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Test_Barrier_ALinearizableReadAfterABarrierDoesNotWaitForAWrite: a
// barrier entry never reaches the FSM, so unless it is counted as applied
// the commit index stays above the applied index until the next command,
// and a linearizable read, which waits for the commit index it noted,
// hangs until somebody writes. make bench-stall found it: a keepalive's
// leadership check right after this node resumed from a pause commits a
// barrier (verify.go), and a GET to the new leader then waited for the
// stalled old leader to come back, 5 s later, for the first write.
func Test_Barrier_ALinearizableReadAfterABarrierDoesNotWaitForAWrite(t *testing.T) {
	cfg := corruptChildConfig(t, t.TempDir(), hclog.NewNullLogger())
	s, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Abort()
	// Ready, with the commands a new cluster's leader proposes once
	// (cluster id, peer secret) applied: from here on nothing writes.
	for deadline := time.Now().Add(15 * time.Second); s.Ready() != nil || s.clusterID.get() == "" || s.fsm.State().PeerSecret() == nil; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %v", s.Ready())
		}
	}
	time.Sleep(200 * time.Millisecond)
	for _, how := range []string{"a leadership check after a pause", "a second one"} {
		s.pauses.lastPause.Store(s.pauses.now()) // a pause just ended: the check commits a barrier
		if err := s.verifyLeadership(); err != nil {
			t.Fatalf("%s: %v", how, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := s.ReadBarrier(ctx)
		cancel()
		if err != nil {
			t.Fatalf("read after %s: %v (commit index %d, applied %d)", how, err, s.raft.CommitIndex(), s.applied.load())
		}
	}
}
