package fsm_test

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/coordd/coordd/fsm"
)

func txnCmd(p fsm.Txn) fsm.Command { return cmdOf(p) }

func cmp(t fsm.CompareTarget, key string, op fsm.CompareOp, n uint64) fsm.TxnCompare {
	return fsm.TxnCompare{Target: t, Key: key, Op: op, Number: n}
}

func opPut(k, v string) fsm.TxnOp { return fsm.TxnOp{Kind: fsm.TxnPut, Key: k, Value: []byte(v)} }
func opGet(k string) fsm.TxnOp    { return fsm.TxnOp{Kind: fsm.TxnGet, Key: k} }
func opDel(k string) fsm.TxnOp    { return fsm.TxnOp{Kind: fsm.TxnDelete, Key: k} }

// txnBase: a=1 (index 1), b=2 (2, then rewritten at 3: version 2), lease
// 4, lock "l" held by lease 4 with token 5.
func txnBase(t *testing.T) *fsm.State {
	return buildState(t,
		put("a", "1"), put("b", "x"), put("b", "2"),
		cmdOf(fsm.LeaseGrant{TTL: 1000}),
		cmdOf(fsm.Campaign{Kind: fsm.KindLock, Name: "l", Lease: 4, Limit: 1}))
}

func TestTxn_EveryCompareChoosesTheBranch(t *testing.T) {
	s := txnBase(t)
	cases := []struct {
		c    fsm.TxnCompare
		want bool
		cur  uint64
	}{
		{fsm.TxnCompare{Target: fsm.CompareExists, Key: "a"}, true, 0},
		{fsm.TxnCompare{Target: fsm.CompareExists, Key: "zz"}, false, 0},
		{fsm.TxnCompare{Target: fsm.CompareAbsent, Key: "zz"}, true, 0},
		{fsm.TxnCompare{Target: fsm.CompareAbsent, Key: "a"}, false, 0},
		{cmp(fsm.CompareModifyIndex, "b", fsm.OpEqual, 3), true, 3},
		{cmp(fsm.CompareModifyIndex, "b", fsm.OpEqual, 2), false, 3},
		{cmp(fsm.CompareModifyIndex, "b", fsm.OpNotEqual, 2), true, 3},
		{cmp(fsm.CompareModifyIndex, "b", fsm.OpLess, 4), true, 3},
		{cmp(fsm.CompareModifyIndex, "b", fsm.OpLess, 3), false, 3},
		{cmp(fsm.CompareModifyIndex, "b", fsm.OpGreater, 2), true, 3},
		{cmp(fsm.CompareModifyIndex, "b", fsm.OpGreater, 3), false, 3},
		{cmp(fsm.CompareCreateIndex, "b", fsm.OpEqual, 2), true, 2},
		{cmp(fsm.CompareVersion, "b", fsm.OpEqual, 2), true, 2},
		{cmp(fsm.CompareVersion, "zz", fsm.OpEqual, 0), true, 0}, // a missing key is version 0
		{cmp(fsm.CompareModifyIndex, "zz", fsm.OpLess, 1), true, 0},
		{fsm.TxnCompare{Target: fsm.CompareValue, Key: "a", Op: fsm.OpEqual, Value: []byte("1")}, true, 0},
		{fsm.TxnCompare{Target: fsm.CompareValue, Key: "a", Op: fsm.OpEqual, Value: []byte("2")}, false, 0},
		{fsm.TxnCompare{Target: fsm.CompareValue, Key: "a", Op: fsm.OpNotEqual, Value: []byte("2")}, true, 0},
		{fsm.TxnCompare{Target: fsm.CompareValue, Key: "zz", Op: fsm.OpNotEqual, Value: []byte("2")}, false, 0},
		{fsm.TxnCompare{Target: fsm.CompareLeaseAlive, Number: 4}, true, 0},
		{fsm.TxnCompare{Target: fsm.CompareLeaseAlive, Number: 99}, false, 0},
		{fsm.TxnCompare{Target: fsm.CompareFence, Key: "l", Number: 5}, true, 5},
		{fsm.TxnCompare{Target: fsm.CompareFence, Key: "l", Number: 4}, false, 5},
		{fsm.TxnCompare{Target: fsm.CompareFence, Key: "nobody", Number: 5}, false, 0},
	}
	for i, c := range cases {
		t.Run(fmt.Sprintf("%d_%s_%s", i, c.c.Target, c.c.Op), func(t *testing.T) {
			txn := fsm.Txn{Compares: []fsm.TxnCompare{{Target: fsm.CompareExists, Key: "a"}, c.c},
				Then: []fsm.TxnOp{opPut("then", "t")}, Else: []fsm.TxnOp{opPut("else", "e")}}
			next, res := fsm.ApplyCommand(s, 10, 1, txnCmd(txn))
			if res.Err != nil || res.Txn == nil {
				t.Fatalf("result %+v", res)
			}
			if res.Txn.Succeeded != c.want {
				t.Fatalf("succeeded = %v, want %v", res.Txn.Succeeded, c.want)
			}
			_, thenRan := next.Get("then")
			_, elseRan := next.Get("else")
			if thenRan != c.want || elseRan == c.want {
				t.Fatalf("then ran %v, else ran %v; want then %v", thenRan, elseRan, c.want)
			}
			if !c.want && (res.Txn.Failed != 1 || res.Txn.Current != c.cur) {
				t.Fatalf("failed compare %d current %d, want 1 and %d", res.Txn.Failed, res.Txn.Current, c.cur)
			}
		})
	}
}

