package fsm_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/coordd/coordd/fsm"
	"github.com/coordd/coordd/snapshot"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// richFSM returns an FSM with keys (some overwritten, some deleted), binary
// and empty keys and values, and members.
func richFSM(t testing.TB) *fsm.FSM {
	t.Helper()
	f := fsm.New()
	cmds := []fsm.Command{
		put("a", "1"), put("a/b", "2"), put("a/b", "3"), put("", "empty key"),
		put("bin\x00\xff", "\x00\x01\x02"), put("empty-value", ""), put("gone", "x"), del("gone"),
		put("big", string(bytes.Repeat([]byte("0123456789"), 200))),
		cmdOf(fsm.MemberSet{fsm.Member{ID: "n1", RaftAddr: "10.0.0.1:7000", HTTPAddr: "10.0.0.1:8000"}}),
		cmdOf(fsm.MemberSet{fsm.Member{ID: "n2", RaftAddr: "10.0.0.2:7000"}}),
	}
	for i, c := range cmds {
		if res := applyTo(t, f, uint64(10+i), c); res.Err != nil {
			t.Fatalf("command %d: %v", i, res.Err)
		}
	}
	return f
}

func TestSnapshotAndRestoreReproduceTheState(t *testing.T) {
	t.Parallel()
	for name, mk := range map[string]func(testing.TB) *fsm.FSM{
		"empty": func(testing.TB) *fsm.FSM { return fsm.New() },
		"rich":  richFSM,
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			src := mk(t)
			snap := persist(t, src)
			dst := fsm.New()
			rc := newRC(snap)
			if err := dst.Restore(rc); err != nil {
				t.Fatalf("Restore: %v", err)
			}
			if !rc.closed {
				t.Error("Restore did not close its reader")
			}
			if !bytes.Equal(stateBytes(t, dst.State()), stateBytes(t, src.State())) {
				t.Fatal("restored state differs")
			}
			s, d := src.State(), dst.State()
			if d.Index() != s.Index() || d.Term() != s.Term() || d.KVLen() != s.KVLen() {
				t.Fatalf("restored index/term/len %d/%d/%d, want %d/%d/%d", d.Index(), d.Term(), d.KVLen(), s.Index(), s.Term(), s.KVLen())
			}
			for _, k := range []string{"a", "a/b", "", "bin\x00\xff", "empty-value", "big", "gone"} {
				e1, ok1 := s.Get(k)
				e2, ok2 := d.Get(k)
				if ok1 != ok2 || !sameEntry(e1, e2) {
					t.Errorf("key %q: restored %s, want %s", k, entryString(e2), entryString(e1))
				}
			}
			for _, k := range []string{"gone", "never"} {
				_, i1, _ := s.WatchKey(k)
				_, i2, _ := d.WatchKey(k)
				if i1 != i2 {
					t.Errorf("change index of missing key %q: restored %d, want %d (the delete index must survive)", k, i2, i1)
				}
			}
			if fmt.Sprint(s.Members()) != fmt.Sprint(d.Members()) {
				t.Errorf("members: restored %v, want %v", d.Members(), s.Members())
			}
		})
	}
}

func TestASnapshotIsThePointInTimeStateEvenIfApplyGoesOn(t *testing.T) {
	t.Parallel()
	f := richFSM(t)
	want := stateBytes(t, f.State())
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	var wg sync.WaitGroup
	wg.Add(2)
	var persistErr error
	go func() {
		defer wg.Done()
		persistErr = snap.Persist(sink)
	}()
	go func() {
		// Readers may call State at any time.
		defer wg.Done()
		for range 200 {
			s := f.State()
			s.Get("a")
			s.WatchPrefix("", 10)
			s.Members()
		}
	}()
	for i := range 500 {
		applyTo(t, f, uint64(1000+2*i), put(fmt.Sprintf("k%d", i%7), fmt.Sprint(i)))
		if i%50 == 0 {
			applyTo(t, f, uint64(1001+2*i), delPrefix("a"))
		}
	}
	wg.Wait()
	snap.Release()
	if persistErr != nil {
		t.Fatal(persistErr)
	}
	if !bytes.Equal(sink.Bytes(), want) {
		t.Fatal("the snapshot does not hold the state at the time Snapshot was called")
	}
}

