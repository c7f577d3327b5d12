package fsm_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/coordd/coordd/fsm"
)

func checkEntry(t *testing.T, got *fsm.KVEntry, want fsm.KVEntry) {
	t.Helper()
	if got == nil {
		t.Fatalf("entry is nil, want %s", entryString(&want))
	}
	if got.Key != want.Key || string(got.Value) != string(want.Value) || got.CreateIndex != want.CreateIndex ||
		got.ModifyIndex != want.ModifyIndex || got.Version != want.Version {
		t.Fatalf("entry = %s, want %s", entryString(got), entryString(&want))
	}
}

func checkConflict(t *testing.T, err error, key string, current uint64) {
	t.Helper()
	if !errors.Is(err, fsm.ErrCASConflict) {
		t.Fatalf("err = %v, want ErrCASConflict", err)
	}
	var ce *fsm.CASConflictError
	if !errors.As(err, &ce) {
		t.Fatalf("err = %T, want *CASConflictError", err)
	}
	if ce.Key != key || ce.CurrentIndex != current {
		t.Fatalf("conflict = %+v, want key %q current index %d", ce, key, current)
	}
	if ce.Error() == "" {
		t.Fatal("empty error message")
	}
}

func TestPutOfANewKeyCreatesItAtTheEntrysIndex(t *testing.T) {
	t.Parallel()
	s0 := fsm.New().State()
	s, res := fsm.ApplyCommand(s0, 7, 3, put("a", "1"))
	if res.Err != nil || res.Index != 7 || res.Deleted != 0 || res.Prev != nil {
		t.Fatalf("result = %+v", res)
	}
	want := fsm.KVEntry{Key: "a", Value: []byte("1"), CreateIndex: 7, ModifyIndex: 7, Version: 1}
	checkEntry(t, res.Entry, want)
	got, ok := s.Get("a")
	if !ok {
		t.Fatal("key missing after put")
	}
	checkEntry(t, got, want)
	if s.Index() != 7 || s.Term() != 3 || s.KVLen() != 1 {
		t.Fatalf("state index %d term %d len %d, want 7 3 1", s.Index(), s.Term(), s.KVLen())
	}
}

func TestOverwritingAKeyBumpsVersionAndModifyIndexButKeepsCreateIndex(t *testing.T) {
	t.Parallel()
	s := fsm.New().State()
	s, _ = fsm.ApplyCommand(s, 1, 1, put("a", "1"))
	s, _ = fsm.ApplyCommand(s, 5, 1, put("a", "2"))
	s, res := fsm.ApplyCommand(s, 9, 2, put("a", "3"))
	want := fsm.KVEntry{Key: "a", Value: []byte("3"), CreateIndex: 1, ModifyIndex: 9, Version: 3}
	checkEntry(t, res.Entry, want)
	got, _ := s.Get("a")
	checkEntry(t, got, want)
	if s.KVLen() != 1 {
		t.Fatalf("KVLen = %d, want 1", s.KVLen())
	}
}

func TestAKeyRecreatedAfterADeleteStartsAgainAtVersionOne(t *testing.T) {
	t.Parallel()
	s := buildState(t, put("a", "1"), put("a", "2"), del("a"), put("a", "3"))
	got, _ := s.Get("a")
	checkEntry(t, got, fsm.KVEntry{Key: "a", Value: []byte("3"), CreateIndex: 4, ModifyIndex: 4, Version: 1})
}