func TestTxn_OpsApplyInOrderInOneEntry(t *testing.T) {
	s := buildState(t, put("p/1", "x"), put("p/2", "y"), put("q", "z"))
	txn := fsm.Txn{Then: []fsm.TxnOp{
		opPut("a", "1"), opGet("a"), opPut("a", "2"), opGet("a"),
		{Kind: fsm.TxnDeletePrefix, Key: "p/"}, opDel("q"), opDel("missing"), opGet("q"),
	}}
	next, res := fsm.ApplyCommand(s, 7, 1, txnCmd(txn))
	if res.Err != nil || !res.Txn.Succeeded {
		t.Fatalf("result %+v", res)
	}
	got := []string{}
	for _, op := range res.Txn.Ops {
		got = append(got, fmt.Sprintf("%s %s %s %d", op.Kind, entryString(op.Entry), entryString(op.Prev), op.Deleted))
	}
	want := []string{
		`put {"a" "1" c7 m7 v1} <nil> 0`,
		`get {"a" "1" c7 m7 v1} <nil> 0`,
		`put {"a" "2" c7 m7 v2} <nil> 0`,
		`get {"a" "2" c7 m7 v2} <nil> 0`,
		`delete_prefix <nil> <nil> 2`,
		`delete <nil> {"q" "z" c3 m3 v1} 1`,
		`delete <nil> <nil> 0`,
		`get <nil> <nil> 0`,
	}
	if !slices.Equal(got, want) {
		t.Fatalf("ops:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if next.KVLen() != 1 {
		t.Fatalf("%d keys left, want 1 (a)", next.KVLen())
	}
	if _, idx, _ := next.WatchKey("missing"); idx != 7 {
		t.Fatalf("delete index %d, want 7", idx)
	}
}

func TestTxn_PutWithAMissingLease_WritesNothing(t *testing.T) {
	s := txnBase(t)
	before := stateBytes(t, s)
	txn := fsm.Txn{Then: []fsm.TxnOp{opPut("a", "changed"), {Kind: fsm.TxnDelete, Key: "b"}, {Kind: fsm.TxnPut, Key: "c", Lease: 99}}}
	next, res := fsm.ApplyCommand(s, 10, 1, txnCmd(txn))
	if !errors.Is(res.Err, fsm.ErrLeaseNotFound) || res.Txn != nil {
		t.Fatalf("result %+v, want ErrLeaseNotFound and no txn result", res)
	}
	if e, _ := next.Get("a"); string(e.Value) != "1" {
		t.Fatalf("a = %q: the branch was partly applied", e.Value)
	}
	if _, ok := next.Get("b"); !ok {
		t.Fatal("b was deleted: the branch was partly applied")
	}
	if !bytes.Equal(stateBytes(t, s), before) {
		t.Fatal("the state given was changed")
	}
	// With the lease alive, the put attaches the key: revoking the lease
	// deletes it.
	txn.Then[2].Lease = 4
	next, res = fsm.ApplyCommand(s, 10, 1, txnCmd(txn))
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	next, _ = fsm.ApplyCommand(next, 11, 1, cmdOf(fsm.LeaseRevoke{ID: 4}))
	if _, ok := next.Get("c"); ok {
		t.Fatal("key c outlived its lease")
	}
}

func TestTxn_FenceFollowsTheHolder(t *testing.T) {
	s := txnBase(t) // lock l held by lease 4, token 5
	fenced := fsm.Txn{Compares: []fsm.TxnCompare{{Target: fsm.CompareFence, Key: "l", Number: 5}}, Then: []fsm.TxnOp{opPut("cfg", "v1")}}
	s, res := fsm.ApplyCommand(s, 6, 1, txnCmd(fenced))
	if !res.Txn.Succeeded {
		t.Fatal("the holder's token did not pass its fence")
	}
	// The holder resigns; another lease takes the lock (token 9).
	s, _ = fsm.ApplyCommand(s, 7, 1, cmdOf(fsm.Resign{Name: "l", Lease: 4, Token: 5}))
	s, _ = fsm.ApplyCommand(s, 8, 1, cmdOf(fsm.LeaseGrant{TTL: 1000}))
	s, _ = fsm.ApplyCommand(s, 9, 1, cmdOf(fsm.Campaign{Kind: fsm.KindLock, Name: "l", Lease: 8, Limit: 1}))
	fenced.Then[0].Value = []byte("v2")
	s, res = fsm.ApplyCommand(s, 10, 1, txnCmd(fenced))
	if res.Txn.Succeeded || res.Txn.Current != 9 {
		t.Fatalf("a deposed holder's fence: %+v, want failed with current token 9", res.Txn)
	}
	if e, _ := s.Get("cfg"); string(e.Value) != "v1" {
		t.Fatalf("cfg = %q: a deposed holder wrote", e.Value)
	}
}

func TestTxn_InvalidIsRefusedBeforeTheLog(t *testing.T) {
	big := make([]byte, fsm.MaxTxnBytes)
	many := make([]fsm.TxnOp, fsm.MaxTxnOps+1)
	for i := range many {
		many[i] = opGet("k")
	}
	cases := map[string]fsm.Txn{
		"unknown target":       {Compares: []fsm.TxnCompare{{Target: 9, Key: "a"}}},
		"zero target":          {Compares: []fsm.TxnCompare{{Key: "a"}}},
		"exists with op":       {Compares: []fsm.TxnCompare{{Target: fsm.CompareExists, Key: "a", Op: fsm.OpEqual}}},
		"exists without key":   {Compares: []fsm.TxnCompare{{Target: fsm.CompareExists}}},
		"version without op":   {Compares: []fsm.TxnCompare{{Target: fsm.CompareVersion, Key: "a"}}},
		"version bad op":       {Compares: []fsm.TxnCompare{{Target: fsm.CompareVersion, Key: "a", Op: 5}}},
		"version with value":   {Compares: []fsm.TxnCompare{{Target: fsm.CompareVersion, Key: "a", Op: 1, Value: []byte("x")}}},
		"value with <":         {Compares: []fsm.TxnCompare{{Target: fsm.CompareValue, Key: "a", Op: fsm.OpLess}}},
		"value with number":    {Compares: []fsm.TxnCompare{{Target: fsm.CompareValue, Key: "a", Op: fsm.OpEqual, Number: 1}}},
		"lease zero":           {Compares: []fsm.TxnCompare{{Target: fsm.CompareLeaseAlive}}},
		"lease with key":       {Compares: []fsm.TxnCompare{{Target: fsm.CompareLeaseAlive, Key: "a", Number: 1}}},
		"fence token zero":     {Compares: []fsm.TxnCompare{{Target: fsm.CompareFence, Key: "l"}}},
		"fence without name":   {Compares: []fsm.TxnCompare{{Target: fsm.CompareFence, Number: 3}}},
		"unknown op":           {Then: []fsm.TxnOp{{Kind: 7, Key: "a"}}},
		"zero op":              {Then: []fsm.TxnOp{{Key: "a"}}},
		"put without key":      {Then: []fsm.TxnOp{{Kind: fsm.TxnPut}}},
		"get with value":       {Else: []fsm.TxnOp{{Kind: fsm.TxnGet, Key: "a", Value: []byte("x")}}},
		"delete with lease":    {Else: []fsm.TxnOp{{Kind: fsm.TxnDelete, Key: "a", Lease: 3}}},
		"too many ops":         {Then: many},
		"too many bytes":       {Then: []fsm.TxnOp{{Kind: fsm.TxnPut, Key: "a", Value: big}}},
		"delete without a key": {Then: []fsm.TxnOp{{Kind: fsm.TxnDelete}}},
	}
	for name, txn := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := fsm.NewCommand(txn)
			if !errors.Is(err, fsm.ErrInvalid) {
				t.Fatalf("NewCommand: %v, want ErrInvalid", err)
			}
		})
	}
	for _, name := range []string{"too many ops", "too many bytes"} {
		if _, err := fsm.NewCommand(cases[name]); !errors.Is(err, fsm.ErrTxnTooLarge) {
			t.Fatalf("%s: %v, want ErrTxnTooLarge", name, err)
		}
	}
	// The limits themselves pass; a prefix delete of everything is a
	// valid op.
	ok := fsm.Txn{Then: many[:fsm.MaxTxnOps], Else: []fsm.TxnOp{{Kind: fsm.TxnDeletePrefix}}}
	if _, err := fsm.NewCommand(fsm.Txn{Then: ok.Then}); err != nil {
		t.Fatal(err)
	}
	if _, err := fsm.NewCommand(fsm.Txn{Else: ok.Else}); err != nil {
		t.Fatal(err)
	}
}