func TestPersistCancelsTheSinkWhenWritingFails(t *testing.T) {
	t.Parallel()
	boom := errors.New("disk full")
	for name, f := range map[string]*fsm.FSM{"empty": fsm.New(), "rich": richFSM(t)} {
		snap, err := f.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		sink := &memSink{writeErr: boom}
		if err := snap.Persist(sink); !errors.Is(err, boom) {
			t.Errorf("%s: Persist = %v, want %v", name, err, boom)
		}
		if sink.cancels != 1 || sink.closes != 0 {
			t.Errorf("%s: sink cancelled %d and closed %d times, want 1 and 0", name, sink.cancels, sink.closes)
		}
	}
}

// restoreMustFail restores bad into f and checks that nothing changed.
func restoreMustFail(t *testing.T, f *fsm.FSM, bad []byte, what string) {
	t.Helper()
	before := f.State()
	beforeBytes := stateBytes(t, before)
	reset := f.ResetCh()
	rc := newRC(bad)
	err := f.Restore(rc)
	if err == nil {
		t.Fatalf("%s: Restore succeeded", what)
	}
	if !rc.closed {
		t.Fatalf("%s: Restore did not close its reader after failing", what)
	}
	if f.State() != before {
		t.Fatalf("%s: failed Restore replaced the state", what)
	}
	if !bytes.Equal(stateBytes(t, f.State()), beforeBytes) {
		t.Fatalf("%s: failed Restore changed the state", what)
	}
	if closed(reset) || f.ResetCh() != reset {
		t.Fatalf("%s: failed Restore signalled a reset", what)
	}
}

func TestRestoreOfATruncatedSnapshotChangesNothing(t *testing.T) {
	t.Parallel()
	src := fsm.New()
	for i, c := range []fsm.Command{put("a", "1"), put("b", "22"), del("a"), cmdOf(fsm.MemberSet{fsm.Member{ID: "n1", RaftAddr: "r"}})} {
		applyTo(t, src, uint64(i+1), c)
	}
	good := persist(t, src)
	dst := richFSM(t)
	for n := range len(good) {
		restoreMustFail(t, dst, good[:n], fmt.Sprintf("cut to %d of %d bytes", n, len(good)))
	}
}

func TestRestoreOfACorruptedSnapshotChangesNothing(t *testing.T) {
	t.Parallel()
	src := fsm.New()
	for i, c := range []fsm.Command{put("a", "1"), put("b", "22"), del("a"), cmdOf(fsm.MemberSet{fsm.Member{ID: "n1", RaftAddr: "r"}})} {
		applyTo(t, src, uint64(i+1), c)
	}
	good := persist(t, src)
	dst := richFSM(t)
	for off := range good {
		for bit := range 8 {
			bad := bytes.Clone(good)
			bad[off] ^= 1 << bit
			restoreMustFail(t, dst, bad, fmt.Sprintf("bit %d of byte %d flipped", bit, off))
		}
	}
}

