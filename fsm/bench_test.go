package fsm_test

import (
	"fmt"
	"io"
	"testing"

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
