package fsm_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/coordd/coordd/acl"
	"github.com/coordd/coordd/fsm"
)

// Property tests of the state machine: whatever a proposer builds through
// NewCommand, with any limits (extreme ones included), applies without
// panic, purely (the state given is unchanged, twice gives the same state
// and result) and as FSM.Apply does on a live, watched state.

// extremeInt picks a limit-like value: the edges of what NewCommand
// accepts and what it must refuse, or a random one.
func extremeInt(rng *rand.Rand, max int) int {
	switch rng.IntN(8) {
	case 0:
		return 0
	case 1:
		return 1
	case 2:
		return max
	case 3:
		return max + 1
	case 4:
		return -1
	case 5:
		return math.MaxInt
	}
	return rng.IntN(max + 1)
}

// extremeTTL picks a TTL-like value (milliseconds).
func extremeTTL(rng *rand.Rand) int64 {
	switch rng.IntN(8) {
	case 0:
		return 0
	case 1:
		return -1
	case 2:
		return fsm.MaxLeaseTTL
	case 3:
		return fsm.MaxLeaseTTL + 1
	case 4:
		return math.MaxInt64
	case 5:
		return math.MinInt64
	}
	return 1 + rng.Int64N(100_000)
}

// randomPayload is a payload of a random type aimed at what s holds (its
// leases, names, holders and keys) or at nothing, with limits drawn from
// the edges of their ranges.
func randomPayload(rng *rand.Rand, s *fsm.State) fsm.Payload {
	names := []string{"e", "l", "sem", "x"}
	keys := []string{"", "a", "a/b", "k"}
	leaseID := func() uint64 {
		if ls := s.Leases(); len(ls) > 0 && rng.IntN(4) != 0 {
			return ls[rng.IntN(len(ls))].ID
		}
		return rng.Uint64N(s.Index() + 3)
	}
	// holder is a holder (or waiter) of some name, when there is one.
	holder := func() (string, fsm.Candidate) {
		if es := s.Elections(); len(es) > 0 {
			e := es[rng.IntN(len(es))]
			cs := append(append([]fsm.Candidate{}, e.Holders...), e.Waiting...)
			if len(cs) > 0 {
				return e.Name, cs[rng.IntN(len(cs))]
			}
			return e.Name, fsm.Candidate{Lease: leaseID()}
		}
		return names[rng.IntN(len(names))], fsm.Candidate{Lease: leaseID(), Token: rng.Uint64N(s.Index() + 2)}
	}
	owner := ""
	if rng.IntN(3) == 0 {
		owner = fuzzAccessor1
	}
	switch rng.IntN(20) {
	case 0:
		return fsm.KVPut{Key: keys[rng.IntN(len(keys))], Value: []byte(fmt.Sprint(rng.IntN(9))),
			Mode: fsm.PutMode(rng.IntN(4)), CASIndex: rng.Uint64N(s.Index() + 2), Lease: leaseID() * uint64(rng.IntN(2))}
	case 1:
		return fsm.KVDelete{Key: keys[rng.IntN(len(keys))], Prefix: rng.IntN(2) == 0, CAS: rng.IntN(3) == 0, CASIndex: rng.Uint64N(s.Index() + 2)}
	case 2:
		return fsm.MemberSet{Member: fsm.Member{ID: fmt.Sprint("n", rng.IntN(3)), RaftAddr: "r:1"}}
	case 3:
		return fsm.MemberRemove{ID: fmt.Sprint("n", rng.IntN(3))}
	case 4:
		return fsm.LeaseGrant{TTL: extremeTTL(rng), Owner: owner, MaxLeases: extremeInt(rng, fsm.MaxLimit)}
	case 5:
		return fsm.LeaseRevoke{ID: leaseID(), Release: rng.IntN(3)}
	case 6:
		return fsm.LeaseRenew{ID: leaseID()}
	case 7:
		var p fsm.LeaseExpire
		for _, l := range s.Leases() {
			if rng.IntN(2) == 0 {
				p.Leases = append(p.Leases, fsm.LeaseExpiry{ID: l.ID, Epoch: l.Epoch - uint64(rng.IntN(2))})
			}
		}
		p.Release = rng.IntN(3)
		return p
	case 8:
		var p fsm.LeaseCheckpoint
		for _, l := range s.Leases() {
			if rng.IntN(2) == 0 {
				p.Leases = append(p.Leases, fsm.LeaseRemaining{ID: l.ID, Epoch: l.Epoch, Remaining: extremeTTL(rng)})
			}
		}
		return p
	case 9, 10:
		c := fsm.Campaign{Kind: fsm.ElectionKind(rng.IntN(4)), Name: names[rng.IntN(len(names))], Value: []byte("v"),
			Limit: extremeInt(rng, fsm.MaxHolders), LockDelay: int64(extremeInt(rng, fsm.MaxLockDelay)),
			MaxCandidates: extremeInt(rng, fsm.MaxLimit)}
		if rng.IntN(2) == 0 {
			c.Lease = leaseID()
		} else {
			c.NewLeaseTTL, c.Owner, c.MaxLeases = extremeTTL(rng), owner, extremeInt(rng, fsm.MaxLimit)
		}
		return c
	case 11:
		name, c := holder()
		return fsm.Resign{Name: name, Lease: c.Lease, Token: c.Token}
	case 12:
		name, c := holder()
		return fsm.Proclaim{Name: name, Lease: c.Lease, Token: c.Token, Value: []byte("w")}
	case 13:
		name, _ := holder()
		return fsm.Promote{Name: name}
	case 14:
		return fsm.Restored{}
	case 16:
		return fsm.PeerSecret{Secret: bytes.Repeat([]byte{byte(rng.IntN(256))}, []int{0, 31, 32, 33}[rng.IntN(4)])}
	case 17:
		id := leaseID()
		if ids := s.UnreleasedLeases(3); len(ids) > 0 && rng.IntN(4) != 0 {
			id = ids[rng.IntN(len(ids))]
		}
		return fsm.LeaseRelease{ID: id, Release: extremeInt(rng, 3)}
	case 18:
		var p fsm.LeaseRenewMany
		for range rng.IntN(4) {
			p.IDs = append(p.IDs, leaseID())
		}
		return p
	case 15:
		return fsm.ACLBootstrap{Token: fsm.ACLToken{AccessorID: fuzzAccessor1, SecretHash: acl.HashSecret("p"), Management: true}}
	}
	return fsm.ACLTokenDelete{AccessorID: fuzzAccessor1}
}

