package fsm_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/coordd/coordd/acl"
	"github.com/coordd/coordd/fsm"
)

// These tests check each payload codec through the one door Apply uses
// (fsm.DecodePayload), so that a payload that round-trips wrongly is
// caught here rather than as a divergent Apply.

func randString(rng *rand.Rand, max int) string {
	b := make([]byte, rng.IntN(max+1))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return string(b)
}

// decoded is fsm.DecodePayload of c, failing the test on an error.
func decoded(t *testing.T, c fsm.Command) fsm.Payload {
	t.Helper()
	p, err := fsm.DecodePayload(c)
	if err != nil {
		t.Fatalf("%s: %v", c.Type, err)
	}
	return p
}

func TestEveryPayloadSurvivesNewCommandAndDecodePayload(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 5))
	for i := range 5000 {
		owner := ""
		if rng.IntN(2) == 0 {
			owner = fuzzAccessor1
		}
		for _, p := range []fsm.Payload{
			fsm.KVPut{Key: randString(rng, 30), Value: []byte(randString(rng, 200)), Mode: fsm.PutMode(rng.IntN(3)), CASIndex: rng.Uint64() >> rng.IntN(64)},
			fsm.KVDelete{Key: randString(rng, 30), Prefix: rng.IntN(2) == 0, CAS: rng.IntN(2) == 0, CASIndex: rng.Uint64() >> rng.IntN(64)},
			fsm.MemberSet{Member: fsm.Member{ID: randString(rng, 10), RaftAddr: randString(rng, 20), HTTPAddr: randString(rng, 20)}},
			fsm.MemberRemove{ID: randString(rng, 10)},
			fsm.LeaseGrant{TTL: rng.Int64N(fsm.MaxLeaseTTL), Owner: owner, MaxLeases: rng.IntN(fsm.MaxLimit)},
			fsm.LeaseRevoke{ID: rng.Uint64()},
			fsm.LeaseRenew{ID: rng.Uint64()},
			fsm.LeaseRenewMany{IDs: []uint64{rng.Uint64(), rng.Uint64() >> rng.IntN(64)}},
			fsm.LeaseExpire{Leases: []fsm.LeaseExpiry{{ID: rng.Uint64(), Epoch: rng.Uint64()}}},
			fsm.LeaseCheckpoint{Leases: []fsm.LeaseRemaining{{ID: rng.Uint64(), Epoch: rng.Uint64(), Remaining: rng.Int64N(fsm.MaxLeaseTTL)}}},
			fsm.Campaign{Kind: fsm.ElectionKind(1 + rng.IntN(2)), Name: "n" + randString(rng, 20), Lease: 1 + rng.Uint64N(1<<40),
				Value: []byte(randString(rng, 30)), Limit: rng.IntN(fsm.MaxHolders), LockDelay: rng.Int64N(fsm.MaxLockDelay),
				MaxCandidates: rng.IntN(2) * rng.IntN(fsm.MaxLimit)},
			fsm.Campaign{Kind: fsm.KindLock, Name: "n", NewLeaseTTL: 1 + rng.Int64N(fsm.MaxLeaseTTL), Owner: owner, MaxLeases: rng.IntN(2) * rng.IntN(fsm.MaxLimit)},
			fsm.Resign{Name: randString(rng, 20), Lease: rng.Uint64(), Token: rng.Uint64()},
			fsm.Proclaim{Name: randString(rng, 20), Lease: rng.Uint64(), Token: rng.Uint64(), Value: []byte(randString(rng, 30))},
			fsm.Promote{Name: randString(rng, 20)},
			fsm.Restored{},
			fsm.ACLTokenDelete{AccessorID: randString(rng, 32)},
			fsm.PeerSecret{Secret: []byte(randString(rng, 0) + string(bytes.Repeat([]byte{byte(i)}, fsm.PeerSecretSize)))},
		} {
			c, err := fsm.NewCommand(p)
			if err != nil {
				t.Fatalf("case %d: NewCommand(%+v): %v", i, p, err)
			}
			if c.Type != p.Type() || c.IdempotencyKey != "" || c.Stamp != 0 {
				t.Fatalf("case %d: %+v made %+v", i, p, c)
			}
			if got := decoded(t, c); !equalPayloads(got, p) {
				t.Fatalf("case %d: %s %+v decoded as %+v", i, c.Type, p, got)
			}
		}
	}
}

