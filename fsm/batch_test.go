package fsm_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/coordd/coordd/fsm"
)

// randomCommands is a run of n commands built by NewCommand from random
// payloads aimed at the state they apply to (randomPayload), with retries
// under idempotency keys and stamps that may go back, applied one by one
// with ApplyCommand: it returns the entries, the state after each and
// each result.
func randomCommands(t *testing.T, seed uint64, n int) ([]*raft.Log, []*fsm.State, []*fsm.Result) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 0xba7c4))
	s := fsm.New().State()
	var (
		logs    []*raft.Log
		states  []*fsm.State
		results []*fsm.Result
	)
	index, stamp := uint64(0), int64(0)
	for len(logs) < n {
		cmd, err := fsm.NewCommand(randomPayload(rng, s))
		if err != nil {
			if !errors.Is(err, fsm.ErrInvalid) {
				t.Fatal(err)
			}
			continue
		}
		if rng.IntN(4) == 0 {
			cmd.IdempotencyKey = fmt.Sprint("idem-", rng.IntN(6))
		}
		stamp += rng.Int64N(2e9) - 2e8
		cmd.Stamp = stamp
		for range 1 + rng.IntN(2) {
			index += 1 + rng.Uint64N(2) // gaps: entries that are not commands
			var res *fsm.Result
			s, res = fsm.ApplyCommand(s, index, 1+index/50, cmd)
			logs = append(logs, &raft.Log{Index: index, Term: 1 + index/50, Type: raft.LogCommand, Data: cmd.Encode()})
			states, results = append(states, s), append(results, res)
		}
	}
	return logs, states, results
}

// watchAll takes a watch channel of every key, lease and name of s and of
// the whole KV prefix space, with a function telling whether each fired.
type watched struct {
	what string
	ch   <-chan struct{}
	// changed says whether what it watches differs in the state after.
	changed func(after *fsm.State) bool
}

func watchAll(s *fsm.State) []watched {
	var out []watched
	_, _, ch := s.WatchPrefix("", 0)
	out = append(out, watched{"kv prefix", ch, func(a *fsm.State) bool {
		return !bytes.Equal(kvBytes(a), kvBytes(s))
	}})
	for _, l := range s.Leases() {
		_, ch := s.WatchLease(l.ID)
		out = append(out, watched{fmt.Sprint("lease ", l.ID), ch, func(a *fsm.State) bool {
			n, ok := a.Lease(l.ID)
			return !ok || !reflect.DeepEqual(n, l)
		}})
	}
	for _, e := range s.Elections() {
		_, _, ch := s.WatchElection(e.Name)
		out = append(out, watched{"election " + e.Name, ch, func(a *fsm.State) bool {
			n, ok := a.Election(e.Name)
			return !ok || !reflect.DeepEqual(n, e)
		}})
	}
	return out
}

func kvBytes(s *fsm.State) []byte {
	var b bytes.Buffer
	es, _, _ := s.WatchPrefix("", 0)
	for _, e := range es {
		fmt.Fprintf(&b, "%s\x00%s\x00%d\x00%d\x00%d\x00", e.Key, e.Value, e.ModifyIndex, e.Version, e.Lease)
	}
	return b.Bytes()
}

