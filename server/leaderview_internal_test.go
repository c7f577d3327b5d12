package server

import "testing"

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// Test_LeaderView_ChangesCloseTheChannelOnlyOnANewLeaderOrNone: a forward
// follows the view's channel, so it must fire when the leader changes or is
// lost, and not when the same leader is seen again (a term read late must
// not cancel forwards to it).
func Test_LeaderView_ChangesCloseTheChannelOnlyOnANewLeaderOrNone(t *testing.T) {
	v := newLeaderView(func(id string) string { return id + ":http" })
	v0 := v.get()
	if v0.Known || v0.Changed == nil {
		t.Fatalf("initial view %+v", v0)
	}
	if v.set("", "", 1) {
		t.Fatal("no leader after no leader is a change")
	}
	if !v.set("n1", "n1:raft", 2) || !closed(v0.Changed) {
		t.Fatal("a first leader did not change the view")
	}
	v1 := v.get()
	if !v1.Known || v1.Leader.ID != "n1" || v1.Leader.HTTPAddr != "n1:http" || v1.Term != 2 {
		t.Fatalf("view %+v", v1)
	}
	if v.set("n1", "n1:raft", 3) || closed(v1.Changed) {
		t.Fatal("the same leader in a later term read changed the view")
	}
	if !v.set("", "", 3) || !closed(v1.Changed) {
		t.Fatal("losing the leader did not change the view")
	}
	v2 := v.get()
	if v2.Known || !v2.Since.After(v1.Since) && !v2.Since.Equal(v1.Since) {
		t.Fatalf("view %+v", v2)
	}
	if !v.set("n2", "n2:raft", 4) || !closed(v2.Changed) || v.get().Leader.ID != "n2" {
		t.Fatal("a new leader did not change the view")
	}
}
