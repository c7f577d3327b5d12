package fsm

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/coordd/coordd/acl"
)

// These tests reach the unexported payload decoders, so that a payload that
// round-trips wrongly is caught here rather than as a divergent Apply.

func randString(rng *rand.Rand, max int) string {
	b := make([]byte, rng.IntN(max+1))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return string(b)
}

func TestEveryPayloadSurvivesItsBuilderAndDecoder(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 5))
	for i := range 5000 {
		put := KVPut{Key: randString(rng, 30), Value: []byte(randString(rng, 200)), Mode: PutMode(rng.IntN(3)), CASIndex: rng.Uint64() >> rng.IntN(64)}
		gotPut, err := decodeKVPut(NewKVPut(put))
		if err != nil || gotPut.Key != put.Key || !bytes.Equal(gotPut.Value, put.Value) || gotPut.Mode != put.Mode || gotPut.CASIndex != put.CASIndex {
			t.Fatalf("case %d: kv-put %+v decoded as %+v, %v", i, put, gotPut, err)
		}
		del := KVDelete{Key: randString(rng, 30), Prefix: rng.IntN(2) == 0, CAS: rng.IntN(2) == 0, CASIndex: rng.Uint64() >> rng.IntN(64)}
		if got, err := decodeKVDelete(NewKVDelete(del)); err != nil || got != del {
			t.Fatalf("case %d: kv-delete %+v decoded as %+v, %v", i, del, got, err)
		}
		m := Member{ID: randString(rng, 10), RaftAddr: randString(rng, 20), HTTPAddr: randString(rng, 20)}
		if got, err := decodeMemberSet(NewMemberSet(m)); err != nil || got != m {
			t.Fatalf("case %d: member-set %+v decoded as %+v, %v", i, m, got, err)
		}
		if got, err := decodeMemberRemove(NewMemberRemove(m.ID)); err != nil || got.ID != m.ID {
			t.Fatalf("case %d: member-remove %q decoded as %+v, %v", i, m.ID, got, err)
		}
	}
}

func TestBuildersSetTypeAndPayloadVersion(t *testing.T) {
	t.Parallel()
	for _, c := range []Command{NewKVPut(KVPut{}), NewKVDelete(KVDelete{}), NewMemberSet(Member{}), NewMemberRemove("")} {
		if c.Version != 1 || c.IdempotencyKey != "" || c.Stamp != 0 {
			t.Errorf("%s: %+v, want payload version 1 and no key or stamp", c.Type, c)
		}
	}
	wantTypes := []CommandType{CmdKVPut, CmdKVDelete, CmdMemberSet, CmdMemberRemove}
	for i, c := range []Command{NewKVPut(KVPut{}), NewKVDelete(KVDelete{}), NewMemberSet(Member{}), NewMemberRemove("")} {
		if c.Type != wantTypes[i] {
			t.Errorf("builder %d made type %s, want %s", i, c.Type, wantTypes[i])
		}
	}
}

// decodePayload runs the decoder of c's type and reports its error.
func decodePayload(c Command) error {
	var err error
	switch c.Type {
	case CmdKVPut:
		_, err = decodeKVPut(c)
	case CmdKVDelete:
		_, err = decodeKVDelete(c)
	case CmdMemberSet:
		_, err = decodeMemberSet(c)
	case CmdMemberRemove:
		_, err = decodeMemberRemove(c)
	case CmdLeaseGrant:
		_, err = decodeLeaseGrant(c)
	case CmdLeaseRevoke, CmdLeaseRenew:
		_, err = decodeID(c)
	case CmdLeaseExpire:
		_, err = decodeLeaseExpire(c)
	case CmdLeaseCheckpoint:
		_, err = decodeLeaseCheckpoint(c)
	case CmdCampaign:
		_, err = decodeCampaign(c)
	case CmdResign:
		_, err = decodeResign(c)
	case CmdProclaim:
		_, err = decodeProclaim(c)
	case CmdPromote:
		_, err = decodePromote(c)
	case CmdRestored:
		err = decodeRestored(c)
	case CmdACLBootstrap, CmdACLTokenCreate:
		_, err = decodeACLTokenDef(c)
	case CmdACLTokenDelete:
		_, err = decodeACLTokenDelete(c)
	default:
		err = ErrBadCommand
	}
	return err
}