func TestTxn_DecodeIsTheInverseOfEncode(t *testing.T) {
	for i, p := range txnSeeds() {
		c := cmdOf(p)
		got, err := fsm.DecodePayload(c)
		if err != nil {
			t.Fatalf("seed %d: %v", i, err)
		}
		again := cmdOf(got)
		if !bytes.Equal(again.Payload, c.Payload) {
			t.Fatalf("seed %d: re-encoding differs", i)
		}
		if !reflect.DeepEqual(normTxn(got.(fsm.Txn)), normTxn(p)) {
			t.Fatalf("seed %d: decoded %+v, want %+v", i, got, p)
		}
	}
	// Garbage after the payload, a count larger than the input, and a
	// valid layout with an invalid field are all refused.
	c := cmdOf(txnSeeds()[1])
	for _, bad := range [][]byte{append(slices.Clone(c.Payload), 0), {0xff, 0xff, 0x03}, {1, 9, 1, 'a', 0, 0, 0, 0, 0}} {
		if _, err := fsm.DecodePayload(fsm.Command{Type: fsm.CmdTxn, Version: 1, Payload: bad}); !errors.Is(err, fsm.ErrBadCommand) {
			t.Fatalf("payload %x: %v, want ErrBadCommand", bad, err)
		}
	}
}

