package fsm_test

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/coordd/coordd/fsm"
)

// model is a plain-map reference implementation of the documented KV and
// member semantics, checked against the FSM step by step.
type model struct {
	index, term uint64
	kv          map[string]fsm.KVEntry
	delIndex    uint64
	members     map[string]fsm.Member
}

func newModel() *model {
	return &model{kv: map[string]fsm.KVEntry{}, members: map[string]fsm.Member{}}
}

func (m *model) clone() *model {
	c := *m
	c.kv = maps.Clone(m.kv)
	c.members = maps.Clone(m.members)
	return &c
}

// expected is what a command must produce.
type expected struct {
	entry    *fsm.KVEntry
	prev     *fsm.KVEntry
	deleted  int
	conflict *fsm.CASConflictError
	errIs    error
}

var modelKeys = []string{"", "a", "ab", "abc", "abd", "b", "ba", "x/1", "x/2", "x/10", "x/1/y", "y"}
var modelPrefixes = []string{"", "a", "ab", "x/", "x/1", "b", "z", "abc/"}
var modelMembers = []string{"n1", "n2", "n3"}

// op is one random command with enough structure for the model.
type op struct {
	cmd fsm.Command
	do  func(m *model, index uint64) expected
}

func randomOp(rng *rand.Rand, m *model) op {
	key := modelKeys[rng.IntN(len(modelKeys))]
	value := []byte(fmt.Sprintf("v%d", rng.IntN(1000)))
	// A CAS index that is right about half the time.
	cas := rng.Uint64N(m.index + 2)
	if e, ok := m.kv[key]; ok && rng.IntN(2) == 0 {
		cas = e.ModifyIndex
	}
	var o op
	switch r := rng.IntN(100); {
	case r < 35:
		o.cmd = cmdOf(fsm.KVPut{Key: key, Value: value})
		o.do = func(m *model, idx uint64) expected { return m.put(key, value, idx) }
	case r < 45:
		o.cmd = cmdOf(fsm.KVPut{Key: key, Value: value, Mode: fsm.PutCreate})
		o.do = func(m *model, idx uint64) expected {
			if e, ok := m.kv[key]; ok {
				return expected{conflict: &fsm.CASConflictError{Key: key, CurrentIndex: e.ModifyIndex}}
			}
			return m.put(key, value, idx)
		}
	case r < 55:
		o.cmd = cmdOf(fsm.KVPut{Key: key, Value: value, Mode: fsm.PutCAS, CASIndex: cas})
		o.do = func(m *model, idx uint64) expected {
			if e, ok := m.kv[key]; !ok || e.ModifyIndex != cas {
				return expected{conflict: &fsm.CASConflictError{Key: key, CurrentIndex: e.ModifyIndex}}
			}
			return m.put(key, value, idx)
		}
	case r < 70:
		o.cmd = cmdOf(fsm.KVDelete{Key: key})
		o.do = func(m *model, idx uint64) expected {
			if _, ok := m.kv[key]; !ok {
				return expected{errIs: fsm.ErrKeyNotFound}
			}
			return m.delete(key, idx)
		}
	case r < 78:
		o.cmd = cmdOf(fsm.KVDelete{Key: key, CAS: true, CASIndex: cas})
		o.do = func(m *model, idx uint64) expected {
			if e, ok := m.kv[key]; !ok || e.ModifyIndex != cas {
				return expected{conflict: &fsm.CASConflictError{Key: key, CurrentIndex: e.ModifyIndex}}
			}
			return m.delete(key, idx)
		}
	case r < 86:
		prefix := modelPrefixes[rng.IntN(len(modelPrefixes))]
		o.cmd = cmdOf(fsm.KVDelete{Key: prefix, Prefix: true, CAS: rng.IntN(2) == 0, CASIndex: cas})
		o.do = func(m *model, idx uint64) expected {
			n := 0
			for k := range m.kv {
				if strings.HasPrefix(k, prefix) {
					delete(m.kv, k)
					n++
				}
			}
			if n > 0 {
				m.delIndex = idx
			}
			return expected{deleted: n}
		}
	case r < 93:
		mem := fsm.Member{ID: modelMembers[rng.IntN(len(modelMembers))], RaftAddr: string(value), HTTPAddr: key}
		o.cmd = cmdOf(fsm.MemberSet{mem})
		o.do = func(m *model, idx uint64) expected { m.members[mem.ID] = mem; return expected{} }
	default:
		id := modelMembers[rng.IntN(len(modelMembers))]
		o.cmd = cmdOf(fsm.MemberRemove{ID: id})
		o.do = func(m *model, idx uint64) expected {
			if _, ok := m.members[id]; !ok {
				return expected{errIs: fsm.ErrMemberNotFound}
			}
			delete(m.members, id)
			return expected{}
		}
	}
	o.cmd.Stamp = rng.Int64()
	if rng.IntN(3) == 0 {
		// Unique keys: de-duplication has tests of its own (dedup_test.go).
		o.cmd.IdempotencyKey = fmt.Sprintf("req-%d", rng.Uint64())
	}
	return o
}

