package server

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/coordd/coordd/fsm"
)

// newTestTrackedFSM is a trackedFSM on an empty state that records the
// results it observes and the digests it would take every `every`
// entries.
func newTestTrackedFSM(every uint64, log hclog.Logger) (*trackedFSM, *[]*fsm.Result) {
	var seen []*fsm.Result
	t := &trackedFSM{FSM: fsm.New(), applied: newIndexWaiter(), mu: &sync.Mutex{},
		observe: func(r *fsm.Result) { seen = append(seen, r) }, log: log,
		digests: &digester{every: every, jobs: make(chan digestJob, 1000)}}
	return t, &seen
}

// TestTrackedFSM_ApplyBatch_SameAsOneByOne: the same entries applied in
// batches of every size reach the same state, answer the same results,
// show the lease clock the same results in the same order, advance the
// applied index to the end (configuration entries included), and take
// the same digests at the same points as entries applied one by one.
func TestTrackedFSM_ApplyBatch_SameAsOneByOne(t *testing.T) {
	t.Parallel()
	var logs []*raft.Log
	index := uint64(0)
	add := func(p fsm.Payload) {
		index++
		c := fsmCmd(p)
		c.Stamp = int64(index) * 1e9
		logs = append(logs, &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: c.Encode()})
	}
	for i := range 12 {
		add(fsm.LeaseGrant{TTL: 10_000})
		lease := index
		add(fsm.Campaign{Kind: fsm.KindLock, Name: fmt.Sprintf("lock/%d", i%3), Lease: lease})
		add(fsm.KVPut{Key: fmt.Sprintf("k/%d", i%4), Value: []byte{byte(i)}, Lease: lease})
		if i%4 == 3 {
			index++ // a configuration entry: no command, but counted
			logs = append(logs, &raft.Log{Index: index, Term: 1, Type: raft.LogConfiguration})
			add(fsm.DigestPoint{})
		}
		if i%3 == 2 {
			add(fsm.LeaseRevoke{ID: lease - 3})
		}
	}
	one, oneSeen := newTestTrackedFSM(5, nil)
	var want []any
	for _, l := range logs {
		if l.Type == raft.LogCommand {
			want = append(want, one.Apply(l))
		} else {
			one.StoreConfiguration(l.Index, raft.Configuration{})
			want = append(want, nil)
		}
	}
	wantDigests := drainDigests(one.digests)
	for _, size := range []int{1, 2, 3, 7, 64} {
		b, bSeen := newTestTrackedFSM(5, nil)
		var got []any
		for i := 0; i < len(logs); i += size {
			got = append(got, b.ApplyBatch(logs[i:min(i+size, len(logs))])...)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("batches of %d: results differ:\n got %v\nwant %v", size, got, want)
		}
		if !reflect.DeepEqual(*bSeen, *oneSeen) {
			t.Fatalf("batches of %d: observed results differ", size)
		}
		if g, w := b.applied.load(), one.applied.load(); g != w || g != index {
			t.Fatalf("batches of %d: applied index %d, one by one %d, want %d", size, g, w, index)
		}
		if g, w := b.State().ReplicaDigest(), one.State().ReplicaDigest(); g != w {
			t.Fatalf("batches of %d: states differ", size)
		}
		if g := drainDigests(b.digests); g != wantDigests {
			t.Fatalf("batches of %d: digests\n got %s\nwant %s", size, g, wantDigests)
		}
	}
}

func drainDigests(d *digester) string {
	var out []string
	for {
		select {
		case j := <-d.jobs:
			out = append(out, fmt.Sprintf("%d/%s/%s", j.index, j.kind, j.state.ReplicaDigest()[:12]))
		default:
			return strings.Join(out, " ")
		}
	}
}

// TestTrackedFSM_ApplyBatch_CorruptEntryIsLoggedAndStops: an entry of a
// batch that fails its checksum is logged by index and stops the node
// (the panic Raft does not recover), and nothing of the batch is
// published.
func TestTrackedFSM_ApplyBatch_CorruptEntryIsLoggedAndStops(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	tf, _ := newTestTrackedFSM(0, hclog.New(&hclog.LoggerOptions{Output: &buf}))
	good := fsmCmd(fsm.KVPut{Key: "a", Value: []byte("1")}).Encode()
	bad := fsmCmd(fsm.KVPut{Key: "b", Value: []byte("2")}).Encode()
	bad[3] ^= 0x08
	var p any
	func() {
		defer func() { p = recover() }()
		tf.ApplyBatch([]*raft.Log{
			{Index: 1, Term: 1, Type: raft.LogCommand, Data: good},
			{Index: 2, Term: 1, Type: raft.LogCommand, Data: bad},
		})
	}()
	if p == nil || !strings.Contains(fmt.Sprint(p), "cannot apply log entry 2") || !strings.Contains(fmt.Sprint(p), "checksum mismatch") {
		t.Fatalf("panic %v, want the entry named and its checksum mismatch", p)
	}
	if s := buf.String(); !strings.Contains(s, "stopping: a committed log entry cannot be applied") || !strings.Contains(s, "index=2") {
		t.Fatalf("log: %q", s)
	}
	if st := tf.State(); st.Index() != 0 || st.KVLen() != 0 {
		t.Fatalf("a batch that stopped was published: index %d, %d keys", st.Index(), st.KVLen())
	}
}

// TestLogBytes_TriggerAndTrailingLogs: the size-aware snapshot trigger
// kicks once the bytes applied since the last snapshot pass
// max(4 MiB, last snapshot / 8), restarts at each snapshot, and sizes the
// trailing logs to about 2 MiB of entries of the average size seen.
func TestLogBytes_TriggerAndTrailingLogs(t *testing.T) {
	t.Parallel()
	lb := newLogBytes(0)
	if got := lb.limit.Load(); got != snapshotLogMinBytes {
		t.Fatalf("limit %d with no snapshot, want %d", got, snapshotLogMinBytes)
	}
	lb.setLimit(64 << 20)
	if got := lb.limit.Load(); got != 8<<20 {
		t.Fatalf("limit %d after a 64 MiB snapshot, want 8 MiB", got)
	}
	kicked := func() bool {
		select {
		case <-lb.kick:
			return true
		default:
			return false
		}
	}
	lb.applied(1024, 4<<20)
	if kicked() {
		t.Fatal("kicked at 4 MiB with an 8 MiB limit")
	}
	lb.applied(1024, 4<<20)
	if !kicked() {
		t.Fatal("not kicked at 8 MiB")
	}
	// 2,048 entries of 4 KiB: 2 MiB is 512 of them.
	if got := lb.trailingLogs(2048); got != 512 {
		t.Fatalf("trailing logs %d for 4 KiB entries, want 512", got)
	}
	lb.snapshotTaken()
	lb.applied(100_000, 100_000*100)
	if got := lb.trailingLogs(2048); got != 2048 {
		t.Fatalf("trailing logs %d for 100-byte entries, want the cap 2048", got)
	}
	lb.snapshotTaken()
	lb.applied(10, 10<<20)
	if got := lb.trailingLogs(2048); got != minTrailingLogs {
		t.Fatalf("trailing logs %d for 1 MiB entries, want the floor %d", got, minTrailingLogs)
	}
	var nilLB *logBytes
	nilLB.applied(1, 1) // a trackedFSM without a trigger
	nilLB.snapshotTaken()
}