func TestPayloadDecodersRejectMalformedPayloads(t *testing.T) {
	t.Parallel()
	with := func(c Command, f func(*Command)) Command { f(&c); return c }
	validPut := NewKVPut(KVPut{Key: "k", Value: []byte("v"), Mode: PutCAS, CASIndex: 300})
	validDel := NewKVDelete(KVDelete{Key: "k", Prefix: true, CAS: true, CASIndex: 300})
	validSet := NewMemberSet(Member{ID: "n1", RaftAddr: "r", HTTPAddr: "h"})
	validRemove := NewMemberRemove("n1")
	tests := []struct {
		name string
		cmd  Command
	}{
		{"kv-put with payload version 0", with(validPut, func(c *Command) { c.Version = 0 })},
		{"kv-put with payload version 2", with(validPut, func(c *Command) { c.Version = 2 })},
		{"kv-put with mode 3", with(validPut, func(c *Command) { c.Payload = []byte{1, 'k', 1, 'v', 3, 0} })},
		{"kv-put with a huge mode", with(validPut, func(c *Command) { c.Payload = []byte{1, 'k', 1, 'v', 0x80, 0x02, 0} })},
		{"kv-put with trailing bytes", with(validPut, func(c *Command) { c.Payload = append(c.Payload, 0) })},
		{"kv-put with an empty payload", with(validPut, func(c *Command) { c.Payload = nil })},
		{"kv-delete with payload version 2", with(validDel, func(c *Command) { c.Version = 2 })},
		{"kv-delete with a prefix flag of 2", with(validDel, func(c *Command) { c.Payload = []byte{1, 'k', 2, 0, 0} })},
		{"kv-delete with a CAS flag of 255", with(validDel, func(c *Command) { c.Payload = []byte{1, 'k', 0, 255, 0} })},
		{"kv-delete with trailing bytes", with(validDel, func(c *Command) { c.Payload = append(c.Payload, 0) })},
		{"member-set with payload version 0", with(validSet, func(c *Command) { c.Version = 0 })},
		{"member-set with trailing bytes", with(validSet, func(c *Command) { c.Payload = append(c.Payload, 0) })},
		{"member-remove with payload version 9", with(validRemove, func(c *Command) { c.Version = 9 })},
		{"member-remove with trailing bytes", with(validRemove, func(c *Command) { c.Payload = append(c.Payload, 'x') })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if err := decodePayload(tt.cmd); !errors.Is(err, ErrBadCommand) {
				t.Fatalf("decode = %v, want ErrBadCommand", err)
			}
		})
	}
	for _, c := range []Command{validPut, validDel, validSet, validRemove} {
		if err := decodePayload(c); err != nil {
			t.Fatalf("valid %s: %v", c.Type, err)
		}
		for n := range len(c.Payload) {
			cut := c
			cut.Payload = c.Payload[:n]
			if err := decodePayload(cut); !errors.Is(err, ErrBadCommand) {
				t.Fatalf("%s payload cut to %d of %d bytes: %v, want ErrBadCommand", c.Type, n, len(c.Payload), err)
			}
		}
	}
}