func (m *model) put(key string, value []byte, idx uint64) expected {
	e := fsm.KVEntry{Key: key, Value: value, CreateIndex: idx, ModifyIndex: idx, Version: 1}
	if cur, ok := m.kv[key]; ok {
		e.CreateIndex, e.Version = cur.CreateIndex, cur.Version+1
	}
	m.kv[key] = e
	return expected{entry: &e}
}

func (m *model) delete(key string, idx uint64) expected {
	prev := m.kv[key]
	delete(m.kv, key)
	m.delIndex = idx
	return expected{prev: &prev, deleted: 1}
}

func sameEntry(a *fsm.KVEntry, b *fsm.KVEntry) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Key == b.Key && bytes.Equal(a.Value, b.Value) && a.CreateIndex == b.CreateIndex &&
		a.ModifyIndex == b.ModifyIndex && a.Version == b.Version
}

func checkResult(t *testing.T, step int, res *fsm.Result, want expected) {
	t.Helper()
	if !sameEntry(res.Entry, want.entry) || !sameEntry(res.Prev, want.prev) || res.Deleted != want.deleted {
		t.Fatalf("step %d: result entry %s prev %s deleted %d; want %s %s %d", step,
			entryString(res.Entry), entryString(res.Prev), res.Deleted, entryString(want.entry), entryString(want.prev), want.deleted)
	}
	switch {
	case want.conflict != nil:
		var ce *fsm.CASConflictError
		if !errors.As(res.Err, &ce) || *ce != *want.conflict {
			t.Fatalf("step %d: Err = %v, want conflict %+v", step, res.Err, *want.conflict)
		}
	case want.errIs != nil:
		if !errors.Is(res.Err, want.errIs) {
			t.Fatalf("step %d: Err = %v, want %v", step, res.Err, want.errIs)
		}
	default:
		if res.Err != nil {
			t.Fatalf("step %d: Err = %v", step, res.Err)
		}
	}
}

