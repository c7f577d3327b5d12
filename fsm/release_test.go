package fsm_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/coordd/coordd/fsm"
)

// bigLease builds a state where lease 1 holds n locks (lock-delay 5 s,
// lease 2 waiting on each) and n keys attached to it.
func bigLease(t *testing.T, n int) (*fsm.State, uint64) {
	t.Helper()
	s := fsm.New().State()
	index := uint64(0)
	apply := func(p fsm.Payload) {
		index++
		c := cmdOf(p)
		c.Stamp = int64(index) * 1e6
		var res *fsm.Result
		if s, res = fsm.ApplyCommand(s, index, 1, c); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	apply(fsm.LeaseGrant{TTL: 1000})
	apply(fsm.LeaseGrant{TTL: 1000})
	for i := range n {
		apply(fsm.Campaign{Kind: fsm.KindLock, Name: fmt.Sprint("lock/", i), Lease: 1, LockDelay: 5000})
		apply(fsm.Campaign{Kind: fsm.KindLock, Name: fmt.Sprint("lock/", i), Lease: 2})
		apply(fsm.KVPut{Key: fmt.Sprint("key/", i), Value: []byte("v"), Lease: 1})
	}
	return s, index
}

// TestLeaseExpire_ReleasesInBoundedEntries: an expiry with a release
// limit ends the lease in its entry and releases at most that many of
// its locks and keys; LeaseRelease entries release the rest, at most as
// many each, until nothing is left. Each lock is handed to its waiting
// candidate in the entry that releases it, with that entry's index as
// token and the lock-delay from its stamp. Meanwhile the dead lease
// cannot act: no proclaim, no resign, its token is not current for a
// fence compare, no keepalive; and the state reads back from a snapshot.
func TestLeaseExpire_ReleasesInBoundedEntries(t *testing.T) {
	t.Parallel()
	const n, limit = 25, 10
	s, index := bigLease(t, n)
	l, _ := s.Lease(1)
	apply := func(p fsm.Payload) *fsm.Result {
		index++
		c := cmdOf(p)
		c.Stamp = int64(index) * 1e6
		var res *fsm.Result
		s, res = fsm.ApplyCommand(s, index, 1, c)
		return res
	}
	res := apply(fsm.LeaseExpire{Leases: []fsm.LeaseExpiry{{ID: 1, Epoch: l.Epoch}}, Release: limit})
	if fmt.Sprint(res.Expired) != "[1]" || res.Promoted != 0 {
		t.Fatalf("expiry: expired %v, promoted %d; want [1] and 0 (the lock-delay holds the waiters back)", res.Expired, res.Promoted)
	}
	if got := len(s.Attachments(1)); got != 2*n-limit {
		t.Fatalf("%d attachments left after the expiry entry, want %d", got, 2*n-limit)
	}
	if _, ok := s.Lease(1); ok {
		t.Fatal("the lease outlived its expiry entry")
	}
	if got := s.UnreleasedLeases(10); fmt.Sprint(got) != "[1]" {
		t.Fatalf("unreleased %v, want [1]", got)
	}
	// A lock not released yet: the dead lease still shows as holder, but
	// cannot act through the lease.
	e, _ := s.Election("lock/9")
	h, _ := e.Leader()
	if h.Lease != 1 || !e.IsCurrent(h.Token) || s.TokenCurrent(e, h.Token) {
		t.Fatalf("lock/9: holder %+v, current for its token: %t (election), %t (state)", h, e.IsCurrent(h.Token), s.TokenCurrent(e, h.Token))
	}
	if r := apply(fsm.Proclaim{Name: "lock/9", Lease: 1, Token: h.Token, Value: []byte("x")}); !errors.Is(r.Err, fsm.ErrLeaseNotFound) {
		t.Fatalf("proclaim by the dead lease: %v", r.Err)
	}
	if r := apply(fsm.Resign{Name: "lock/9", Lease: 1, Token: h.Token}); !errors.Is(r.Err, fsm.ErrLeaseNotFound) {
		t.Fatalf("resign by the dead lease: %v", r.Err)
	}
	if r := apply(fsm.LeaseRenew{ID: 1}); !errors.Is(r.Err, fsm.ErrLeaseNotFound) {
		t.Fatalf("renew of the dead lease: %v", r.Err)
	}
	if r := apply(fsm.LeaseRenewMany{IDs: []uint64{1}}); r.Err != nil || len(r.Renewed) != 0 {
		t.Fatalf("renew-many of the dead lease: renewed %v, %v", r.Renewed, r.Err)
	}
	if r := apply(fsm.Txn{Compares: []fsm.TxnCompare{{Target: fsm.CompareFence, Key: "lock/9", Number: h.Token}},
		Then: []fsm.TxnOp{{Kind: fsm.TxnPut, Key: "fenced", Value: []byte("w")}}}); r.Err != nil || r.Txn.Succeeded {
		t.Fatalf("fence compare with the dead lease's token: %+v %v", r.Txn, r.Err)
	}
	// A snapshot taken meanwhile reads back, with the release to finish.
	back, err := fsm.ReadState(bytes.NewReader(stateBytes(t, s)))
	if err != nil {
		t.Fatalf("a state with a release pending does not read back: %v", err)
	}
	if got := back.UnreleasedLeases(10); fmt.Sprint(got) != "[1]" {
		t.Fatalf("read back: unreleased %v, want [1]", got)
	}
	entries := 1
	for s.UnreleasedCount() > 0 {
		entries++
		if entries > 10 {
			t.Fatal("the release does not end")
		}
		before := s
		r := apply(fsm.LeaseRelease{ID: 1, Release: limit})
		if r.Err != nil {
			t.Fatal(r.Err)
		}
		// Every lock released in this entry went to lease 2, token and
		// lock-delay from this entry.
		for i := range n {
			name := fmt.Sprint("lock/", i)
			was, _ := before.Election(name)
			now, _ := s.Election(name)
			if wl, _ := was.Leader(); wl.Lease != 1 {
				continue
			}
			nl, _ := now.Leader()
			switch {
			case nl.Lease == 1:
			case nl.Lease == 0 && now.DelayUntil == int64(index)*1e6+5000*1e6 && len(now.Waiting) == 1:
				// Held back by the lock-delay that started in this entry.
			default:
				t.Fatalf("entry %d: %s now %+v", index, name, now)
			}
		}
	}
	if entries != 5 {
		t.Fatalf("%d entries released 50 attachments 10 at a time, want 5", entries)
	}
	if s.KVLen() != 0 { // every key was lease 1's ("fenced" was never written)
		t.Fatalf("%d keys left", s.KVLen())
	}
	if r := apply(fsm.LeaseRelease{ID: 1, Release: limit}); r.Err != nil || r.Promoted != 0 {
		t.Fatalf("a release with nothing left: %+v", r)
	}
	if got := len(s.Attachments(1)); got != 0 {
		t.Fatalf("%d attachments of lease 1 left", got)
	}
}

// TestLeaseExpire_WithoutALimitReleasesEverything: an expiry or revoke
// written before release limits existed (payload version 1) still
// releases everything in its entry.
func TestLeaseExpire_WithoutALimitReleasesEverything(t *testing.T) {
	t.Parallel()
	s, index := bigLease(t, 30)
	l, _ := s.Lease(1)
	c := cmdOf(fsm.LeaseExpire{Leases: []fsm.LeaseExpiry{{ID: 1, Epoch: l.Epoch}}})
	if c.Version != 1 {
		t.Fatalf("an expiry without a limit is written as version %d", c.Version)
	}
	s, res := fsm.ApplyCommand(s, index+1, 1, c)
	if res.Promoted != 0 || s.UnreleasedCount() != 0 || s.KVLen() != 0 || len(s.Attachments(1)) != 0 {
		t.Fatalf("promoted %d (lock-delay holds them back), unreleased %d, keys %d", res.Promoted, s.UnreleasedCount(), s.KVLen())
	}
	s2, _ := bigLease(t, 30)
	s2, res = fsm.ApplyCommand(s2, index+1, 1, cmdOf(fsm.LeaseRevoke{ID: 1}))
	if res.Err != nil || s2.UnreleasedCount() != 0 || s2.KVLen() != 0 {
		t.Fatalf("revoke: %v, unreleased %d, keys %d", res.Err, s2.UnreleasedCount(), s2.KVLen())
	}
}
