package fsm_test

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/coordd/coordd/fsm"
)

var _ raft.FSM = (*fsm.FSM)(nil)

// applyTo applies cmd through FSM.Apply as Raft would, at index and term 1.
func applyTo(t testing.TB, f *fsm.FSM, index uint64, cmd fsm.Command) *fsm.Result {
	t.Helper()
	res, ok := f.Apply(&raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: cmd.Encode()}).(*fsm.Result)
	if !ok {
		t.Fatalf("Apply did not return a *fsm.Result")
	}
	if res.Index != index {
		t.Fatalf("Result.Index = %d, want %d", res.Index, index)
	}
	return res
}

// cmdOf is fsm.NewCommand for a payload the test knows is valid.
func cmdOf(p fsm.Payload) fsm.Command {
	c, err := fsm.NewCommand(p)
	if err != nil {
		panic(err)
	}
	return c
}

func put(key, value string) fsm.Command {
	return cmdOf(fsm.KVPut{Key: key, Value: []byte(value)})
}

func putCreate(key, value string) fsm.Command {
	return cmdOf(fsm.KVPut{Key: key, Value: []byte(value), Mode: fsm.PutCreate})
}

func putCAS(key, value string, cas uint64) fsm.Command {
	return cmdOf(fsm.KVPut{Key: key, Value: []byte(value), Mode: fsm.PutCAS, CASIndex: cas})
}

func del(key string) fsm.Command { return cmdOf(fsm.KVDelete{Key: key}) }

func delCAS(key string, cas uint64) fsm.Command {
	return cmdOf(fsm.KVDelete{Key: key, CAS: true, CASIndex: cas})
}

func delPrefix(prefix string) fsm.Command {
	return cmdOf(fsm.KVDelete{Key: prefix, Prefix: true})
}

// stateBytes is the canonical serialisation of s, used to compare states.
func stateBytes(t testing.TB, s *fsm.State) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := fsm.WriteState(&buf, s); err != nil {
		t.Fatalf("WriteState: %v", err)
	}
	return buf.Bytes()
}

// buildState applies cmds at indexes 1, 2, ... with ApplyCommand.
func buildState(t testing.TB, cmds ...fsm.Command) *fsm.State {
	t.Helper()
	s := fsm.New().State()
	for i, c := range cmds {
		var res *fsm.Result
		s, res = fsm.ApplyCommand(s, uint64(i+1), 1, c)
		if res.Err != nil {
			t.Fatalf("command %d: %v", i+1, res.Err)
		}
	}
	return s
}

// closed reports whether ch is closed, without blocking.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// mustPanic runs fn and returns what it panicked with; it fails the test if
// fn returns normally.
func mustPanic(t *testing.T, fn func()) (v any) {
	t.Helper()
	defer func() { v = recover() }()
	fn()
	t.Fatalf("did not panic")
	return nil
}

// panicMentionsBadCommand checks the panic value produced by Apply.
func panicMentionsBadCommand(t *testing.T, v any) {
	t.Helper()
	s, ok := v.(string)
	if !ok {
		t.Fatalf("panic value %T %v, want a string", v, v)
	}
	if !strings.Contains(s, fsm.ErrBadCommand.Error()) {
		t.Fatalf("panic %q does not say the command is malformed", s)
	}
}

// memSink is a raft.SnapshotSink that keeps the snapshot in memory.
type memSink struct {
	mu       sync.Mutex
	buf      bytes.Buffer
	writeErr error // returned by every Write when set
	closes   int
	cancels  int
}

var _ raft.SnapshotSink = (*memSink)(nil)

func (s *memSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writeErr != nil {
		return 0, s.writeErr
	}
	if s.closes > 0 || s.cancels > 0 {
		return 0, errors.New("memSink: write after close")
	}
	return s.buf.Write(p)
}

func (s *memSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closes++
	return nil
}

func (s *memSink) Cancel() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cancels++
	return nil
}

func (s *memSink) ID() string { return "mem" }

func (s *memSink) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.buf.Bytes()...)
}

// persist snapshots f and persists it into a memSink.
func persist(t testing.TB, f *fsm.FSM) []byte {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	defer snap.Release()
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatalf("Persist: %v", err)
	}
	if sink.closes != 1 || sink.cancels != 0 {
		t.Fatalf("Persist closed the sink %d times and cancelled it %d times, want 1 and 0", sink.closes, sink.cancels)
	}
	return sink.Bytes()
}

// trackingReadCloser records whether Close was called.
type trackingReadCloser struct {
	r      *bytes.Reader
	closed bool
}

func newRC(b []byte) *trackingReadCloser { return &trackingReadCloser{r: bytes.NewReader(b)} }

func (r *trackingReadCloser) Read(p []byte) (int, error) { return r.r.Read(p) }
func (r *trackingReadCloser) Close() error               { r.closed = true; return nil }

func entryString(e *fsm.KVEntry) string {
	if e == nil {
		return "<nil>"
	}
	return fmt.Sprintf("{%q %q c%d m%d v%d}", e.Key, e.Value, e.CreateIndex, e.ModifyIndex, e.Version)
}