// checkState compares every observable of s with m.
func checkState(t *testing.T, what string, s *fsm.State, m *model) {
	t.Helper()
	if s.Index() != m.index || s.Term() != m.term {
		t.Fatalf("%s: index/term %d/%d, want %d/%d", what, s.Index(), s.Term(), m.index, m.term)
	}
	if s.KVLen() != len(m.kv) {
		t.Fatalf("%s: KVLen %d, want %d", what, s.KVLen(), len(m.kv))
	}
	for _, k := range modelKeys {
		want, wantOK := m.kv[k]
		got, ok := s.Get(k)
		if ok != wantOK || (ok && !sameEntry(got, &want)) {
			t.Fatalf("%s: Get(%q) = %s %v, want %s %v", what, k, entryString(got), ok, entryString(&want), wantOK)
		}
		wantIdx := max(m.delIndex, 1)
		if wantOK {
			wantIdx = max(want.ModifyIndex, 1)
		}
		if e, idx, _ := s.WatchKey(k); idx != wantIdx || (e != nil) != wantOK {
			t.Fatalf("%s: WatchKey(%q) = %s %d, want index %d", what, k, entryString(e), idx, wantIdx)
		}
	}
	for _, p := range modelPrefixes {
		var wantKeys []string
		wantIdx := max(m.delIndex, 1)
		for _, k := range slices.Sorted(maps.Keys(m.kv)) {
			if strings.HasPrefix(k, p) {
				wantKeys = append(wantKeys, k)
				wantIdx = max(wantIdx, m.kv[k].ModifyIndex)
			}
		}
		es, idx, _ := s.WatchPrefix(p, 0)
		var keys []string
		for _, e := range es {
			keys = append(keys, e.Key)
			if want := m.kv[e.Key]; !sameEntry(e, &want) {
				t.Fatalf("%s: WatchPrefix(%q) entry %s, want %s", what, p, entryString(e), entryString(&want))
			}
		}
		if !slices.Equal(keys, wantKeys) || idx != wantIdx {
			t.Fatalf("%s: WatchPrefix(%q) = %q %d, want %q %d", what, p, keys, idx, wantKeys, wantIdx)
		}
	}
	var wantMembers []fsm.Member
	for _, id := range slices.Sorted(maps.Keys(m.members)) {
		wantMembers = append(wantMembers, m.members[id])
	}
	if got := s.Members(); !slices.Equal(got, wantMembers) && !(len(got) == 0 && len(wantMembers) == 0) {
		t.Fatalf("%s: Members %+v, want %+v", what, got, wantMembers)
	}
}

// TestStateMatchesAReferenceModel applies random commands and checks every
// result and every observable against a map-based model. It also keeps old
// States and checks at the end that later applies left them untouched, and
// round-trips some states through WriteState/ReadState.
func TestStateMatchesAReferenceModel(t *testing.T) {
	t.Parallel()
	for seed := range uint64(4) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, 99))
			f := fsm.New()
			m := newModel()
			type kept struct {
				step  int
				state *fsm.State
				model *model
				bytes []byte
			}
			var old []kept
			index, term := uint64(0), uint64(1)
			for step := range 1500 {
				index += 1 + rng.Uint64N(3)
				if rng.IntN(50) == 0 {
					term++
				}
				o := randomOp(rng, m)
				res, ok := f.Apply(&raft.Log{Index: index, Term: term, Data: o.cmd.Encode()}).(*fsm.Result)
				if !ok || res.Index != index {
					t.Fatalf("step %d: Apply returned %#v", step, res)
				}
				m.index, m.term = index, term
				checkResult(t, step, res, o.do(m, index))
				s := f.State()
				checkState(t, fmt.Sprint("step ", step), s, m)
				if step%25 == 0 {
					old = append(old, kept{step, s, m.clone(), stateBytes(t, s)})
				}
				if step%100 == 0 {
					restored, err := fsm.ReadState(bytes.NewReader(stateBytes(t, s)))
					if err != nil {
						t.Fatalf("step %d: ReadState: %v", step, err)
					}
					checkState(t, fmt.Sprint("restored at step ", step), restored, m)
				}
			}
			for _, k := range old {
				checkState(t, fmt.Sprint("state kept from step ", k.step), k.state, k.model)
				if !bytes.Equal(stateBytes(t, k.state), k.bytes) {
					t.Fatalf("state kept from step %d serialises differently now", k.step)
				}
			}
		})
	}
}