func TestConditionalPuts(t *testing.T) {
	t.Parallel()
	// base: "a" created at 1 and modified at 2; "b" created at 3.
	base := func() *fsm.State { return buildState(t, put("a", "1"), put("a", "2"), put("b", "x")) }
	tests := []struct {
		name      string
		cmd       fsm.Command
		wantEntry *fsm.KVEntry // nil when the put must fail
		conflict  uint64       // CurrentIndex of the expected conflict
	}{
		{"create of a missing key writes it", putCreate("c", "new"),
			&fsm.KVEntry{Key: "c", Value: []byte("new"), CreateIndex: 10, ModifyIndex: 10, Version: 1}, 0},
		{"create of an existing key conflicts with its modify index", putCreate("a", "new"), nil, 2},
		{"create of a key created once and never modified reports its create index", putCreate("b", "new"), nil, 3},
		{"CAS with the current modify index writes", putCAS("a", "new", 2),
			&fsm.KVEntry{Key: "a", Value: []byte("new"), CreateIndex: 1, ModifyIndex: 10, Version: 3}, 0},
		{"CAS with the create index of a modified key conflicts", putCAS("a", "new", 1), nil, 2},
		{"CAS with a future index conflicts", putCAS("a", "new", 99), nil, 2},
		{"CAS with index 0 on an existing key conflicts", putCAS("a", "new", 0), nil, 2},
		{"CAS on a missing key conflicts with current index 0", putCAS("zz", "new", 2), nil, 0},
		{"CAS with index 0 on a missing key conflicts rather than creating", putCAS("zz", "new", 0), nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s0 := base()
			before := stateBytes(t, s0)
			s, res := fsm.ApplyCommand(s0, 10, 2, tt.cmd)
			if s.Index() != 10 {
				t.Fatalf("state index = %d, want 10 even when the put fails", s.Index())
			}
			if tt.wantEntry != nil {
				if res.Err != nil {
					t.Fatalf("Err = %v", res.Err)
				}
				checkEntry(t, res.Entry, *tt.wantEntry)
				got, _ := s.Get(tt.wantEntry.Key)
				checkEntry(t, got, *tt.wantEntry)
				return
			}
			if res.Entry != nil {
				t.Fatalf("failed put returned entry %s", entryString(res.Entry))
			}
			var ce *fsm.CASConflictError
			if !errors.As(res.Err, &ce) {
				t.Fatalf("Err = %v, want a *CASConflictError", res.Err)
			}
			checkConflict(t, res.Err, ce.Key, tt.conflict)
			// Nothing but the applied index changed.
			if s0.KVLen() != s.KVLen() {
				t.Fatalf("KVLen changed from %d to %d", s0.KVLen(), s.KVLen())
			}
			for _, k := range []string{"a", "b", "zz"} {
				e0, ok0 := s0.Get(k)
				e1, ok1 := s.Get(k)
				if ok0 != ok1 || e0 != e1 {
					t.Fatalf("key %q changed from %s to %s", k, entryString(e0), entryString(e1))
				}
			}
			if after := stateBytes(t, s0); string(after) != string(before) {
				t.Fatal("the base state changed")
			}
		})
	}
}

func TestDeletes(t *testing.T) {
	t.Parallel()
	// base: "a" created at 1, modified at 2; "b" at 3.
	base := func() *fsm.State { return buildState(t, put("a", "1"), put("a", "2"), put("b", "x")) }
	t.Run("delete of an existing key returns it and removes it", func(t *testing.T) {
		t.Parallel()
		s, res := fsm.ApplyCommand(base(), 10, 1, del("a"))
		if res.Err != nil || res.Deleted != 1 || res.Entry != nil {
			t.Fatalf("result = %+v", res)
		}
		checkEntry(t, res.Prev, fsm.KVEntry{Key: "a", Value: []byte("2"), CreateIndex: 1, ModifyIndex: 2, Version: 2})
		if _, ok := s.Get("a"); ok || s.KVLen() != 1 {
			t.Fatalf("key still present or KVLen %d != 1", s.KVLen())
		}
	})
	t.Run("delete of a missing key fails with ErrKeyNotFound", func(t *testing.T) {
		t.Parallel()
		s, res := fsm.ApplyCommand(base(), 10, 1, del("nope"))
		if !errors.Is(res.Err, fsm.ErrKeyNotFound) || res.Deleted != 0 || res.Prev != nil {
			t.Fatalf("result = %+v, want ErrKeyNotFound and nothing deleted", res)
		}
		if s.KVLen() != 2 {
			t.Fatalf("KVLen = %d, want 2", s.KVLen())
		}
	})
	t.Run("delete of a key that only prefixes others fails with ErrKeyNotFound", func(t *testing.T) {
		t.Parallel()
		s, res := fsm.ApplyCommand(buildState(t, put("ab", "1")), 10, 1, del("a"))
		if !errors.Is(res.Err, fsm.ErrKeyNotFound) || s.KVLen() != 1 {
			t.Fatalf("result = %+v, len %d", res, s.KVLen())
		}
	})
	t.Run("CAS delete with the modify index deletes", func(t *testing.T) {
		t.Parallel()
		s, res := fsm.ApplyCommand(base(), 10, 1, delCAS("a", 2))
		if res.Err != nil || res.Deleted != 1 || res.Prev == nil {
			t.Fatalf("result = %+v", res)
		}
		if _, ok := s.Get("a"); ok {
			t.Fatal("key still present")
		}
	})
	t.Run("CAS delete with another index conflicts and keeps the key", func(t *testing.T) {
		t.Parallel()
		s, res := fsm.ApplyCommand(base(), 10, 1, delCAS("a", 1))
		checkConflict(t, res.Err, "a", 2)
		if res.Deleted != 0 || res.Prev != nil {
			t.Fatalf("result = %+v", res)
		}
		if _, ok := s.Get("a"); !ok {
			t.Fatal("key deleted despite the conflict")
		}
	})
	t.Run("CAS delete of a missing key conflicts with current index 0", func(t *testing.T) {
		t.Parallel()
		_, res := fsm.ApplyCommand(base(), 10, 1, delCAS("nope", 0))
		checkConflict(t, res.Err, "nope", 0)
	})
}