// TestBatch_SameAsOneByOne: the same random entries applied by a live FSM
// in batches of random sizes (ApplyBatch: one radix transaction per tree
// for the whole batch) give every entry the same result as applying them
// one by one, and after each batch the same state (its snapshot bytes and
// replica digest). A state published before a batch is unchanged by it,
// and every watch taken on it fires exactly when what it watches changed
// in the batch.
func TestBatch_SameAsOneByOne(t *testing.T) {
	t.Parallel()
	for seed := range uint64(4) {
		logs, states, results := randomCommands(t, seed, 1500)
		rng := rand.New(rand.NewPCG(seed, 7))
		live := fsm.New()
		for i := 0; i < len(logs); {
			n := 1 + rng.IntN(80)
			if rng.IntN(10) == 0 {
				n = 1
			}
			n = min(n, len(logs)-i)
			batch := append([]*raft.Log(nil), logs[i:i+n]...)
			// A configuration entry in the batch gets no result.
			cfgAt := -1
			if rng.IntN(5) == 0 {
				cfgAt = rng.IntN(len(batch) + 1)
				batch = append(batch[:cfgAt], append([]*raft.Log{{Type: raft.LogConfiguration}}, batch[cfgAt:]...)...)
			}
			before := live.State()
			beforeBytes := stateBytes(t, before)
			watches := watchAll(before)
			got := live.ApplyBatch(batch)
			if len(got) != len(batch) {
				t.Fatalf("seed %d: %d results for %d entries", seed, len(got), len(batch))
			}
			k := 0
			for j, r := range got {
				if j == cfgAt {
					if r != nil {
						t.Fatalf("seed %d: a configuration entry has result %v", seed, r)
					}
					continue
				}
				if !reflect.DeepEqual(r.(*fsm.Result), results[i+k]) {
					t.Fatalf("seed %d entry %d (%d in a batch of %d): batched result\n%+v\none by one\n%+v",
						seed, i+k, k, n, r, results[i+k])
				}
				k++
			}
			i += n
			after := live.State()
			if !bytes.Equal(stateBytes(t, after), stateBytes(t, states[i-1])) || after.ReplicaDigest() != states[i-1].ReplicaDigest() {
				t.Fatalf("seed %d: after entry %d the batched state differs from the one-by-one state", seed, i-1)
			}
			if !bytes.Equal(stateBytes(t, before), beforeBytes) {
				t.Fatalf("seed %d: a batch changed a state published before it", seed)
			}
			for _, w := range watches {
				if fired, changed := closed(w.ch), w.changed(after); changed && !fired {
					t.Fatalf("seed %d: batch ending at entry %d changed %s but its watch did not fire", seed, i-1, w.what)
				}
			}
		}
	}
}

// TestBatch_LargeWritesFlushAndNotify: a batch that writes far more than
// one radix transaction tracks (thousands of grants, then the expiry of a
// lease holding hundreds of locks and keys) reaches the one-by-one state,
// and every watch on what changed fires.
func TestBatch_LargeWritesFlushAndNotify(t *testing.T) {
	t.Parallel()
	var logs []*raft.Log
	index := uint64(0)
	add := func(p fsm.Payload) {
		index++
		logs = append(logs, &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: cmdOf(p).Encode()})
	}
	for range 3000 {
		add(fsm.LeaseGrant{TTL: 1000})
	}
	one := fsm.New()
	for _, l := range logs {
		one.Apply(l)
	}
	live := fsm.New()
	live.ApplyBatch(logs)
	if !bytes.Equal(stateBytes(t, live.State()), stateBytes(t, one.State())) {
		t.Fatal("3,000 grants in one batch differ from one by one")
	}
	logs = logs[:0]
	for i := range 700 {
		add(fsm.Campaign{Kind: fsm.KindLock, Name: fmt.Sprint("l", i), Lease: 1, LockDelay: 5})
		add(fsm.Campaign{Kind: fsm.KindLock, Name: fmt.Sprint("l", i), Lease: 2})
		add(fsm.KVPut{Key: fmt.Sprint("k", i), Value: []byte("v"), Lease: 1})
	}
	for _, l := range logs {
		one.Apply(l)
	}
	live.ApplyBatch(logs)
	before := live.State()
	watches := watchAll(before)
	l1, _ := before.Lease(1)
	logs = logs[:0]
	add(fsm.LeaseExpire{Leases: []fsm.LeaseExpiry{{ID: 1, Epoch: l1.Epoch}}})
	add(fsm.LeaseRevoke{ID: 3})
	one.Apply(logs[0])
	one.Apply(logs[1])
	live.ApplyBatch(logs)
	if !bytes.Equal(stateBytes(t, live.State()), stateBytes(t, one.State())) {
		t.Fatal("the expiry of a lease holding 700 locks and keys differs from one by one")
	}
	n := 0
	for _, w := range watches {
		if w.changed(live.State()) {
			n++
			if !closed(w.ch) {
				t.Fatalf("%s changed but its watch did not fire", w.what)
			}
		}
	}
	if n < 702 {
		t.Fatalf("only %d watched things changed", n)
	}
}