func TestAStateTakenBeforeAnApplyIsUnchangedAfterIt(t *testing.T) {
	t.Parallel()
	cmds := []fsm.Command{
		put("a", "2"), putCreate("new", "x"), putCAS("a", "3", 2), del("b"), delCAS("c", 3),
		delPrefix("d/"), delPrefix(""), cmdOf(fsm.MemberSet{fsm.Member{ID: "n9"}}), cmdOf(fsm.MemberRemove{ID: "n1"}),
	}
	for _, cmd := range cmds {
		t.Run(fmt.Sprintf("%s %x", cmd.Type, cmd.Payload), func(t *testing.T) {
			t.Parallel()
			f := fsm.New()
			for i, c := range []fsm.Command{put("a", "1"), put("b", "1"), put("c", "1"), put("d/1", "1"), put("d/2", "1"),
				cmdOf(fsm.MemberSet{fsm.Member{ID: "n1", RaftAddr: "r"}})} {
				applyTo(t, f, uint64(i+1), c)
			}
			before := f.State()
			beforeBytes := stateBytes(t, before)
			a, _ := before.Get("a")
			aCopy := *a
			aValue := string(a.Value)
			lenBefore, idxBefore := before.KVLen(), before.Index()
			applyTo(t, f, 10, cmd)
			if f.State() == before {
				t.Fatal("Apply did not publish a new State")
			}
			if before.KVLen() != lenBefore || before.Index() != idxBefore {
				t.Fatalf("old state now has len %d index %d, want %d %d", before.KVLen(), before.Index(), lenBefore, idxBefore)
			}
			if a2, _ := before.Get("a"); a2 != a || !sameEntry(a2, &aCopy) || string(a2.Value) != aValue {
				t.Fatalf("old entry changed to %s", entryString(a2))
			}
			if !bytes.Equal(stateBytes(t, before), beforeBytes) {
				t.Fatal("old state serialises differently after the apply")
			}
		})
	}
}

// randomLog returns n encoded commands generated against a model, so that
// conditional commands succeed and fail in a realistic mix.
func randomLog(seed uint64, n int) []*raft.Log {
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	m := newModel()
	logs := make([]*raft.Log, n)
	index, term := uint64(0), uint64(1)
	for i := range logs {
		index += 1 + rng.Uint64N(2)
		if rng.IntN(40) == 0 {
			term++
		}
		o := randomOp(rng, m)
		m.index, m.term = index, term
		o.do(m, index)
		logs[i] = &raft.Log{Index: index, Term: term, Type: raft.LogCommand, Data: o.cmd.Encode()}
	}
	return logs
}

func resultString(r *fsm.Result) string {
	errStr := "<nil>"
	if r.Err != nil {
		errStr = r.Err.Error()
	}
	return fmt.Sprintf("%d %s %s %d %s", r.Index, entryString(r.Entry), entryString(r.Prev), r.Deleted, errStr)
}

func TestReplicasApplyingTheSameLogReachTheSameState(t *testing.T) {
	t.Parallel()
	for seed := range uint64(5) {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			t.Parallel()
			logs := randomLog(seed, 2000)
			a, b := fsm.New(), fsm.New()
			for i, l := range logs {
				// Each replica gets its own copy of the entry, as it
				// would after reading it from its own log store.
				la, lb := *l, *l
				la.Data, lb.Data = bytes.Clone(l.Data), bytes.Clone(l.Data)
				ra := resultString(a.Apply(&la).(*fsm.Result))
				rb := resultString(b.Apply(&lb).(*fsm.Result))
				if ra != rb {
					t.Fatalf("entry %d: results differ:\n%s\n%s", i, ra, rb)
				}
			}
			sa, sb := stateBytes(t, a.State()), stateBytes(t, b.State())
			if !bytes.Equal(sa, sb) {
				t.Fatal("replicas diverged")
			}
			// A third replica that installs a snapshot half way and
			// replays the rest of the log must agree too.
			c := fsm.New()
			half := len(logs) / 2
			for _, l := range logs[:half] {
				c.Apply(l)
			}
			snap := persist(t, c)
			d := fsm.New()
			if err := d.Restore(newRC(snap)); err != nil {
				t.Fatal(err)
			}
			for _, l := range logs[half:] {
				d.Apply(l)
			}
			if !bytes.Equal(stateBytes(t, d.State()), sa) {
				t.Fatal("a replica restored from a snapshot diverged")
			}
		})
	}
}
