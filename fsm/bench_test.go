package fsm_test

import (
	"io"
	"testing"

	"github.com/coordd/coordd/fsm"
)

// BenchmarkWriteState_100kLeases measures writing a snapshot of 100,000
// leases (the cost a snapshot adds beside Apply).
func BenchmarkWriteState_100kLeases(b *testing.B) {
	s := fsm.New().State()
	for i := range 100_000 {
		s, _ = fsm.ApplyCommand(s, uint64(i+1), 1, fsm.NewLeaseGrant(60_000))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := fsm.WriteState(io.Discard, s); err != nil {
			b.Fatal(err)
		}
	}
}