func TestPrefixDeletes(t *testing.T) {
	t.Parallel()
	keys := []string{"a", "a/1", "a/2", "a/2/x", "ab", "b", "b/1", ""}
	base := func() *fsm.State {
		cmds := make([]fsm.Command, len(keys))
		for i, k := range keys {
			cmds[i] = put(k, "v")
		}
		return buildState(t, cmds...)
	}
	tests := []struct {
		name   string
		cmd    fsm.Command
		remain []string
	}{
		{"a directory prefix removes only the keys under it", delPrefix("a/"), []string{"", "a", "ab", "b", "b/1"}},
		{"a bare prefix removes every key that starts with it", delPrefix("a"), []string{"", "b", "b/1"}},
		{"a prefix equal to one key removes it and its extensions", delPrefix("a/2"), []string{"", "a", "a/1", "ab", "b", "b/1"}},
		{"a prefix inside an edge removes the keys under it", delPrefix("a/2/"), []string{"", "a", "a/1", "a/2", "ab", "b", "b/1"}},
		{"the empty prefix removes everything", delPrefix(""), nil},
		{"a prefix matching nothing removes nothing", delPrefix("zzz"), keys},
		{"a prefix longer than every key removes nothing", delPrefix("a/2/xyz"), keys},
		{"a prefix delete ignores its CAS fields", cmdOf(fsm.KVDelete{Key: "b", Prefix: true, CAS: true, CASIndex: 12345}), []string{"", "a", "a/1", "a/2", "a/2/x", "ab"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s0 := base()
			s, res := fsm.ApplyCommand(s0, 20, 1, tt.cmd)
			if res.Err != nil || res.Prev != nil || res.Entry != nil {
				t.Fatalf("result = %+v", res)
			}
			if want := len(keys) - len(tt.remain); res.Deleted != want {
				t.Fatalf("Deleted = %d, want %d", res.Deleted, want)
			}
			if s.KVLen() != len(tt.remain) {
				t.Fatalf("KVLen = %d, want %d", s.KVLen(), len(tt.remain))
			}
			var got []string
			for _, k := range keys {
				if _, ok := s.Get(k); ok {
					got = append(got, k)
				}
			}
			slices.Sort(got)
			want := slices.Clone(tt.remain)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("remaining keys %q, want %q", got, want)
			}
			if s0.KVLen() != len(keys) {
				t.Fatalf("base state lost keys: %d", s0.KVLen())
			}
		})
	}
}

