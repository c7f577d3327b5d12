package fsm_test

import (
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/coordd/coordd/fsm"
)

// BenchmarkWriteState_100kLeases measures writing a snapshot of 100,000
// leases (the cost a snapshot adds beside Apply).
func BenchmarkWriteState_100kLeases(b *testing.B) {
	s := fsm.New().State()
	for i := range 100_000 {
		s, _ = fsm.ApplyCommand(s, uint64(i+1), 1, cmdOf(fsm.LeaseGrant{TTL: 60_000}))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := fsm.WriteState(io.Discard, s); err != nil {
			b.Fatal(err)
		}
	}
}

// benchFSM returns an FSM holding n leases (IDs 1..n), applied through
// FSM.Apply as Raft would, and the next free index.
func benchFSM(b *testing.B, n int) (*fsm.FSM, uint64) {
	b.Helper()
	f := fsm.New()
	var index uint64
	for range n {
		index++
		f.Apply(&raft.Log{Index: index, Term: 1, Data: cmdOf(fsm.LeaseGrant{TTL: 60_000}).Encode()})
	}
	return f, index + 1
}

// benchApply applies b.N commands made by next through FSM.Apply (the live
// path: watch channels notified), each with an idempotency key as the Go
// client sends, on a state that already holds 100,000 leases.
func benchApply(b *testing.B, next func(i int) fsm.Command) {
	f, index := benchFSM(b, 100_000)
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		cmd := next(i)
		cmd.IdempotencyKey = fmt.Sprintf("k%016x", i)
		cmd.Stamp = int64(i) * 1000
		res := f.Apply(&raft.Log{Index: index, Term: 1, Data: cmd.Encode()}).(*fsm.Result)
		if res.Err != nil {
			b.Fatal(res.Err)
		}
		index++
		i++
	}
}

// BenchmarkApply_KVPut: one put of a new key per op.
func BenchmarkApply_KVPut(b *testing.B) {
	benchApply(b, func(i int) fsm.Command {
		return cmdOf(fsm.KVPut{Key: fmt.Sprintf("bench/%d", i), Value: []byte("value")})
	})
}

// BenchmarkApply_LockExistingLease: a new lock per op, held by one of the
// 100,000 leases (coordbench acquire).
func BenchmarkApply_LockExistingLease(b *testing.B) {
	benchApply(b, func(i int) fsm.Command {
		return cmdOf(fsm.Campaign{Kind: fsm.KindLock, Name: fmt.Sprintf("bench/%d", i), Lease: uint64(i%100_000 + 1)})
	})
}

// BenchmarkApply_LockNewLease: a new lease and a new lock in one entry per
// op (coordbench acquire-new).
func BenchmarkApply_LockNewLease(b *testing.B) {
	benchApply(b, func(i int) fsm.Command {
		return cmdOf(fsm.Campaign{Kind: fsm.KindLock, Name: fmt.Sprintf("bench/%d", i), NewLeaseTTL: 5000})
	})
}

// BenchmarkApply_LeaseRenewMany: one entry renewing 1,000 of the 100,000
// leases (server.renewPerEntry: the most a keepalive of many checkpointed
// leases puts in one entry). ns/op is how long other requests wait behind
// the entry.
func BenchmarkApply_LeaseRenewMany(b *testing.B) {
	benchApply(b, func(i int) fsm.Command {
		p := fsm.LeaseRenewMany{IDs: make([]uint64, 1000)}
		for j := range p.IDs {
			p.IDs[j] = uint64((i*1000+j)%100_000 + 1)
		}
		return cmdOf(p)
	})
}

// BenchmarkCommand_EncodeDecode: the envelope and payload of a campaign,
// written and read back.
func BenchmarkCommand_EncodeDecode(b *testing.B) {
	cmd := cmdOf(fsm.Campaign{Kind: fsm.KindLock, Name: "jobs/nightly-report", Lease: 123456, Value: []byte("10.0.0.7:5432")})
	cmd.IdempotencyKey, cmd.Stamp = "0123456789abcdef0123456789abcdef", 1_700_000_000_000_000_000
	b.ReportAllocs()
	for b.Loop() {
		if _, err := fsm.DecodeCommand(cmd.Encode()); err != nil {
			b.Fatal(err)
		}
	}
}

