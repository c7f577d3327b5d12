package fsm_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/coordd/coordd/acl"
	"github.com/coordd/coordd/fsm"
)

// decodeApplyBases are the states FuzzDecodeApply applies to: a small state
// with keys (one attached to a lease), members, leases, an election, a lock
// with a holder and a waiter, and idempotency records of several types; and
// the same state just restored from a backup, with CmdRestored pending.
func decodeApplyBases(t testing.TB) []*fsm.State {
	s := fsm.New().State()
	for i, c := range decodeApplyBaseEntries() {
		s, _ = fsm.ApplyCommand(s, uint64(i+1), 1, c)
	}
	pending := fsm.PrepareRestore(s, []fsm.Member{{ID: "n9"}}, 20)
	return []*fsm.State{s, pending}
}

// liveFSMs are FSMs holding decodeApplyBases' states, built the way a node
// gets them: the first by applying log entries (so some of its watch
// channels are closed already), the second by restoring a snapshot. Every
// key, lease and election of theirs is watched.
func liveFSMs(t testing.TB, bases []*fsm.State) []*fsm.FSM {
	live := fsm.New()
	for i, c := range decodeApplyBaseEntries() {
		live.Apply(&raft.Log{Index: uint64(i + 1), Term: 1, Data: c.Encode()})
	}
	restored := fsm.New()
	if err := restored.Restore(io.NopCloser(bytes.NewReader(stateBytes(t, bases[1])))); err != nil {
		t.Fatal(err)
	}
	for _, f := range []*fsm.FSM{live, restored} {
		st := f.State()
		st.WatchPrefix("", 0)
		for _, k := range []string{"a", "ab", "leased", "new", "fuzz"} {
			st.WatchKey(k)
		}
		for _, l := range st.Leases() {
			st.WatchLease(l.ID)
		}
		for _, e := range []string{"e", "l", "l2"} {
			st.WatchElection(e)
		}
	}
	return []*fsm.FSM{live, restored}
}

// decodeApplyBaseEntries are the entries (indexes 1, 2, ...) of the first
// base state.
func decodeApplyBaseEntries() []fsm.Command {
	cmds := []fsm.Command{
		put("a", "1"),  // 1
		put("ab", "2"), // 2
		cmdOf(fsm.MemberSet{fsm.Member{ID: "n1", RaftAddr: "r:1", HTTPAddr: "h:1"}}),           // 3
		cmdOf(fsm.LeaseGrant{TTL: 1000}),                                                       // 4: lease 4
		cmdOf(fsm.LeaseGrant{TTL: 5000}),                                                       // 5: lease 5
		cmdOf(fsm.Campaign{Kind: fsm.KindElection, Name: "e", Lease: 4, Value: []byte("v")}),   // 6
		cmdOf(fsm.Campaign{Kind: fsm.KindLock, Name: "l", Lease: 4, Limit: 1, LockDelay: 100}), // 7
		cmdOf(fsm.Campaign{Kind: fsm.KindLock, Name: "l", Lease: 5}),                           // 8: waits
		cmdOf(fsm.KVPut{Key: "leased", Value: []byte("x"), Lease: 5}),                          // 9
		cmdOf(fsm.ACLBootstrap{Token: fsm.ACLToken{AccessorID: fuzzAccessor1, SecretHash: acl.HashSecret("fuzz-management-1"), Description: "boot", Management: true}}), // 10
		cmdOf(fsm.LeaseGrant{TTL: 2000, Owner: fuzzAccessor1, MaxLeases: 5}),                                                                                            // 11: lease 11
	}
	for i := range cmds {
		cmds[i].Stamp = int64(i+1) * 1e6
		if i%2 == 0 {
			cmds[i].IdempotencyKey = fmt.Sprint("idem-", i)
		}
	}
	return cmds
}