func TestEmptyAndBinaryKeysAreOrdinaryKeys(t *testing.T) {
	t.Parallel()
	keys := []string{"", "\x00", "\x00\x00", "\xff\xfe", "a\x00b"}
	s := fsm.New().State()
	for i, k := range keys {
		var res *fsm.Result
		s, res = fsm.ApplyCommand(s, uint64(i+1), 1, put(k, k+"!"))
		if res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	if s.KVLen() != len(keys) {
		t.Fatalf("KVLen = %d, want %d", s.KVLen(), len(keys))
	}
	for i, k := range keys {
		e, ok := s.Get(k)
		if !ok {
			t.Fatalf("key %q missing", k)
		}
		checkEntry(t, e, fsm.KVEntry{Key: k, Value: []byte(k + "!"), CreateIndex: uint64(i + 1), ModifyIndex: uint64(i + 1), Version: 1})
	}
}

func TestStoredValuesDoNotAliasTheCommand(t *testing.T) {
	t.Parallel()
	cmd := put("k", "value")
	s, res := fsm.ApplyCommand(fsm.New().State(), 1, 1, cmd)
	for i := range cmd.Payload {
		cmd.Payload[i] = 'X'
	}
	e, _ := s.Get("k")
	if string(e.Value) != "value" || string(res.Entry.Value) != "value" {
		t.Fatalf("stored value changed with the command's payload: %q", e.Value)
	}
}

func TestMembers(t *testing.T) {
	t.Parallel()
	n1 := fsm.Member{ID: "n1", RaftAddr: "10.0.0.1:7000", HTTPAddr: "10.0.0.1:8000"}
	n2 := fsm.Member{ID: "n2", RaftAddr: "10.0.0.2:7000", HTTPAddr: "10.0.0.2:8000"}
	n0 := fsm.Member{ID: "n0", RaftAddr: "10.0.0.9:7000"}
	s := buildState(t, cmdOf(fsm.MemberSet{n2}), cmdOf(fsm.MemberSet{n1}), cmdOf(fsm.MemberSet{n0}))
	if got := s.Members(); !slices.Equal(got, []fsm.Member{n0, n1, n2}) {
		t.Fatalf("Members = %+v, want sorted by id", got)
	}
	n1b := n1
	n1b.HTTPAddr = "10.0.0.1:9000"
	s, res := fsm.ApplyCommand(s, 10, 1, cmdOf(fsm.MemberSet{n1b}))
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if m, ok := s.Member("n1"); !ok || m != n1b {
		t.Fatalf("Member(n1) = %+v, %v; want the replacement", m, ok)
	}
	s, res = fsm.ApplyCommand(s, 11, 1, cmdOf(fsm.MemberRemove{ID: "n0"}))
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if _, ok := s.Member("n0"); ok {
		t.Fatal("removed member still present")
	}
	s, res = fsm.ApplyCommand(s, 12, 1, cmdOf(fsm.MemberRemove{ID: "n0"}))
	if !errors.Is(res.Err, fsm.ErrMemberNotFound) {
		t.Fatalf("second remove: %v, want ErrMemberNotFound", res.Err)
	}
	if got := s.Members(); !slices.Equal(got, []fsm.Member{n1b, n2}) {
		t.Fatalf("Members = %+v", got)
	}
	if s.KVLen() != 0 {
		t.Fatal("member commands touched the KV store")
	}
	if got := fsm.New().State().Members(); got == nil || len(got) != 0 {
		t.Fatalf("Members of an empty state = %#v, want an empty non-nil slice", got)
	}
}

func TestErrorMessagesNameTheKey(t *testing.T) {
	t.Parallel()
	for _, e := range []*fsm.CASConflictError{{Key: "k1"}, {Key: "k1", CurrentIndex: 42}} {
		if msg := e.Error(); !strings.Contains(msg, `"k1"`) {
			t.Errorf("%q does not name the key", msg)
		}
	}
	if msg := (&fsm.CASConflictError{Key: "k", CurrentIndex: 42}).Error(); !strings.Contains(msg, "42") {
		t.Errorf("%q does not give the current index", msg)
	}
	if errors.Is(&fsm.CASConflictError{}, fsm.ErrKeyNotFound) {
		t.Error("a CAS conflict matches ErrKeyNotFound")
	}
}