// equalPayloads compares payloads, a nil and an empty byte slice alike.
func equalPayloads(a, b fsm.Payload) bool {
	return reflect.DeepEqual(normalize(a), normalize(b))
}

func normalize(p fsm.Payload) fsm.Payload {
	switch q := p.(type) {
	case fsm.KVPut:
		q.Value = append([]byte{}, q.Value...)
		return q
	case fsm.Campaign:
		q.Value = append([]byte{}, q.Value...)
		return q
	case fsm.Proclaim:
		q.Value = append([]byte{}, q.Value...)
		return q
	}
	return p
}

func TestPayloadDecodersRejectMalformedPayloads(t *testing.T) {
	t.Parallel()
	with := func(c fsm.Command, f func(*fsm.Command)) fsm.Command { f(&c); return c }
	validPut := cmdOf(fsm.KVPut{Key: "k", Value: []byte("v"), Mode: fsm.PutCAS, CASIndex: 300})
	validDel := cmdOf(fsm.KVDelete{Key: "k", Prefix: true, CAS: true, CASIndex: 300})
	validSet := cmdOf(fsm.MemberSet{Member: fsm.Member{ID: "n1", RaftAddr: "r", HTTPAddr: "h"}})
	validRemove := cmdOf(fsm.MemberRemove{ID: "n1"})
	validGrant := cmdOf(fsm.LeaseGrant{TTL: 10, Owner: fuzzAccessor1, MaxLeases: 3})
	tests := []struct {
		name string
		cmd  fsm.Command
	}{
		{"kv-put with payload version 0", with(validPut, func(c *fsm.Command) { c.Version = 0 })},
		{"kv-put with payload version 2", with(validPut, func(c *fsm.Command) { c.Version = 2 })},
		{"kv-put with mode 3", with(validPut, func(c *fsm.Command) { c.Payload = []byte{1, 'k', 1, 'v', 3, 0} })},
		{"kv-put with a huge mode", with(validPut, func(c *fsm.Command) { c.Payload = []byte{1, 'k', 1, 'v', 0x80, 0x02, 0} })},
		{"kv-put with trailing bytes", with(validPut, func(c *fsm.Command) { c.Payload = append(c.Payload, 0) })},
		{"kv-put with an empty payload", with(validPut, func(c *fsm.Command) { c.Payload = nil })},
		{"kv-delete with payload version 2", with(validDel, func(c *fsm.Command) { c.Version = 2 })},
		{"kv-delete with a prefix flag of 2", with(validDel, func(c *fsm.Command) { c.Payload = []byte{1, 'k', 2, 0, 0} })},
		{"kv-delete with a CAS flag of 255", with(validDel, func(c *fsm.Command) { c.Payload = []byte{1, 'k', 0, 255, 0} })},
		{"kv-delete with trailing bytes", with(validDel, func(c *fsm.Command) { c.Payload = append(c.Payload, 0) })},
		{"member-set with payload version 0", with(validSet, func(c *fsm.Command) { c.Version = 0 })},
		{"member-set with trailing bytes", with(validSet, func(c *fsm.Command) { c.Payload = append(c.Payload, 0) })},
		{"member-remove with payload version 9", with(validRemove, func(c *fsm.Command) { c.Version = 9 })},
		{"member-remove with trailing bytes", with(validRemove, func(c *fsm.Command) { c.Payload = append(c.Payload, 'x') })},
		{"lease-grant with a limit above MaxLimit", with(validGrant, func(c *fsm.Command) {
			c.Payload = cat([]byte{20}, []byte{32}, []byte(fuzzAccessor1), uvarint(fsm.MaxLimit+1))
		})},
		{"lease-grant with an owner that is no accessor id", with(validGrant, func(c *fsm.Command) { c.Payload = []byte{20, 1, 'o', 1} })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := fsm.DecodePayload(tt.cmd); !errors.Is(err, fsm.ErrBadCommand) {
				t.Fatalf("decode = %v, want ErrBadCommand", err)
			}
			if err := fsm.Check(tt.cmd); !errors.Is(err, fsm.ErrBadCommand) {
				t.Fatalf("Check = %v, want ErrBadCommand", err)
			}
		})
	}
	for _, c := range []fsm.Command{validPut, validDel, validSet, validRemove, validGrant} {
		if err := fsm.Check(c); err != nil {
			t.Fatalf("valid %s: %v", c.Type, err)
		}
		for n := range len(c.Payload) {
			cut := c
			cut.Payload = c.Payload[:n]
			if err := fsm.Check(cut); !errors.Is(err, fsm.ErrBadCommand) {
				t.Fatalf("%s payload cut to %d of %d bytes: %v, want ErrBadCommand", c.Type, n, len(c.Payload), err)
			}
		}
	}
}

