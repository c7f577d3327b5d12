package fsm_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/coordd/coordd/fsm"
)

func withKey(c fsm.Command, key string) fsm.Command {
	c.IdempotencyKey = key
	return c
}

func TestIdempotencyKey_ARetriedGrantCreatesOneLease(t *testing.T) {
	r := newReplica(t)
	first := r.apply(withKey(cmdOf(fsm.LeaseGrant{TTL: 1000}), "g1"))
	retry := r.apply(withKey(cmdOf(fsm.LeaseGrant{TTL: 1000}), "g1"))
	if !retry.Duplicate || retry.Lease.ID != first.Lease.ID || retry.Index != first.Index {
		t.Fatalf("retry: %+v, first: %+v", retry, first)
	}
	if n := r.f.State().LeaseCount(); n != 1 {
		t.Fatalf("%d leases after a retried grant", n)
	}
}

func TestIdempotencyKey_ARetriedCampaignQueuesOnceAndFailuresAreRecordedToo(t *testing.T) {
	r := newReplica(t)
	a, b := r.grant(1000), r.grant(1000)
	r.campaign("db", a, "A")
	c := withKey(cmdOf(fsm.Campaign{Kind: fsm.KindElection, Name: "db", Lease: b}), "c1")
	first, retry := r.apply(c), r.apply(c)
	if !retry.Duplicate || *retry.Campaign != *first.Campaign {
		t.Fatalf("retried campaign: %+v vs %+v", retry.Campaign, first.Campaign)
	}
	put := withKey(cmdOf(fsm.KVPut{Key: "k", Mode: fsm.PutCAS, CASIndex: 99}), "p1")
	f1, f2 := r.apply(put), r.apply(put)
	var cas *fsm.CASConflictError
	if !errors.As(f1.Err, &cas) || !errors.As(f2.Err, &cas) || !f2.Duplicate {
		t.Fatalf("recorded failure: %v / %v", f1.Err, f2.Err)
	}
	// The same key with another kind of request is an error, not a replay.
	if res := r.apply(withKey(cmdOf(fsm.LeaseGrant{TTL: 5}), "p1")); !errors.Is(res.Err, fsm.ErrIdempotencyKeyReused) {
		t.Fatalf("reused key: %v", res.Err)
	}
}

func TestIdempotencyKey_RecordsAreCollectedByTheLeadersStampAndSurviveSnapshots(t *testing.T) {
	r := newReplica(t)
	r.apply(withKey(cmdOf(fsm.KVPut{Key: "k", Value: []byte("1")}), "old"))
	// The record answers identically after a snapshot round trip.
	var buf bytes.Buffer
	if err := fsm.WriteState(&buf, r.f.State()); err != nil {
		t.Fatal(err)
	}
	g := fsm.New()
	if err := g.Restore(newRC(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	cmd := withKey(cmdOf(fsm.KVPut{Key: "k", Value: []byte("1")}), "old")
	cmd.Stamp = r.stamp
	res := g.Apply(&raft.Log{Index: r.index + 1, Term: 1, Data: cmd.Encode()}).(*fsm.Result)
	if !res.Duplicate || res.Entry.Version != 1 {
		t.Fatalf("after restore: %+v", res)
	}
	// After DedupTTL of leader time the key is forgotten and applies again.
	r.stamp += int64(fsm.DedupTTL) + 1
	res = r.apply(withKey(cmdOf(fsm.KVPut{Key: "k", Value: []byte("1")}), "old"))
	if res.Duplicate || res.Entry.Version != 2 {
		t.Fatalf("after the TTL: %+v", res)
	}
}

// A retried put is answered with the same indexes and version, and the
// idempotency record does not keep a second copy of the value: a snapshot
// holds it once.
func TestIdempotencyKey_ARetriedPutIsAnsweredWithoutKeepingTheValueTwice(t *testing.T) {
	r := newReplica(t)
	value := bytes.Repeat([]byte("v0123456789"), 400)
	first := r.apply(withKey(cmdOf(fsm.KVPut{Key: "big", Value: value}), "p1"))
	retry := r.apply(withKey(cmdOf(fsm.KVPut{Key: "big", Value: value}), "p1"))
	if !retry.Duplicate || retry.Entry.ModifyIndex != first.Entry.ModifyIndex || retry.Entry.Version != first.Entry.Version ||
		retry.Entry.Key != "big" {
		t.Fatalf("retry: %+v, first: %+v", retry.Entry, first.Entry)
	}
	if e, ok := r.f.State().Get("big"); !ok || !bytes.Equal(e.Value, value) {
		t.Fatal("the key lost its value")
	}
	if n := bytes.Count(persist(t, r.f), value); n != 1 {
		t.Fatalf("the snapshot holds the value %d times, want 1", n)
	}
}