// bigLeaseState is a state where lease 1 holds n locks (each with a
// waiting candidate, lease 2, to hand off to, and a lock-delay) and n keys
// attached to it, beside 10,000 other leases; index is the next free one.
func bigLeaseState(b *testing.B, n int) (s *fsm.State, index uint64) {
	b.Helper()
	f, index := benchFSM(b, 10_000)
	apply := func(p fsm.Payload) {
		c := cmdOf(p)
		if res := f.Apply(&raft.Log{Index: index, Term: 1, Data: c.Encode()}).(*fsm.Result); res.Err != nil {
			b.Fatal(res.Err)
		}
		index++
	}
	for i := range n {
		name := fmt.Sprintf("jobs/%d", i)
		apply(fsm.Campaign{Kind: fsm.KindLock, Name: name, Lease: 1, LockDelay: 1000})
		apply(fsm.Campaign{Kind: fsm.KindLock, Name: name, Lease: 2})
		apply(fsm.KVPut{Key: fmt.Sprintf("owned/%d", i), Value: []byte("x"), Lease: 1})
	}
	return f.State(), index
}

// BenchmarkApply_ExpireLeaseWith10kLocksAndKeys: one expiry entry of a
// lease that holds 10,000 locks (each handed to a waiting candidate) and
// 10,000 keys, applied through FSM.Apply (watchers notified): how long
// every other request waits behind it.
func BenchmarkApply_ExpireLeaseWith10kLocksAndKeys(b *testing.B) {
	base, index := bigLeaseState(b, 10_000)
	l, _ := base.Lease(1)
	data := cmdOf(fsm.LeaseExpire{Leases: []fsm.LeaseExpiry{{ID: 1, Epoch: l.Epoch}}}).Encode()
	f := fsm.New()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		f.SetState(base)
		b.StartTimer()
		res := f.Apply(&raft.Log{Index: index, Term: 1, Data: data}).(*fsm.Result)
		if len(res.Expired) != 1 {
			b.Fatalf("expired %v", res.Expired)
		}
	}
}

// BenchmarkApply_ExpireLeaseWith10kLocksAndKeys_Bounded: the same lease's
// expiry as the server proposes it (fsm.ReleasePerEntry), then the
// LeaseRelease entries that release the rest: ns/op is the whole release,
// max-entry-ms the longest single entry (what other requests wait
// behind), entries how many it took.
func BenchmarkApply_ExpireLeaseWith10kLocksAndKeys_Bounded(b *testing.B) {
	base, index := bigLeaseState(b, 10_000)
	l, _ := base.Lease(1)
	expire := cmdOf(fsm.LeaseExpire{Leases: []fsm.LeaseExpiry{{ID: 1, Epoch: l.Epoch}}, Release: fsm.ReleasePerEntry}).Encode()
	release := cmdOf(fsm.LeaseRelease{ID: 1, Release: fsm.ReleasePerEntry}).Encode()
	f := fsm.New()
	var longest time.Duration
	entries := 0
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		f.SetState(base)
		b.StartTimer()
		i, data := index, expire
		entries = 0
		for {
			start := time.Now()
			f.Apply(&raft.Log{Index: i, Term: 1, Data: data})
			longest = max(longest, time.Since(start))
			entries++
			if f.State().UnreleasedCount() == 0 {
				break
			}
			i, data = i+1, release
		}
	}
	b.ReportMetric(float64(longest.Microseconds())/1000, "max-entry-ms")
	b.ReportMetric(float64(entries), "entries")
}

// benchApplyBatches is benchApply through FSM.ApplyBatch, batch entries
// at a time (Raft hands the FSM the entries committed together).
func benchApplyBatches(b *testing.B, batch int, next func(i int) fsm.Command) {
	f, index := benchFSM(b, 100_000)
	logs := make([]*raft.Log, 0, batch)
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		cmd := next(i)
		cmd.IdempotencyKey = fmt.Sprintf("k%016x", i)
		cmd.Stamp = int64(i) * 1000
		logs = append(logs, &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: cmd.Encode()})
		index++
		i++
		if len(logs) == batch {
			for _, r := range f.ApplyBatch(logs) {
				if err := r.(*fsm.Result).Err; err != nil {
					b.Fatal(err)
				}
			}
			logs = logs[:0]
		}
	}
	f.ApplyBatch(logs)
}

// BenchmarkApplyBatch16_LockExistingLease: BenchmarkApply_LockExistingLease
// in batches of 16 entries (64 clients: Raft commits about that many
// together).
func BenchmarkApplyBatch16_LockExistingLease(b *testing.B) {
	benchApplyBatches(b, 16, func(i int) fsm.Command {
		return cmdOf(fsm.Campaign{Kind: fsm.KindLock, Name: fmt.Sprintf("bench/%d", i), Lease: uint64(i%100_000 + 1)})
	})
}

// BenchmarkApplyBatch16_KVPut: BenchmarkApply_KVPut in batches of 16.
func BenchmarkApplyBatch16_KVPut(b *testing.B) {
	benchApplyBatches(b, 16, func(i int) fsm.Command {
		return cmdOf(fsm.KVPut{Key: fmt.Sprintf("bench/%d", i), Value: []byte("value")})
	})
}