// FuzzPayloadDecoders: ApplyCommand panics on a decoded envelope exactly when
// its payload does not decode (fsm.Check), and a payload that decodes gives
// the same state as the canonical command NewCommand builds from it.
func FuzzPayloadDecoders(f *testing.F) {
	for _, p := range []fsm.Payload{
		fsm.KVPut{Key: "a", Value: []byte("b"), Mode: fsm.PutCAS, CASIndex: 1},
		fsm.KVDelete{Key: "a", Prefix: true},
		fsm.MemberSet{Member: fsm.Member{ID: "n", RaftAddr: "r", HTTPAddr: "h"}},
		fsm.MemberRemove{ID: "n"},
		fsm.LeaseGrant{TTL: 1000},
		fsm.LeaseRevoke{ID: 4},
		fsm.LeaseExpire{Leases: []fsm.LeaseExpiry{{ID: 4, Epoch: 4}}},
		fsm.LeaseCheckpoint{Leases: []fsm.LeaseRemaining{{ID: 4, Epoch: 4, Remaining: 9}}},
		fsm.Campaign{Kind: fsm.KindLock, Name: "l", Lease: 4, Limit: 2, LockDelay: 5},
		fsm.Resign{Name: "e", Lease: 4, Token: 5},
		fsm.Proclaim{Name: "e", Lease: 4, Token: 5, Value: []byte("v")},
		fsm.Promote{Name: "l"},
		fsm.Restored{},
		fsm.ACLBootstrap{Token: fsm.ACLToken{AccessorID: fuzzAccessor1, Description: "b", Management: true}},
		fsm.ACLTokenCreate{Token: fsm.ACLToken{AccessorID: fuzzAccessor1, Description: "d",
			Rules: []acl.Rule{{Resource: acl.Lock, Prefix: "j/", Access: acl.Write}}}},
		fsm.ACLTokenDelete{AccessorID: fuzzAccessor1},
		fsm.LeaseGrant{TTL: 10, Owner: fuzzAccessor2, MaxLeases: 2},
		fsm.Campaign{Kind: fsm.KindLock, Name: "l", NewLeaseTTL: 9, Owner: fuzzAccessor2, MaxCandidates: 3},
		fsm.PeerSecret{Secret: bytes.Repeat([]byte{3}, fsm.PeerSecretSize)},
	} {
		c := cmdOf(p)
		f.Add(uint8(c.Type), c.Version, c.Payload)
	}
	f.Add(uint8(9), uint8(1), []byte{})
	f.Add(uint8(fsm.CmdRestored), uint8(1), []byte{0})
	// A fresh base for every transition, so that each ApplyCommand starts
	// from a State that nothing else has been applied to.
	newBase := func() *fsm.State {
		s := fsm.New().State()
		for i, c := range []fsm.Command{
			put("a", "1"), put("ab", "2"),
			cmdOf(fsm.MemberSet{Member: fsm.Member{ID: "n"}}),
			cmdOf(fsm.LeaseGrant{TTL: 1000}), // lease 4
			cmdOf(fsm.Campaign{Kind: fsm.KindElection, Name: "e", Lease: 4}),
			cmdOf(fsm.Campaign{Kind: fsm.KindLock, Name: "l", Lease: 4, Limit: 2}),
		} {
			s, _ = fsm.ApplyCommand(s, uint64(i+1), 1, c)
		}
		return s
	}
	f.Fuzz(func(t *testing.T, typ, version uint8, payload []byte) {
		c := fsm.Command{Type: fsm.CommandType(typ), Version: version, Payload: payload}
		p, decErr := fsm.DecodePayload(c)
		if decErr != nil && !errors.Is(decErr, fsm.ErrBadCommand) {
			t.Fatalf("decode error %v does not match ErrBadCommand", decErr)
		}
		if (fsm.Check(c) == nil) != (decErr == nil) {
			t.Fatalf("Check disagrees with DecodePayload (%v)", decErr)
		}
		var next *fsm.State
		panicked := func() (p bool) {
			defer func() { p = recover() != nil }()
			next, _ = fsm.ApplyCommand(newBase(), 10, 2, c)
			return false
		}()
		if panicked != (decErr != nil) {
			t.Fatalf("ApplyCommand panicked=%v but payload decode error is %v", panicked, decErr)
		}
		if panicked {
			return
		}
		canon, err := fsm.NewCommand(p)
		if err != nil {
			t.Fatalf("NewCommand refuses what DecodePayload accepted (%+v): %v", p, err)
		}
		if len(canon.Payload) > len(payload) {
			t.Fatalf("canonical payload %x longer than accepted %x", canon.Payload, payload)
		}
		want, _ := fsm.ApplyCommand(newBase(), 10, 2, canon)
		if !bytes.Equal(stateBytes(t, next), stateBytes(t, want)) {
			t.Fatalf("payload %x and its canonical form %x give different states", payload, canon.Payload)
		}
	})
}