// normTxn maps empty byte slices to nil (the decoder makes empty ones).
func normTxn(p fsm.Txn) fsm.Txn {
	n := func(b []byte) []byte {
		if len(b) == 0 {
			return nil
		}
		return b
	}
	for i := range p.Compares {
		p.Compares[i].Value = n(p.Compares[i].Value)
	}
	for _, ops := range [][]fsm.TxnOp{p.Then, p.Else} {
		for i := range ops {
			ops[i].Value = n(ops[i].Value)
		}
	}
	return p
}

// txnSeeds are valid transactions of every compare and op, aimed at
// txnBase and at the fuzz bases (keys a, ab, leased; lease 4; lock l).
func txnSeeds() []fsm.Txn {
	return []fsm.Txn{
		{},
		{Compares: []fsm.TxnCompare{cmp(fsm.CompareModifyIndex, "a", fsm.OpEqual, 1), {Target: fsm.CompareAbsent, Key: "new"}},
			Then: []fsm.TxnOp{opPut("new", "v"), opGet("a")}, Else: []fsm.TxnOp{opGet("new")}},
		{Compares: []fsm.TxnCompare{{Target: fsm.CompareFence, Key: "l", Number: 7}, {Target: fsm.CompareLeaseAlive, Number: 4}},
			Then: []fsm.TxnOp{{Kind: fsm.TxnPut, Key: "leased2", Value: []byte("x"), Lease: 4}, {Kind: fsm.TxnDeletePrefix, Key: "a"}}},
		{Compares: []fsm.TxnCompare{{Target: fsm.CompareValue, Key: "ab", Op: fsm.OpNotEqual, Value: []byte("2")}, cmp(fsm.CompareVersion, "a", fsm.OpGreater, 0),
			cmp(fsm.CompareCreateIndex, "a", fsm.OpLess, 5), {Target: fsm.CompareExists, Key: "leased"}},
			Then: []fsm.TxnOp{opDel("leased")}, Else: []fsm.TxnOp{opDel("a"), {Kind: fsm.TxnPut, Key: "z", Lease: 99}}},
	}
}