// FuzzPayloadDecoders: ApplyCommand panics on a decoded envelope exactly when
// its payload does not decode, and a payload that decodes gives the same
// state as the canonical payload built from what was decoded.
func FuzzPayloadDecoders(f *testing.F) {
	f.Add(uint8(CmdKVPut), uint8(1), NewKVPut(KVPut{Key: "a", Value: []byte("b"), Mode: PutCAS, CASIndex: 1}).Payload)
	f.Add(uint8(CmdKVDelete), uint8(1), NewKVDelete(KVDelete{Key: "a", Prefix: true}).Payload)
	f.Add(uint8(CmdMemberSet), uint8(1), NewMemberSet(Member{ID: "n", RaftAddr: "r", HTTPAddr: "h"}).Payload)
	f.Add(uint8(CmdMemberRemove), uint8(1), NewMemberRemove("n").Payload)
	f.Add(uint8(9), uint8(1), []byte{})
	f.Add(uint8(CmdLeaseGrant), uint8(1), NewLeaseGrant(1000).Payload)
	f.Add(uint8(CmdLeaseRevoke), uint8(1), NewLeaseRevoke(4).Payload)
	f.Add(uint8(CmdLeaseExpire), uint8(1), NewLeaseExpire(LeaseExpire{Leases: []LeaseExpiry{{ID: 4, Epoch: 4}}}).Payload)
	f.Add(uint8(CmdLeaseCheckpoint), uint8(1), NewLeaseCheckpoint(LeaseCheckpoint{Leases: []LeaseRemaining{{ID: 4, Epoch: 4, Remaining: 9}}}).Payload)
	f.Add(uint8(CmdCampaign), uint8(1), NewCampaign(Campaign{Kind: KindLock, Name: "l", Lease: 4, Limit: 2, LockDelay: 5}).Payload)
	f.Add(uint8(CmdResign), uint8(1), NewResign(Resign{Name: "e", Lease: 4, Token: 5}).Payload)
	f.Add(uint8(CmdProclaim), uint8(1), NewProclaim(Proclaim{Name: "e", Lease: 4, Token: 5, Value: []byte("v")}).Payload)
	f.Add(uint8(CmdPromote), uint8(1), NewPromote("l").Payload)
	f.Add(uint8(CmdRestored), uint8(1), NewRestored().Payload)
	f.Add(uint8(CmdRestored), uint8(1), []byte{0})
	tok := ACLToken{AccessorID: "00112233445566778899aabbccddeeff", Description: "d",
		Rules: []acl.Rule{{Resource: acl.Lock, Prefix: "j/", Access: acl.Write}}}
	f.Add(uint8(CmdACLBootstrap), uint8(1), NewACLBootstrap(tok.AccessorID, tok.SecretHash, "b").Payload)
	f.Add(uint8(CmdACLTokenCreate), uint8(1), NewACLTokenCreate(tok).Payload)
	f.Add(uint8(CmdACLTokenDelete), uint8(1), NewACLTokenDelete(tok.AccessorID).Payload)
	f.Add(uint8(CmdLeaseGrant), uint8(2), NewLeaseGrantFor(LeaseGrant{TTL: 10, Owner: "o", MaxLeases: 2}).Payload)
	f.Add(uint8(CmdCampaign), uint8(2), NewCampaign(Campaign{Kind: KindLock, Name: "l", NewLeaseTTL: 9, Owner: "o", MaxCandidates: 3}).Payload)
	// A fresh base for every transition, so that each ApplyCommand starts
	// from a State that nothing else has been applied to.
	newBase := func() *State {
		s := emptyState()
		for i, c := range []Command{
			NewKVPut(KVPut{Key: "a", Value: []byte("1")}),
			NewKVPut(KVPut{Key: "ab", Value: []byte("2")}),
			NewMemberSet(Member{ID: "n"}),
			NewLeaseGrant(1000), // lease 4
			NewCampaign(Campaign{Kind: KindElection, Name: "e", Lease: 4}),
			NewCampaign(Campaign{Kind: KindLock, Name: "l", Lease: 4, Limit: 2}),
		} {
			s, _ = ApplyCommand(s, uint64(i+1), 1, c)
		}
		return s
	}
	f.Fuzz(func(t *testing.T, typ, version uint8, payload []byte) {
		c := Command{Type: CommandType(typ), Version: version, Payload: payload}
		decErr := decodePayload(c)
		var next *State
		panicked := func() (p bool) {
			defer func() { p = recover() != nil }()
			next, _ = ApplyCommand(newBase(), 10, 2, c)
			return false
		}()
		if panicked != (decErr != nil) {
			t.Fatalf("ApplyCommand panicked=%v but payload decode error is %v", panicked, decErr)
		}
		if panicked {
			return
		}
		var canon Command
		switch c.Type {
		case CmdKVPut:
			p, _ := decodeKVPut(c)
			canon = NewKVPut(p)
		case CmdKVDelete:
			p, _ := decodeKVDelete(c)
			canon = NewKVDelete(p)
		case CmdMemberSet:
			m, _ := decodeMemberSet(c)
			canon = NewMemberSet(m)
		case CmdMemberRemove:
			m, _ := decodeMemberRemove(c)
			canon = NewMemberRemove(m.ID)
		case CmdLeaseGrant:
			p, _ := decodeLeaseGrant(c)
			canon = NewLeaseGrantFor(p)
		case CmdLeaseRevoke:
			id, _ := decodeID(c)
			canon = NewLeaseRevoke(id)
		case CmdLeaseRenew:
			id, _ := decodeID(c)
			canon = NewLeaseRenew(id)
		case CmdLeaseExpire:
			p, _ := decodeLeaseExpire(c)
			canon = NewLeaseExpire(p)
		case CmdLeaseCheckpoint:
			p, _ := decodeLeaseCheckpoint(c)
			canon = NewLeaseCheckpoint(p)
		case CmdCampaign:
			p, _ := decodeCampaign(c)
			canon = NewCampaign(p)
		case CmdResign:
			p, _ := decodeResign(c)
			canon = NewResign(p)
		case CmdProclaim:
			p, _ := decodeProclaim(c)
			canon = NewProclaim(p)
		case CmdPromote:
			name, _ := decodePromote(c)
			canon = NewPromote(name)
		case CmdRestored:
			canon = NewRestored()
		case CmdACLBootstrap:
			t, _ := decodeACLTokenDef(c)
			canon = NewACLBootstrap(t.AccessorID, t.SecretHash, t.Description)
		case CmdACLTokenCreate:
			t, _ := decodeACLTokenDef(c)
			canon = NewACLTokenCreate(*t)
		case CmdACLTokenDelete:
			id, _ := decodeACLTokenDelete(c)
			canon = NewACLTokenDelete(id)
		}
		if len(canon.Payload) > len(payload) {
			t.Fatalf("canonical payload %x longer than accepted %x", canon.Payload, payload)
		}
		want, _ := ApplyCommand(newBase(), 10, 2, canon)
		var a, b bytes.Buffer
		if err := WriteState(&a, next); err != nil {
			t.Fatal(err)
		}
		if err := WriteState(&b, want); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a.Bytes(), b.Bytes()) {
			t.Fatalf("payload %x and its canonical form %x give different states", payload, canon.Payload)
		}
	})
}