// applyPure applies cmd to s twice and checks the property of purity: s is
// unchanged (its serialisation) and both applications give the same state
// and result. It fails t on any panic.
func applyPure(t testing.TB, s *fsm.State, index uint64, cmd fsm.Command, what string) (*fsm.State, *fsm.Result) {
	t.Helper()
	before := stateBytes(t, s)
	apply := func() (next *fsm.State, res *fsm.Result) {
		defer func() {
			if p := recover(); p != nil {
				t.Fatalf("%s: ApplyCommand(%s %+v) panicked: %v", what, cmd.Type, cmd, p)
			}
		}()
		return fsm.ApplyCommand(s, index, s.Term()+1, cmd)
	}
	next, res := apply()
	again, res2 := apply()
	if !bytes.Equal(stateBytes(t, s), before) {
		t.Fatalf("%s: ApplyCommand(%s) changed the state it was given", what, cmd.Type)
	}
	if !bytes.Equal(stateBytes(t, next), stateBytes(t, again)) || !reflect.DeepEqual(res, res2) {
		t.Fatalf("%s: ApplyCommand(%s %+v) twice on one state differs:\n%+v\n%+v", what, cmd.Type, cmd, res, res2)
	}
	return next, res
}

// TestProperty_ProposalsApplyWithoutPanicPurelyAndAsTheLiveFSMDoes: random
// payloads with extreme limits; those NewCommand accepts pass Check and
// apply purely, and a live FSM whose every key, lease and name is watched
// (so that apply closes their channels) reaches the same states.
func TestProperty_ProposalsApplyWithoutPanicPurelyAndAsTheLiveFSMDoes(t *testing.T) {
	t.Parallel()
	for seed := range uint64(3) {
		rng := rand.New(rand.NewPCG(seed, 16))
		s := fsm.New().State()
		live := fsm.New()
		index, stamp := uint64(0), int64(0)
		built, refused := 0, 0
		for step := range 1000 {
			p := randomPayload(rng, s)
			cmd, err := fsm.NewCommand(p)
			if err != nil {
				if !errors.Is(err, fsm.ErrInvalid) {
					t.Fatalf("NewCommand(%+v) = %v, not ErrInvalid", p, err)
				}
				refused++
				continue
			}
			built++
			if err := fsm.Check(cmd); err != nil {
				t.Fatalf("NewCommand built %+v but Check refuses it: %v", p, err)
			}
			if rng.IntN(5) == 0 {
				cmd.IdempotencyKey = fmt.Sprint("idem-", rng.IntN(4))
			}
			// Leaders' clocks disagree: the stamp may go back.
			stamp += rng.Int64N(2e9) - 2e8
			cmd.Stamp = stamp
			what := fmt.Sprintf("seed %d step %d", seed, step)
			repeat := 1 + rng.IntN(2) // sometimes the same command twice (a retry)
			for range repeat {
				index++
				s, _ = applyPure(t, s, index, cmd, what)
				// The live FSM, with everything watched.
				st := live.State()
				st.WatchPrefix("", 0)
				for _, l := range st.Leases() {
					st.WatchLease(l.ID)
				}
				for _, e := range st.Elections() {
					st.WatchElection(e.Name)
				}
				func() {
					defer func() {
						if p := recover(); p != nil {
							t.Fatalf("%s: FSM.Apply(%s) panicked: %v", what, cmd.Type, p)
						}
					}()
					live.Apply(&raft.Log{Index: index, Term: s.Term(), Data: cmd.Encode()})
				}()
				if !bytes.Equal(stateBytes(t, live.State()), stateBytes(t, s)) {
					t.Fatalf("%s: the live FSM differs from ApplyCommand after %s", what, cmd.Type)
				}
			}
			if step%250 == 249 {
				// Carry on from the state a snapshot gives back.
				r, err := fsm.ReadState(bytes.NewReader(stateBytes(t, s)))
				if err != nil {
					t.Fatalf("%s: the state does not read back: %v", what, err)
				}
				s = r
			}
		}
		if built < 300 || refused == 0 {
			t.Fatalf("seed %d: %d built, %d refused: the generator misses one side", seed, built, refused)
		}
	}
}