// decodeApplySeeds are well-formed commands of every type, aimed at the
// names, leases and keys of decodeApplyBases.
func decodeApplySeeds() []fsm.Command {
	withKey := func(c fsm.Command, key string) fsm.Command { c.IdempotencyKey = key; return c }
	return []fsm.Command{
		put("a", "3"),
		cmdOf(fsm.KVPut{Key: "a", Value: []byte("v"), Mode: fsm.PutCAS, CASIndex: 1}),
		cmdOf(fsm.KVPut{Key: "new", Mode: fsm.PutCreate, Lease: 4}),
		cmdOf(fsm.KVPut{Key: "k", Lease: 99}),
		cmdOf(fsm.KVDelete{Key: "a", Prefix: true}),
		cmdOf(fsm.KVDelete{Key: "leased", CAS: true, CASIndex: 9}),
		cmdOf(fsm.MemberSet{fsm.Member{ID: "n2"}}),
		cmdOf(fsm.MemberRemove{ID: "n1"}),
		cmdOf(fsm.LeaseGrant{TTL: 1000}),
		cmdOf(fsm.LeaseGrant{TTL: -1}),
		cmdOf(fsm.LeaseRevoke{ID: 4}),
		cmdOf(fsm.LeaseRevoke{ID: 4, Release: 1}),
		cmdOf(fsm.LeaseExpire{Leases: []fsm.LeaseExpiry{{ID: 4, Epoch: 4}}, Release: 2}),
		cmdOf(fsm.LeaseRelease{ID: 4, Release: 1}),
		cmdOf(fsm.LeaseRelease{ID: 3, Release: fsm.MaxRelease}),
		cmdOf(fsm.LeaseRenew{ID: 5}),
		cmdOf(fsm.LeaseRenewMany{IDs: []uint64{5, 4, 99}}),
		cmdOf(fsm.LeaseExpire{Leases: []fsm.LeaseExpiry{{ID: 4, Epoch: 4}, {ID: 5, Epoch: 1}}}),
		cmdOf(fsm.LeaseCheckpoint{Leases: []fsm.LeaseRemaining{{ID: 5, Epoch: 5, Remaining: 10}}}),
		cmdOf(fsm.Campaign{Kind: fsm.KindElection, Name: "e", Lease: 5}),
		cmdOf(fsm.Campaign{Kind: fsm.KindLock, Name: "l2", NewLeaseTTL: 2000, Limit: 2}),
		cmdOf(fsm.Campaign{Kind: fsm.KindLock, Name: "e", Lease: 5}),
		cmdOf(fsm.Resign{Name: "l", Lease: 4, Token: 7}),
		cmdOf(fsm.Resign{Name: "e", Lease: 4, Token: 1}),
		cmdOf(fsm.Proclaim{Name: "e", Lease: 4, Token: 6, Value: []byte("w")}),
		cmdOf(fsm.Promote{Name: "l"}),
		cmdOf(fsm.Restored{}),
		withKey(put("a", "9"), "idem-0"),
		withKey(cmdOf(fsm.LeaseGrant{TTL: 1000}), "idem-0"),
		withKey(cmdOf(fsm.LeaseRevoke{ID: 4}), "fresh"),
		{Type: fsm.CmdKVPut, Version: 1, IdempotencyKey: "idem-0", Payload: []byte{0xFF}},
		{Type: fsm.CmdKVPut, Version: 2, Payload: put("a", "1").Payload},
		{Type: 200, Version: 1},
		cmdOf(fsm.ACLBootstrap{Token: fsm.ACLToken{AccessorID: fuzzAccessor2, SecretHash: acl.HashSecret("fuzz-management-2"), Description: "", Management: true}}),
		cmdOf(fsm.ACLTokenCreate{Token: fsm.ACLToken{AccessorID: fuzzAccessor2, SecretHash: acl.HashSecret("fuzz-app-secret-1"),
			Rules: []acl.Rule{{Resource: acl.KV, Prefix: "a", Access: acl.Write}, {Resource: acl.Lease, Access: acl.Read}}}}),
		cmdOf(fsm.ACLTokenCreate{Token: fsm.ACLToken{AccessorID: fuzzAccessor2, SecretHash: acl.HashSecret("fuzz-management-1")}}),
		cmdOf(fsm.ACLTokenDelete{AccessorID: fuzzAccessor1}),
		cmdOf(fsm.ACLTokenDelete{AccessorID: fuzzAccessor2}),
		cmdOf(fsm.LeaseGrant{TTL: 1000, Owner: fuzzAccessor1, MaxLeases: 1}),
		cmdOf(fsm.Campaign{Kind: fsm.KindLock, Name: "l", NewLeaseTTL: 1000, Owner: fuzzAccessor2, MaxLeases: 3, MaxCandidates: 2}),
		cmdOf(fsm.Campaign{Kind: fsm.KindElection, Name: "e", Lease: 11, MaxCandidates: 1}),
		cmdOf(fsm.PeerSecret{Secret: bytes.Repeat([]byte{1}, fsm.PeerSecretSize)}),
		cmdOf(txnSeeds()[1]),
		cmdOf(txnSeeds()[2]),
		withKey(cmdOf(txnSeeds()[3]), "idem-txn"),
	}
}

// Accessor ids of the fuzz seeds' access tokens.
const (
	fuzzAccessor1 = "00112233445566778899aabbccddeeff"
	fuzzAccessor2 = "ffeeddccbbaa99887766554433221100"
)

// documentedPanic reports whether v is the panic ApplyCommand documents for
// a command it cannot decode.
func documentedPanic(v any) bool {
	s, ok := v.(string)
	return ok && strings.HasPrefix(s, "coordd: cannot apply log entry ") &&
		strings.Contains(s, fsm.ErrBadCommand.Error())
}