func TestTxn_RetryWithTheSameKeyReplaysTheResult(t *testing.T) {
	f := fsm.New()
	applyTo(t, f, 1, put("a", "1"))
	txn := fsm.Txn{Compares: []fsm.TxnCompare{cmp(fsm.CompareModifyIndex, "a", fsm.OpEqual, 1)},
		Then: []fsm.TxnOp{opPut("a", "2"), opGet("a")}}
	c := txnCmd(txn)
	c.IdempotencyKey = "k1"
	first := applyTo(t, f, 2, c)
	if !first.Txn.Succeeded {
		t.Fatalf("first attempt: %+v", first.Txn)
	}
	// Through a snapshot: a node that restored it answers the same.
	restored := fsm.New()
	if err := restored.Restore(newRC(persist(t, f))); err != nil {
		t.Fatal(err)
	}
	for _, g := range []*fsm.FSM{f, restored} {
		again := g.Apply(&raft.Log{Index: 3, Term: 1, Data: c.Encode()}).(*fsm.Result)
		if !again.Duplicate || again.Txn == nil || !again.Txn.Succeeded || len(again.Txn.Ops) != 2 {
			t.Fatalf("retry: %+v %+v, want the first result replayed", again, again.Txn)
		}
		if got := again.Txn.Ops[1].Entry; string(got.Value) != "2" || got.ModifyIndex != 2 {
			t.Fatalf("replayed get %s, want the value read the first time", entryString(got))
		}
		if e, _ := g.State().Get("a"); e.ModifyIndex != 2 {
			t.Fatalf("a modified at %d: the retry was applied again", e.ModifyIndex)
		}
	}
	// The same key for another transaction is refused.
	other := txnCmd(fsm.Txn{Then: []fsm.TxnOp{opPut("b", "x")}})
	other.IdempotencyKey = "k1"
	if res := applyTo(t, f, 4, other); !errors.Is(res.Err, fsm.ErrIdempotencyKeyReused) {
		t.Fatalf("reused key: %v", res.Err)
	}
}

