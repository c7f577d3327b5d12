package fsm_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/coordd/coordd/fsm"
)

func TestApplyPanicsOnAnEntryItCannotDecode(t *testing.T) {
	t.Parallel()
	valid := put("k", "v").Encode()
	tests := []struct {
		name string
		data []byte
	}{
		{"nil data", nil},
		{"empty data", []byte{}},
		{"a wrong magic byte", append([]byte{0x00}, valid[1:]...)},
		{"a newer envelope version", append([]byte{0xC0, 0x03}, valid[2:]...)},
		{"a flipped payload byte", flipByte(valid, len(valid)-6)},
		{"a flipped checksum byte", flipByte(valid, len(valid)-1)},
		{"a truncated envelope", valid[:len(valid)-1]},
		{"trailing bytes", append(append([]byte(nil), valid...), 0)},
		{"JSON", []byte(`{"Type":1}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := fsm.New()
			applyTo(t, f, 1, put("x", "1"))
			before := f.State()
			v := mustPanic(t, func() { f.Apply(&raft.Log{Index: 42, Term: 7, Data: tt.data}) })
			panicMentionsBadCommand(t, v)
			if msg := v.(string); !strings.Contains(msg, "42") || !strings.Contains(msg, "7") {
				t.Errorf("panic %q does not name the entry's index and term", msg)
			}
			if f.State() != before {
				t.Fatal("a panicking Apply replaced the state")
			}
		})
	}
}

func flipByte(b []byte, i int) []byte {
	b = bytes.Clone(b)
	b[i] ^= 0x04
	return b
}

// TestApplyPanicTellsTheOperatorWhatToDo: the panic is the first line an
// operator sees when a node stops on a corrupt entry.
func TestApplyPanicTellsTheOperatorWhatToDo(t *testing.T) {
	t.Parallel()
	valid := put("k", "v").Encode()
	v := mustPanic(t, func() { fsm.New().Apply(&raft.Log{Index: 42, Term: 7, Data: flipByte(valid, 5)}) })
	msg := v.(string)
	for _, want := range []string{"log entry 42 (term 7)", "checksum mismatch", "data dir", "rejoin"} {
		if !strings.Contains(msg, want) {
			t.Errorf("panic %q does not say %q", msg, want)
		}
	}
}

// TestApplyAcceptsVersion1Entries: logs written before the checksum keep
// applying.
func TestApplyAcceptsVersion1Entries(t *testing.T) {
	t.Parallel()
	f := fsm.New()
	f.Apply(&raft.Log{Index: 1, Term: 1, Data: put("k", "v1").EncodeV1()})
	f.Apply(&raft.Log{Index: 2, Term: 1, Data: put("k", "v2").Encode()})
	if e, ok := f.State().Get("k"); !ok || string(e.Value) != "v2" || e.CreateIndex != 1 {
		t.Fatalf("after a v1 and a v2 put: %+v, %v", e, ok)
	}
}

func TestApplyPanicsOnACommandTypeThisBuildDoesNotKnow(t *testing.T) {
	t.Parallel()
	for _, typ := range []fsm.CommandType{fsm.CmdUnknown, 5, 100, 255} {
		t.Run(typ.String(), func(t *testing.T) {
			t.Parallel()
			f := fsm.New()
			before := f.State()
			cmd := fsm.Command{Type: typ, Version: 1, Payload: []byte{1, 2, 3}}
			v := mustPanic(t, func() { f.Apply(&raft.Log{Index: 3, Term: 1, Data: cmd.Encode()}) })
			panicMentionsBadCommand(t, v)
			if f.State() != before {
				t.Fatal("a panicking Apply replaced the state")
			}
			v = mustPanic(t, func() { fsm.ApplyCommand(fsm.New().State(), 3, 1, cmd) })
			panicMentionsBadCommand(t, v)
		})
	}
}

func TestApplyPanicsOnAPayloadItCannotDecode(t *testing.T) {
	t.Parallel()
	with := func(c fsm.Command, f func(*fsm.Command)) fsm.Command { f(&c); return c }
	tests := []struct {
		name string
		cmd  fsm.Command
	}{
		{"kv-put of payload version 2", with(put("k", "v"), func(c *fsm.Command) { c.Version = 2 })},
		{"kv-put of payload version 0", with(put("k", "v"), func(c *fsm.Command) { c.Version = 0 })},
		{"kv-put with an unknown mode", with(put("k", "v"), func(c *fsm.Command) { c.Payload = []byte{1, 'k', 1, 'v', 7, 0} })},
		{"kv-put with an empty payload", with(put("k", "v"), func(c *fsm.Command) { c.Payload = nil })},
		{"kv-delete with trailing bytes", with(del("k"), func(c *fsm.Command) { c.Payload = append(c.Payload, 1) })},
		{"kv-delete with a flag byte of 2", with(del("k"), func(c *fsm.Command) { c.Payload = []byte{1, 'k', 2, 0, 0} })},
		{"member-set cut short", with(cmdOf(fsm.MemberSet{fsm.Member{ID: "n"}}), func(c *fsm.Command) { c.Payload = c.Payload[:1] })},
		{"member-remove of payload version 3", with(cmdOf(fsm.MemberRemove{ID: "n"}), func(c *fsm.Command) { c.Version = 3 })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := fsm.New()
			before := f.State()
			v := mustPanic(t, func() { f.Apply(&raft.Log{Index: 9, Term: 2, Data: tt.cmd.Encode()}) })
			panicMentionsBadCommand(t, v)
			if f.State() != before {
				t.Fatal("a panicking Apply replaced the state")
			}
		})
	}
}

func TestApplyReturnsDomainFailuresInsteadOfPanicking(t *testing.T) {
	t.Parallel()
	f := fsm.New()
	for i, c := range []fsm.Command{del("missing"), putCAS("missing", "v", 3), delCAS("missing", 1), cmdOf(fsm.MemberRemove{ID: "nobody"})} {
		if res := applyTo(t, f, uint64(i+1), c); res.Err == nil {
			t.Errorf("%s: no error", c.Type)
		}
	}
	if f.State().Index() != 4 {
		t.Fatalf("Index = %d, want 4: failed commands are still applied entries", f.State().Index())
	}
}

func TestApplyCarriesTheEntrysIndexAndTermIntoTheState(t *testing.T) {
	t.Parallel()
	f := fsm.New()
	if s := f.State(); s.Index() != 0 || s.Term() != 0 || s.KVLen() != 0 {
		t.Fatalf("new FSM state: index %d term %d len %d", s.Index(), s.Term(), s.KVLen())
	}
	res := f.Apply(&raft.Log{Index: 17, Term: 4, Data: put("k", "v").Encode()}).(*fsm.Result)
	if res.Index != 17 || res.Entry.CreateIndex != 17 {
		t.Fatalf("result %+v", res)
	}
	if s := f.State(); s.Index() != 17 || s.Term() != 4 {
		t.Fatalf("state index %d term %d, want 17 4", s.Index(), s.Term())
	}
}

func TestApplyCommandLeavesItsBaseUsableAndItsWatchersAsleep(t *testing.T) {
	t.Parallel()
	f := fsm.New()
	for i, c := range []fsm.Command{put("a", "1"), put("a/b", "1"), put("c", "1")} {
		applyTo(t, f, uint64(i+1), c)
	}
	base := f.State()
	baseBytes := stateBytes(t, base)
	_, _, keyCh := base.WatchKey("a")
	_, _, missingCh := base.WatchKey("missing")
	_, _, prefixCh := base.WatchPrefix("", 0)
	// Several different transitions from the same base, as a dry run or a
	// what-if evaluation would do. Before 0b179f1 the second one panicked
	// with "close of closed channel".
	for i, c := range []fsm.Command{put("a", "2"), del("a"), delPrefix(""), put("new", "x"), putCAS("a", "3", 1), delCAS("c", 3)} {
		next, res := fsm.ApplyCommand(base, 10+uint64(i), 1, c)
		if res.Err != nil {
			t.Fatalf("transition %d: %v", i, res.Err)
		}
		if next.Index() != 10+uint64(i) {
			t.Fatalf("transition %d: index %d", i, next.Index())
		}
	}
	if closed(keyCh) || closed(missingCh) || closed(prefixCh) {
		t.Fatal("ApplyCommand closed watch channels of its base state")
	}
	if !bytes.Equal(stateBytes(t, base), baseBytes) || f.State() != base {
		t.Fatal("the base state changed")
	}
	// The live state's watchers are still woken by FSM.Apply.
	applyTo(t, f, 100, put("a", "live"))
	if !closed(keyCh) || !closed(prefixCh) {
		t.Fatal("FSM.Apply did not wake the watchers of the live state")
	}
}