// TestLeaseGrant_ALimitAboveMaxLimitNeverReachesTheLog is the finding of
// a setting that stopped every node: a leader configured with
// -max-leases-per-token 1<<41 stamped it into every grant; the entry
// encoded, passed its checksum and made Apply panic on every replica.
// Now NewCommand refuses to build it, and a forged one fails Check (which
// the server runs before raft.Apply); the server refuses the setting at
// startup (server.TestStart_RefusesEveryLimitOutOfRange_...).
func TestLeaseGrant_ALimitAboveMaxLimitNeverReachesTheLog(t *testing.T) {
	t.Parallel()
	for _, p := range []fsm.Payload{
		fsm.LeaseGrant{TTL: 1000, MaxLeases: 1 << 41},
		fsm.LeaseGrant{TTL: 1000, Owner: fuzzAccessor1, MaxLeases: fsm.MaxLimit + 1},
		fsm.Campaign{Kind: fsm.KindLock, Name: "n", NewLeaseTTL: 1000, MaxLeases: 1 << 41},
		fsm.Campaign{Kind: fsm.KindLock, Name: "n", Lease: 3, MaxCandidates: 1 << 41},
	} {
		if _, err := fsm.NewCommand(p); !errors.Is(err, fsm.ErrInvalid) {
			t.Fatalf("NewCommand(%+v) = %v, want ErrInvalid", p, err)
		}
	}
	// Forged as a leader of an earlier build would have written it.
	forged := fsm.Command{Type: fsm.CmdLeaseGrant, Version: 2,
		Payload: cat(varint(1000), uvarint(0), uvarint(1<<41))}
	if err := fsm.VerifyChecksum(forged.Encode()); err != nil {
		t.Fatalf("the forged entry's checksum: %v", err)
	}
	if err := fsm.Check(forged); !errors.Is(err, fsm.ErrBadCommand) {
		t.Fatalf("Check(forged grant) = %v, want ErrBadCommand", err)
	}
	// The same grant with the highest limit allowed is built and applies.
	ok := cmdOf(fsm.LeaseGrant{TTL: 1000, MaxLeases: fsm.MaxLimit})
	if s := buildState(t, ok); len(s.Leases()) != 1 {
		t.Fatalf("%d leases", len(s.Leases()))
	}
}

func varint(v int64) []byte { return binary.AppendVarint(nil, v) }