// TestTxn_Property_MatchesASequentialModel applies random transactions
// over a few keys, leases and one lock, and checks every result and the
// final state against a plain map model that evaluates the same rules
// one step at a time.
func TestTxn_Property_MatchesASequentialModel(t *testing.T) {
	type mkv struct {
		val              string
		create, mod, ver uint64
		lease            uint64
	}
	keys := []string{"a", "b", "c", "d/1", "d/2"}
	for seed := range uint64(40) {
		rng := rand.New(rand.NewPCG(seed, 19))
		s := buildState(t, cmdOf(fsm.LeaseGrant{TTL: 1000}), cmdOf(fsm.Campaign{Kind: fsm.KindLock, Name: "l", Lease: 1, Limit: 1}))
		model := map[string]mkv{}
		index := uint64(2)
		for step := 0; step < 150; step++ {
			index++
			var txn fsm.Txn
			for range rng.IntN(3) {
				k := keys[rng.IntN(len(keys))]
				switch rng.IntN(6) {
				case 0:
					txn.Compares = append(txn.Compares, fsm.TxnCompare{Target: fsm.CompareExists, Key: k})
				case 1:
					txn.Compares = append(txn.Compares, fsm.TxnCompare{Target: fsm.CompareAbsent, Key: k})
				case 2:
					txn.Compares = append(txn.Compares, cmp(fsm.CompareTarget(3+rng.IntN(3)), k, fsm.CompareOp(1+rng.IntN(4)), uint64(rng.IntN(int(index)))))
				case 3:
					txn.Compares = append(txn.Compares, fsm.TxnCompare{Target: fsm.CompareValue, Key: k, Op: fsm.CompareOp(1 + rng.IntN(2)), Value: []byte(fmt.Sprint(rng.IntN(3)))})
				case 4:
					txn.Compares = append(txn.Compares, fsm.TxnCompare{Target: fsm.CompareFence, Key: "l", Number: uint64(1 + rng.IntN(3))})
				case 5:
					txn.Compares = append(txn.Compares, fsm.TxnCompare{Target: fsm.CompareLeaseAlive, Number: uint64(1 + rng.IntN(2))})
				}
			}
			branch := func() []fsm.TxnOp {
				var ops []fsm.TxnOp
				for range rng.IntN(4) {
					k := keys[rng.IntN(len(keys))]
					switch rng.IntN(5) {
					case 0, 1:
						ops = append(ops, fsm.TxnOp{Kind: fsm.TxnPut, Key: k, Value: []byte(fmt.Sprint(rng.IntN(3))), Lease: uint64(rng.IntN(3)) / 2})
					case 2:
						ops = append(ops, opDel(k))
					case 3:
						ops = append(ops, fsm.TxnOp{Kind: fsm.TxnDeletePrefix, Key: "d/"})
					case 4:
						ops = append(ops, opGet(k))
					}
				}
				return ops
			}
			txn.Then, txn.Else = branch(), branch()

			// The model.
			holds := func(c fsm.TxnCompare) bool {
				e, ok := model[c.Key]
				switch c.Target {
				case fsm.CompareExists:
					return ok
				case fsm.CompareAbsent:
					return !ok
				case fsm.CompareValue:
					return ok && (e.val == string(c.Value)) == (c.Op == fsm.OpEqual)
				case fsm.CompareFence:
					return c.Number == 2
				case fsm.CompareLeaseAlive:
					return c.Number == 1
				}
				v := map[fsm.CompareTarget]uint64{fsm.CompareModifyIndex: e.mod, fsm.CompareCreateIndex: e.create, fsm.CompareVersion: e.ver}[c.Target]
				return map[fsm.CompareOp]bool{fsm.OpEqual: v == c.Number, fsm.OpNotEqual: v != c.Number, fsm.OpLess: v < c.Number, fsm.OpGreater: v > c.Number}[c.Op]
			}
			succeeded := true
			for _, c := range txn.Compares {
				if !holds(c) {
					succeeded = false
					break
				}
			}
			ops := txn.Then
			if !succeeded {
				ops = txn.Else
			}
			var wantOps []string
			for _, op := range ops {
				switch op.Kind {
				case fsm.TxnPut:
					e, ok := model[op.Key]
					if !ok {
						e = mkv{create: index}
					}
					e.val, e.mod, e.ver, e.lease = string(op.Value), index, e.ver+1, op.Lease
					model[op.Key] = e
					wantOps = append(wantOps, fmt.Sprintf("put %s=%s v%d", op.Key, e.val, e.ver))
				case fsm.TxnGet:
					if e, ok := model[op.Key]; ok {
						wantOps = append(wantOps, fmt.Sprintf("get %s=%s v%d", op.Key, e.val, e.ver))
					} else {
						wantOps = append(wantOps, "get "+op.Key+" absent")
					}
				case fsm.TxnDelete:
					_, ok := model[op.Key]
					delete(model, op.Key)
					wantOps = append(wantOps, fmt.Sprintf("delete %s %t", op.Key, ok))
				case fsm.TxnDeletePrefix:
					n := 0
					for k := range model {
						if strings.HasPrefix(k, "d/") {
							delete(model, k)
							n++
						}
					}
					wantOps = append(wantOps, fmt.Sprintf("delete d/* %d", n))
				}
			}

			// The FSM.
			var res *fsm.Result
			s, res = fsm.ApplyCommand(s, index, 1, txnCmd(txn))
			if res.Err != nil || res.Txn.Succeeded != succeeded {
				t.Fatalf("seed %d step %d: %+v: result %v %+v, model succeeded %v", seed, step, txn, res.Err, res.Txn, succeeded)
			}
			var gotOps []string
			for i, op := range res.Txn.Ops {
				k := ops[i].Key
				switch op.Kind {
				case fsm.TxnPut:
					gotOps = append(gotOps, fmt.Sprintf("put %s=%s v%d", k, op.Entry.Value, op.Entry.Version))
				case fsm.TxnGet:
					if op.Entry != nil {
						gotOps = append(gotOps, fmt.Sprintf("get %s=%s v%d", k, op.Entry.Value, op.Entry.Version))
					} else {
						gotOps = append(gotOps, "get "+k+" absent")
					}
				case fsm.TxnDelete:
					gotOps = append(gotOps, fmt.Sprintf("delete %s %t", k, op.Deleted == 1))
				case fsm.TxnDeletePrefix:
					gotOps = append(gotOps, fmt.Sprintf("delete d/* %d", op.Deleted))
				}
			}
			if !slices.Equal(gotOps, wantOps) {
				t.Fatalf("seed %d step %d: ops %q, model %q", seed, step, gotOps, wantOps)
			}
			if s.KVLen() != len(model) {
				t.Fatalf("seed %d step %d: %d keys, model %d", seed, step, s.KVLen(), len(model))
			}
			for k, m := range model {
				e, ok := s.Get(k)
				if !ok || string(e.Value) != m.val || e.CreateIndex != m.create || e.ModifyIndex != m.mod || e.Version != m.ver || e.Lease != m.lease {
					t.Fatalf("seed %d step %d: %s = %s, model %+v", seed, step, k, entryString(e), m)
				}
			}
		}
		// The state reads back from a snapshot unchanged.
		b := stateBytes(t, s)
		read, err := fsm.ReadState(bytes.NewReader(b))
		if err != nil || !bytes.Equal(stateBytes(t, read), b) {
			t.Fatalf("seed %d: snapshot round trip: %v", seed, err)
		}
	}
}

