package lease

import (
	"testing"
	"time"
)

const benchLeases = 100_000

func grantN(l *Lessor, n int, ttl time.Duration) {
	for id := 1; id <= n; id++ {
		l.Grant(Info{ID: uint64(id), TTL: ttl, Epoch: uint64(id)})
	}
}

// BenchmarkKeepalive: b.N keepalives spread over 100k leases, on the real
// clock (so every keepalive moves a deadline, as in production).
func BenchmarkKeepalive(b *testing.B) {
	l := New(Config{})
	l.Promote(nil, time.Now().UnixNano())
	grantN(l, benchLeases, time.Minute)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if _, _, err := l.Keepalive(uint64(i%benchLeases) + 1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkKeepaliveParallel: the same from GOMAXPROCS goroutines (one
// mutex).
func BenchmarkKeepaliveParallel(b *testing.B) {
	l := New(Config{})
	l.Promote(nil, time.Now().UnixNano())
	grantN(l, benchLeases, time.Minute)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i += 7919
			if _, _, err := l.Keepalive(uint64(i%benchLeases) + 1); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkExpired: 10k of 100k leases expire at once; one op is the
// Expired call that returns all 10k (Forget and re-grant are not timed).
func BenchmarkExpired(b *testing.B) {
	const expiring = 10_000
	clk := NewFakeClock(t0)
	l := New(Config{Clock: clk, MaxBatch: expiring})
	l.Promote(nil, t0.UnixNano())
	for id := expiring + 1; id <= benchLeases; id++ {
		l.Grant(Info{ID: uint64(id), TTL: 1000 * time.Hour, Epoch: 1})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		for id := 1; id <= expiring; id++ {
			// deadlines spread over a second, in no particular order
			l.Grant(Info{ID: uint64(id), TTL: time.Duration(id*7919%expiring) * 100 * time.Microsecond, Epoch: 2})
		}
		clk.Advance(2 * time.Second)
		b.StartTimer()
		if got := l.Expired(); len(got) != expiring {
			b.Fatalf("expired %d", len(got))
		}
		b.StopTimer()
		for id := 1; id <= expiring; id++ {
			l.Forget(uint64(id))
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*expiring), "ns/lease")
}

// BenchmarkPromote: a new leader takes over 100k leases, half of them with
// a checkpointed remainder.
func BenchmarkPromote(b *testing.B) {
	infos := make([]Info, benchLeases)
	wall := t0.UnixNano()
	for i := range infos {
		infos[i] = Info{ID: uint64(i + 1), TTL: time.Minute, Epoch: uint64(i + 1)}
		if i%2 == 0 {
			infos[i].Remaining, infos[i].CheckpointStamp = 30*time.Second, wall-int64(time.Second)
		}
	}
	l := New(Config{Clock: NewFakeClock(t0)})
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		l.Promote(infos, wall)
	}
}

// BenchmarkDueCheckpoints: right after Promote, 100k leases are due; one op
// hands out one batch of 1000.
func BenchmarkDueCheckpoints(b *testing.B) {
	clk := NewFakeClock(t0)
	l := New(Config{Clock: clk})
	infos := make([]Info, benchLeases)
	for i := range infos {
		infos[i] = Info{ID: uint64(i + 1), TTL: time.Hour, Epoch: uint64(i + 1)}
	}
	l.Promote(infos, t0.UnixNano())
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if i%(benchLeases/DefaultMaxBatch) == 0 {
			clk.Advance(2 * time.Second) // every hold-off over: all due again
		}
		if got := l.DueCheckpoints(); len(got) != DefaultMaxBatch {
			b.Fatalf("batch of %d", len(got))
		}
	}
}