// forge writes a snapshot stream with a valid checksum around recs.
// forge writes recs in the current format, with the header's counts
// computed from them.
func forge(t *testing.T, recs ...[2][]byte) []byte {
	t.Helper()
	counts := map[byte]uint64{}
	for _, r := range recs {
		counts[r[0][0]]++
	}
	var buf bytes.Buffer
	w, err := snapshot.NewWriter(&buf, snapshot.Header{Index: 5, Term: 1, Counts: counts})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := w.Record(r[0][0], r[1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// forgeV1 writes recs in format version 1 (no counts in the header), by
// hand, as a build of that version did.
func forgeV1(recs ...[2][]byte) []byte {
	b := append([]byte(snapshot.Magic), 0, 1)
	b = binary.BigEndian.AppendUint64(b, 5)
	b = binary.BigEndian.AppendUint64(b, 1)
	for _, r := range recs {
		b = append(b, r[0][0])
		b = binary.AppendUvarint(b, uint64(len(r[1])))
		b = append(b, r[1]...)
	}
	b = append(b, 0)
	b = binary.BigEndian.AppendUint64(b, uint64(len(recs)))
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
}

func rec(typ byte, data ...byte) [2][]byte { return [2][]byte{{typ}, data} }

func TestRestoreRefusesWellFramedButMalformedRecords(t *testing.T) {
	t.Parallel()
	validKV := []byte{1, 'k', 1, 'v', 1, 1, 1}
	validMember := []byte{2, 'n', '1', 0, 0}
	meta := []byte{3, 0, 0, 0, 0, 0} // v2: kvDeleteIndex 3, the rest zero
	tests := []struct {
		name string
		in   []byte
	}{
		{"an unknown record type", forge(t, rec(1, meta...), rec(4, 1, 2, 3))},
		{"the highest record type", forge(t, rec(1, meta...), rec(255))},
		{"an empty meta record", forge(t, rec(1))},
		{"a meta record cut short", forge(t, rec(1, meta[:5]...))},
		{"a meta record with trailing bytes", forge(t, rec(1, append(bytes.Clone(meta), 0)...))},
		{"a meta record with a bad bool", forge(t, rec(1, 3, 0, 0, 2, 0, 0))},
		{"a KV record cut short", forge(t, rec(1, meta...), rec(2, validKV[:len(validKV)-1]...))},
		{"a KV record with trailing bytes", forge(t, rec(1, meta...), rec(2, append(bytes.Clone(validKV), 9, 9)...))},
		{"a KV record with an explicit zero lease", forge(t, rec(1, meta...), rec(2, append(bytes.Clone(validKV), 0)...))},
		{"an empty KV record", forge(t, rec(1, meta...), rec(2))},
		{"a member record cut short", forge(t, rec(1, meta...), rec(3, validMember[:3]...))},
		{"a member record with trailing bytes", forge(t, rec(1, meta...), rec(3, append(bytes.Clone(validMember), 0)...))},
		{"v1: an unknown record type", forgeV1(rec(1, 0), rec(4, 1, 2, 3))},
		{"v1: an empty meta record", forgeV1(rec(1))},
		{"v1: a meta record with trailing bytes", forgeV1(rec(1, 0, 0))},
		{"v1: a meta record with explicit zero extras", forgeV1(rec(1, 0, 0, 0))},
		{"v1: a KV record cut short", forgeV1(rec(1, 0), rec(2, validKV[:len(validKV)-1]...))},
		{"v1: a bad checksum", func() []byte { b := forgeV1(rec(1, 0)); b[len(b)-1]++; return b }()},
		{"a not-a-snapshot stream", []byte("this is not a snapshot at all, just some text")},
		{"an empty stream", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if _, err := fsm.ReadState(bytes.NewReader(tt.in)); err == nil {
				t.Fatal("ReadState accepted it")
			}
			restoreMustFail(t, richFSM(t), tt.in, tt.name)
		})
	}
	// The same records, well formed, are accepted, in both versions.
	v1, err := fsm.ReadState(bytes.NewReader(forgeV1(rec(1, 3), rec(2, validKV...), rec(3, validMember...))))
	if err != nil {
		t.Fatalf("well-formed v1 records refused: %v", err)
	}
	s, err := fsm.ReadState(bytes.NewReader(forge(t, rec(1, meta...), rec(2, validKV...), rec(3, validMember...))))
	if err != nil {
		t.Fatalf("well-formed records refused: %v", err)
	}
	if !bytes.Equal(stateBytes(t, v1), stateBytes(t, s)) {
		t.Fatal("the same records read differently from v1 and v2 files")
	}
	if e, ok := s.Get("k"); !ok || !sameEntry(e, &fsm.KVEntry{Key: "k", Value: []byte("v"), CreateIndex: 1, ModifyIndex: 1, Version: 1}) {
		t.Fatalf("Get(k) = %s", entryString(e))
	}
	if _, idx, _ := s.WatchKey("missing"); idx != 3 {
		t.Fatalf("delete index = %d, want 3", idx)
	}
	if m, ok := s.Member("n1"); !ok || m.ID != "n1" {
		t.Fatalf("Member(n1) = %+v %v", m, ok)
	}
}

func TestRestoreRefusesASnapshotFromANewerFormat(t *testing.T) {
	t.Parallel()
	good := persist(t, richFSM(t))
	bad := bytes.Clone(good)
	bad[len(snapshot.Magic)+1]++ // the low byte of the format version
	dst := fsm.New()
	before := dst.State()
	err := dst.Restore(newRC(bad))
	if !errors.Is(err, snapshot.ErrUnsupportedVersion) {
		t.Fatalf("Restore = %v, want ErrUnsupportedVersion", err)
	}
	if dst.State() != before {
		t.Fatal("state replaced")
	}
}

func TestASuccessfulRestoreClosesTheResetChannel(t *testing.T) {
	t.Parallel()
	snap := persist(t, richFSM(t))
	f := fsm.New()
	first := f.ResetCh()
	if f.ResetCh() != first {
		t.Fatal("ResetCh changed without a restore")
	}
	_, _, oldWatch := f.State().WatchKey("a")
	if err := f.Restore(newRC(snap)); err != nil {
		t.Fatal(err)
	}
	if !closed(first) {
		t.Fatal("Restore did not close the channel returned by ResetCh")
	}
	second := f.ResetCh()
	if second == first || closed(second) {
		t.Fatal("after Restore ResetCh must return a new open channel")
	}
	if closed(oldWatch) {
		t.Fatal("a watch channel of the old state fired on Restore (the doc says it never fires)")
	}
	if err := f.Restore(newRC(snap)); err != nil {
		t.Fatal(err)
	}
	if !closed(second) {
		t.Fatal("a second Restore did not close the second channel")
	}
	// Applying after a restore works on the restored state.
	res := applyTo(t, f, 1000, put("a", "after restore"))
	if res.Entry.CreateIndex != 10 || res.Entry.Version != 2 {
		t.Fatalf("put after restore = %s, want it to update the restored key", entryString(res.Entry))
	}
}

func TestWaitersWokenByResetChSeeTheRestoredState(t *testing.T) {
	t.Parallel()
	src := richFSM(t)
	snap := persist(t, src)
	want := src.State().Index()
	f := fsm.New()
	var wg sync.WaitGroup
	got := make([]uint64, 8)
	for i := range got {
		ch := f.ResetCh()
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-ch
			// The new state is published before the channel closes.
			got[i] = f.State().Index()
		}()
	}
	if err := f.Restore(newRC(snap)); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i, idx := range got {
		if idx != want {
			t.Errorf("waiter %d saw index %d after the reset, want the restored %d", i, idx, want)
		}
	}
}

// errAfterReader returns the bytes of b and then err instead of io.EOF.
type errAfterReader struct {
	r   io.Reader
	err error
}

func (r errAfterReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err == io.EOF {
		err = r.err
	}
	return n, err
}

func TestRestorePassesOnReadErrors(t *testing.T) {
	t.Parallel()
	good := persist(t, richFSM(t))
	boom := errors.New("network reset")
	f := fsm.New()
	before := f.State()
	err := f.Restore(io.NopCloser(errAfterReader{bytes.NewReader(good[:len(good)/2]), boom}))
	if !errors.Is(err, boom) {
		t.Fatalf("Restore = %v, want it to wrap %v", err, boom)
	}
	if f.State() != before {
		t.Fatal("state replaced")
	}
}

func TestWriteStateMatchesTheGoldenFile(t *testing.T) {
	t.Parallel()
	// The snapshot format is part of upgrades: a file written by an older
	// build must still restore. The golden file pins today's bytes.
	path := filepath.Join("testdata", "state-v2.snap")
	got := persist(t, richFSM(t))
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("WriteState output changed; if the format change is deliberate, bump the format and keep reading %s", path)
	}
	f := fsm.New()
	if err := f.Restore(newRC(want)); err != nil {
		t.Fatalf("golden file does not restore: %v", err)
	}
	if !bytes.Equal(stateBytes(t, f.State()), want) {
		t.Fatal("golden file does not round trip")
	}
}