// FuzzTxnDecode decodes arbitrary bytes as a transaction's payload. What
// decodes must validate, re-encode to the same bytes (one encoding per
// transaction) and apply to a small state without panicking or changing
// it, deterministically.
func FuzzTxnDecode(f *testing.F) {
	for _, p := range txnSeeds() {
		f.Add(cmdOf(p).Payload)
	}
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0})
	bases := decodeApplyBases(f)
	f.Fuzz(func(t *testing.T, payload []byte) {
		c := fsm.Command{Type: fsm.CmdTxn, Version: 1, Payload: payload}
		p, err := fsm.DecodePayload(c)
		if err != nil {
			if !errors.Is(err, fsm.ErrBadCommand) {
				t.Fatalf("error %v does not match ErrBadCommand", err)
			}
			return
		}
		again, err := fsm.NewCommand(p)
		if err != nil {
			t.Fatalf("decoded %+v does not validate: %v", p, err)
		}
		if !bytes.Equal(again.Payload, payload) {
			t.Fatalf("decoded %+v re-encodes to %x, not %x", p, again.Payload, payload)
		}
		for _, base := range bases {
			before := stateBytes(t, base)
			n1, r1 := fsm.ApplyCommand(base, 100, 2, c)
			n2, r2 := fsm.ApplyCommand(base, 100, 2, c)
			if !bytes.Equal(stateBytes(t, base), before) {
				t.Fatal("apply changed the state it was given")
			}
			if !bytes.Equal(stateBytes(t, n1), stateBytes(t, n2)) || fmt.Sprint(r1.Err) != fmt.Sprint(r2.Err) ||
				(r1.Txn == nil) != (r2.Txn == nil) || r1.Txn != nil && r1.Txn.Succeeded != r2.Txn.Succeeded {
				t.Fatal("apply is not deterministic")
			}
		}
	})
}
