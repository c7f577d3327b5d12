package server_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coordd/coordd/fsm"
	"github.com/coordd/coordd/internal/testcluster"
)

// countingWriter counts the bytes written to it.
type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

// BenchmarkChurn_UniqueLockNames: 1,000 unique lock names per second (one
// per job, the workload of issue 16) must keep the state, the heap and the
// snapshot flat: a released name is collected in the entry that released
// it. One in-process node (real Raft, bbolt in a temp dir); each name is
// locked with a shared lease (one entry) and released (one entry) through
// Server.Apply, 1,000 names a second from 32 workers, for
// COORDD_BENCH_CHURN_DURATION (default 10m). At 1, 5 and 10 minutes (and
// at the end) it prints the state's entries (elections, leases, keys,
// idempotency records), the live heap after a GC and the size of a
// snapshot of the state.
//
// Run: make bench-churn (go test -run '^$' -bench Churn -benchtime 1x
// -timeout 20m ./server/).
func BenchmarkChurn_UniqueLockNames(b *testing.B) {
	duration := 10 * time.Minute
	if v := os.Getenv("COORDD_BENCH_CHURN_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			b.Fatalf("COORDD_BENCH_CHURN_DURATION=%q: want a positive duration", v)
		}
		duration = d
	}
	const rate, workers = 1000, 32
	for range b.N {
		c := testcluster.New(b, 1)
		srv := c.Leader().Server()
		ctx := context.Background()
		propose := func(p fsm.Payload) (*fsm.Result, error) {
			cmd, err := fsm.NewCommand(p)
			if err != nil {
				return nil, err
			}
			res, err := srv.Apply(ctx, cmd)
			if err == nil && res.Err != nil {
				err = res.Err
			}
			return res, err
		}
		res, err := propose(fsm.LeaseGrant{TTL: (24 * time.Hour).Milliseconds()})
		if err != nil {
			b.Fatal(err)
		}
		lease := res.Lease.ID
		names := make(chan string, rate)
		start := time.Now()
		var done, failed atomic.Int64
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for name := range names {
					r, err := propose(fsm.Campaign{Kind: fsm.KindLock, Name: name, Lease: lease})
					if err == nil {
						_, err = propose(fsm.Resign{Name: name, Lease: lease, Token: r.Index})
					}
					if err != nil {
						failed.Add(1)
						continue
					}
					done.Add(1)
				}
			}()
		}
		report := func(mark time.Duration) {
			at := time.Since(start)
			st := srv.State()
			var w countingWriter
			if err := fsm.WriteState(&w, st); err != nil {
				b.Fatal(err)
			}
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			fmt.Printf("churn %5s (at %s): %7d names (%d failed), %4.0f/s; state: %d elections, %d leases, %d keys, %d idempotency records; heap %.1f MiB; snapshot %d bytes\n",
				mark.Round(time.Second), at.Round(time.Second), done.Load(), failed.Load(), float64(done.Load())/at.Seconds(),
				st.ElectionCount(), st.LeaseCount(), st.KVLen(), st.DedupLen(), float64(ms.HeapAlloc)/(1<<20), w.n)
		}
		// The marks are reported by their own goroutine, so that a
		// dispatcher held up by slow applies does not delay them.
		marks := []time.Duration{time.Minute, 5 * time.Minute, 10 * time.Minute}
		stopMarks := make(chan struct{})
		marksDone := make(chan struct{})
		go func() {
			defer close(marksDone)
			for _, m := range marks {
				if m > duration {
					return
				}
				select {
				case <-stopMarks:
					return
				case <-time.After(time.Until(start.Add(m))):
					report(m)
				}
			}
		}()
		tick := time.NewTicker(10 * time.Millisecond)
		sent, behind := 0, 0
		for time.Since(start) < duration {
			<-tick.C
			for want := int(time.Since(start).Seconds() * rate); sent+behind < want; {
				select {
				case names <- fmt.Sprintf("job-%09d", sent):
					sent++
				default:
					behind++ // the workers lag: this name is not sent
				}
			}
		}
		close(stopMarks)
		<-marksDone
		tick.Stop()
		close(names)
		wg.Wait()
		report(time.Since(start))
		fmt.Printf("churn: %d names sent, %d not sent because the workers lagged\n", sent, behind)
		if st := srv.State(); st.ElectionCount() > workers {
			b.Fatalf("%d elections left after every name was released", st.ElectionCount())
		}
		b.ReportMetric(float64(done.Load())/time.Since(start).Seconds(), "names/s")
	}
}