func TestFilesOfEveryEarlierFormatVersionStillRestore(t *testing.T) {
	t.Parallel()
	// state-v1.snap was written by the build that introduced format 1, from
	// the same richFSM: it must restore to the very same state.
	old, err := os.ReadFile(filepath.Join("testdata", "state-v1.snap"))
	if err != nil {
		t.Fatal(err)
	}
	f := fsm.New()
	if err := f.Restore(newRC(old)); err != nil {
		t.Fatalf("v1 golden file does not restore: %v", err)
	}
	if !bytes.Equal(stateBytes(t, f.State()), persist(t, richFSM(t))) {
		t.Fatal("v1 golden file restores to a different state")
	}
}

func TestReleaseIsHarmless(t *testing.T) {
	t.Parallel()
	f := richFSM(t)
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	snap.Release()
	snap.Release()
	if err := snap.Persist(&memSink{}); err != nil {
		t.Fatalf("Persist after Release: %v", err)
	}
}

// frame turns b into a well-framed snapshot: b is read as a sequence of
// type(1) length(1) data(length) records, each written with snapshot.Writer,
// so that the checksum is valid and ReadState's record decoding is reached.
func frame(t testing.TB, b []byte) []byte {
	counts := map[byte]uint64{}
	for c := b; len(c) >= 2; {
		typ, n := c[0], min(int(c[1]), len(c)-2)
		if typ != 0 {
			counts[typ]++
		}
		c = c[2+n:]
	}
	var buf bytes.Buffer
	w, err := snapshot.NewWriter(&buf, snapshot.Header{Index: 77, Term: 3, Counts: counts})
	if err != nil {
		t.Fatal(err)
	}
	for len(b) >= 2 {
		typ, n := b[0], min(int(b[1]), len(b)-2)
		if typ != 0 {
			if err := w.Record(typ, b[2:2+n]); err != nil {
				t.Fatal(err)
			}
		}
		b = b[2+n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// FuzzReadState: ReadState never panics on arbitrary bytes, and a state it
// accepts serialises to a stream that reads back to the same serialisation.
// With framed set, the input supplies the records of a file with a valid
// checksum.
func FuzzReadState(f *testing.F) {
	f.Add(persist(f, fsm.New()), false)
	small := fsm.New()
	applyTo(f, small, 1, put("a", "1"))
	applyTo(f, small, 2, cmdOf(fsm.MemberSet{fsm.Member{ID: "n"}}))
	applyTo(f, small, 3, del("a"))
	f.Add(persist(f, small), false)
	rich := fsm.New()
	for i, c := range []fsm.Command{
		cmdOf(fsm.LeaseGrant{TTL: 1000}), cmdOf(fsm.LeaseGrant{TTL: 2000}),
		cmdOf(fsm.Campaign{Kind: fsm.KindElection, Name: "e", Lease: 1, Value: []byte("v")}),
		cmdOf(fsm.Campaign{Kind: fsm.KindElection, Name: "e", Lease: 2}),
		cmdOf(fsm.Campaign{Kind: fsm.KindLock, Name: "l", Lease: 2, Limit: 2, LockDelay: 50}),
		cmdOf(fsm.KVPut{Key: "k", Value: []byte("x"), Lease: 2}),
		cmdOf(fsm.LeaseCheckpoint{Leases: []fsm.LeaseRemaining{{ID: 1, Epoch: 1, Remaining: 300}}}),
		cmdOf(fsm.LeaseRevoke{ID: 1}),
		cmdOf(fsm.PeerSecret{Secret: bytes.Repeat([]byte{9}, fsm.PeerSecretSize)}),
	} {
		c.IdempotencyKey = fmt.Sprint("k", i%3)
		c.Stamp = int64(i+1) * 1e9
		applyTo(f, rich, uint64(i+1), c)
	}
	f.Add(persist(f, rich), false)
	f.Add([]byte("COORDSNP"), false)
	f.Add([]byte{1, 1, 5, 2, 7, 1, 'k', 1, 'v', 1, 1, 1, 3, 5, 2, 'n', '1', 0, 0}, true)
	f.Add([]byte{2, 7, 0, 0, 1, 1, 1, 1, 2, 2, 7, 0, 0, 2, 2, 2, 3}, true)
	f.Fuzz(func(t *testing.T, data []byte, framed bool) {
		if framed {
			data = frame(t, data)
		}
		s, err := fsm.ReadState(bytes.NewReader(data))
		if err != nil {
			return
		}
		b1 := stateBytes(t, s)
		s2, err := fsm.ReadState(bytes.NewReader(b1))
		if err != nil {
			t.Fatalf("re-serialised state does not read back: %v", err)
		}
		if b2 := stateBytes(t, s2); !bytes.Equal(b1, b2) {
			t.Fatal("serialisation is not stable")
		}
		if s2.Index() != s.Index() || s2.Term() != s.Term() || s2.KVLen() != s.KVLen() {
			t.Fatal("index, term or length changed in a round trip")
		}
		// The accepted state is usable: applying to it works.
		st, _ := fsm.ApplyCommand(s2, s2.Index()+1, s2.Term(), put("fuzz", "x"))
		if _, ok := st.Get("fuzz"); !ok {
			t.Fatal("put on a restored state lost")
		}
		applyToRestored(t, s2, crc32.ChecksumIEEE(data))
	})
}

// applyToRestored applies to a state read from a file what a cluster
// could do next: revoke, expire, checkpoint and renew every lease, resign
// every holder and waiter, promote every name, then random commands aimed
// at what the state holds (seeded by seed). None may panic, and each must
// apply purely (see applyPure): a file is input, and nothing in one may
// make a later Apply panic.
func applyToRestored(t *testing.T, s *fsm.State, seed uint32) {
	t.Helper()
	var cmds []fsm.Payload
	for _, l := range s.Leases() {
		cmds = append(cmds, fsm.LeaseRenew{ID: l.ID}, fsm.LeaseRenewMany{IDs: []uint64{l.ID, l.ID + 1}},
			fsm.LeaseCheckpoint{Leases: []fsm.LeaseRemaining{{ID: l.ID, Epoch: l.Epoch, Remaining: 1}}},
			fsm.LeaseExpire{Leases: []fsm.LeaseExpiry{{ID: l.ID, Epoch: l.Epoch}}}, fsm.LeaseRevoke{ID: l.ID})
	}
	for _, e := range s.Elections() {
		for _, c := range append(append([]fsm.Candidate{}, e.Holders...), e.Waiting...) {
			cmds = append(cmds, fsm.Proclaim{Name: e.Name, Lease: c.Lease, Token: c.Token, Value: []byte("p")},
				fsm.Resign{Name: e.Name, Lease: c.Lease, Token: c.Token})
		}
		cmds = append(cmds, fsm.Promote{Name: e.Name})
	}
	cmds = append(cmds, fsm.KVDelete{Prefix: true}, fsm.Restored{})
	index := s.Index()
	for i, p := range cmds {
		cmd, err := fsm.NewCommand(p)
		if err != nil {
			continue // not a command a leader could build
		}
		index++
		applyPure(t, s, index, cmd, fmt.Sprint("state command ", i)) // each on the restored state
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 16))
	cur := s
	for i := range 16 {
		cmd, err := fsm.NewCommand(randomPayload(rng, cur))
		if err != nil {
			continue
		}
		index++
		cur, _ = applyPure(t, cur, index, cmd, fmt.Sprint("random command ", i))
	}
}

// rewriteRecords reads the snapshot file b and writes it again with every
// record of type typ replaced by what edit returns (nil: dropped): a
// crafted file with a valid checksum.
func rewriteRecords(t *testing.T, b []byte, typ byte, edit func(data []byte) []byte) []byte {
	t.Helper()
	sr, err := snapshot.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	type record struct {
		typ  byte
		data []byte
	}
	var recs []record
	counts := map[byte]uint64{}
	for {
		rt, data, err := sr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if rt == typ {
			if data = edit(bytes.Clone(data)); data == nil {
				continue
			}
		}
		recs = append(recs, record{rt, bytes.Clone(data)})
		counts[rt]++
	}
	h := sr.Header()
	var buf bytes.Buffer
	w, err := snapshot.NewWriter(&buf, snapshot.Header{Index: h.Index, Term: h.Term, Counts: counts})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if err := w.Record(r.typ, r.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestRestore_RefusesCraftedAttachKeys is the finding of a crafted backup
// that passed verification and crashed every replica later: the reader
// accepted attach keys of 9 bytes and more while the code that uses them
// indexes k[16] and k[17:], so a backup with a 16-byte key restored fine
// and revoking its lease panicked. Every odd key is now refused by the
// reader with a clear error, and a file it accepts survives revoking
// every lease it holds.
func TestRestore_RefusesCraftedAttachKeys(t *testing.T) {
	t.Parallel()
	src := fsm.New()
	for i, c := range []fsm.Command{
		cmdOf(fsm.LeaseGrant{TTL: 1000}), // 1
		cmdOf(fsm.KVPut{Key: "k", Value: []byte("v"), Lease: 1}),
		cmdOf(fsm.Campaign{Kind: fsm.KindLock, Name: "l", Lease: 1}),
	} {
		if res := applyTo(t, src, uint64(i+1), c); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	good := persist(t, src)
	// keyOf turns an attach record into its key and back.
	keyOf := func(data []byte) []byte { return data[1:] } // a uvarint length below 128, then the key
	record := func(k []byte) []byte { return append([]byte{byte(len(k))}, k...) }
	lease1 := []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}
	cases := map[string]func(k []byte) []byte{
		"a 16-byte key (a lease id, no kind)":  func([]byte) []byte { return lease1 },
		"a 9-byte key":                         func(k []byte) []byte { return k[:9] },
		"a 15-byte key":                        func(k []byte) []byte { return k[:15] },
		"an empty key":                         func([]byte) []byte { return []byte{} },
		"an election key without a name":       func([]byte) []byte { return append(bytes.Clone(lease1), 'e') },
		"an unknown kind":                      func(k []byte) []byte { k[16] = 'x'; return k },
		"a lease id that is not nibbles":       func(k []byte) []byte { k[3] = 0x41; return k },
		"a key of a lease that does not exist": func(k []byte) []byte { k[15] = 2; return k },
		"an election key the lease is not in":  func([]byte) []byte { return append(append(bytes.Clone(lease1), 'e'), "other"...) },
		"a key attach for a key not attached":  func([]byte) []byte { return append(append(bytes.Clone(lease1), 'k'), "nokey"...) },
	}
	for name, edit := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			first := true
			bad := rewriteRecords(t, good, 5, func(data []byte) []byte {
				if !first {
					return data
				}
				first = false
				return record(edit(keyOf(data)))
			})
			s, err := fsm.ReadState(bytes.NewReader(bad))
			if err == nil {
				// What the finding did next: revoke every lease.
				for _, l := range s.Leases() {
					func() {
						defer func() {
							if p := recover(); p != nil {
								t.Errorf("revoking lease %d of the accepted file panicked: %v", l.ID, p)
							}
						}()
						fsm.ApplyCommand(s, s.Index()+1, s.Term(), cmdOf(fsm.LeaseRevoke{ID: l.ID}))
					}()
				}
				t.Fatal("ReadState accepted the crafted file")
			}
			if !strings.Contains(err.Error(), "attach key") {
				t.Fatalf("error %q does not name the attach key", err)
			}
			restoreMustFail(t, richFSM(t), bad, name)
		})
	}
	// The file as written restores, and revoking its lease releases all.
	s, err := fsm.ReadState(bytes.NewReader(rewriteRecords(t, good, 5, func(d []byte) []byte { return d })))
	if err != nil {
		t.Fatal(err)
	}
	after, res := fsm.ApplyCommand(s, s.Index()+1, s.Term(), cmdOf(fsm.LeaseRevoke{ID: 1}))
	if res.Err != nil || after.LeaseCount() != 0 || after.KVLen() != 0 {
		t.Fatalf("revoke after restore: %v, %d leases, %d keys", res.Err, after.LeaseCount(), after.KVLen())
	}
}