// FuzzDecodeApply decodes arbitrary bytes as a log entry and applies what
// DecodeCommand accepts to small states, as FSM.Apply does. ApplyCommand
// may panic only in the documented way (a payload it cannot decode); any
// other panic is a finding. When it applies, it must not change the state
// it was given, it must be deterministic, the new state must carry the
// entry's index and term and serialise to a snapshot that reads back to
// the same state, and a later ordinary command must apply to it.
func FuzzDecodeApply(f *testing.F) {
	for i, c := range decodeApplySeeds() {
		c.Stamp = int64(i) * 1e9
		f.Add(c.Encode())
		// Version 1 (no checksum): the fuzzer can mutate its fields
		// without having to fix up a checksum.
		f.Add(c.EncodeV1())
	}
	f.Add([]byte{})
	f.Add([]byte{0xC0, 0x01, 0x0E, 0x01, 0x00, 0x00, 0x00})
	bases := decodeApplyBases(f)
	before := make([][]byte, len(bases))
	for i, s := range bases {
		before[i] = stateBytes(f, s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cmd, err := fsm.DecodeCommand(data)
		if err != nil {
			if !errors.Is(err, fsm.ErrBadCommand) {
				t.Fatalf("error %v does not match ErrBadCommand", err)
			}
			return
		}
		for i, base := range bases {
			const index, term = 100, 3
			apply := func() (next *fsm.State, res *fsm.Result, p any) {
				defer func() { p = recover() }()
				next, res = fsm.ApplyCommand(base, index, term, cmd)
				return next, res, nil
			}
			next, res, p := apply()
			if p != nil {
				if !documentedPanic(p) {
					t.Fatalf("base %d: ApplyCommand(%+v) panicked: %v", i, cmd, p)
				}
				continue
			}
			if !bytes.Equal(stateBytes(t, base), before[i]) {
				t.Fatalf("base %d: ApplyCommand(%+v) changed the state it was given", i, cmd)
			}
			// A retry (same idempotency key and type) answers the first
			// entry's result.
			if res == nil || res.Type != cmd.Type || (res.Index != index) != res.Duplicate {
				t.Fatalf("base %d: result %+v for %+v at index %d", i, res, cmd, index)
			}
			if next.Index() != index || next.Term() != term {
				t.Fatalf("base %d: state at %d/%d, want %d/%d", i, next.Index(), next.Term(), index, term)
			}
			b1 := stateBytes(t, next)
			again, res2, p2 := apply()
			if p2 != nil || !bytes.Equal(stateBytes(t, again), b1) || fmt.Sprint(res2.Err) != fmt.Sprint(res.Err) {
				t.Fatalf("base %d: ApplyCommand(%+v) is not deterministic", i, cmd)
			}
			read, err := fsm.ReadState(bytes.NewReader(b1))
			if err != nil {
				t.Fatalf("base %d: state after %+v does not read back: %v", i, cmd, err)
			}
			if !bytes.Equal(stateBytes(t, read), b1) || read.Digest() != next.Digest() {
				t.Fatalf("base %d: state after %+v changes in a snapshot round trip", i, cmd)
			}
			after, _ := fsm.ApplyCommand(next, index+1, term, put("fuzz", "x"))
			if e, ok := after.Get("fuzz"); !ok || string(e.Value) != "x" {
				t.Fatalf("base %d: a put after %+v was lost", i, cmd)
			}
		}
		// FSM.Apply also closes the watch channels of what changes: the
		// same entry, then the same command again (a retry, or a repeat
		// that changes the same parts), then a put, must not close one
		// twice, and must reach the states ApplyCommand computes.
		for i, f := range liveFSMs(t, bases) {
			want := bases[i]
			for k, data := range [][]byte{data, data, put("fuzz", "y").Encode()} {
				index := uint64(100 + k)
				c, _ := fsm.DecodeCommand(data)
				p := func() (p any) {
					defer func() { p = recover() }()
					f.Apply(&raft.Log{Index: index, Term: 3, Data: data})
					return nil
				}()
				pw := func() (p any) {
					defer func() { p = recover() }()
					want, _ = fsm.ApplyCommand(want, index, 3, c)
					return nil
				}()
				if p != nil && !documentedPanic(p) {
					t.Fatalf("FSM %d: Apply of %+v at %d panicked: %v", i, c, index, p)
				}
				if (p != nil) != (pw != nil) {
					t.Fatalf("FSM %d: Apply of %+v at %d panicked with %v, ApplyCommand with %v", i, c, index, p, pw)
				}
				if p != nil {
					break
				}
				if !bytes.Equal(stateBytes(t, f.State()), stateBytes(t, want)) {
					t.Fatalf("FSM %d: Apply of %+v at %d differs from ApplyCommand", i, c, index)
				}
			}
		}
	})
}
