package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coordd/coordd/fsm"
	"github.com/coordd/coordd/internal/testcluster"
	"github.com/coordd/coordd/server"
)

// Issue 5: a snapshot of 1,000,000 leases must not raise write latency
// noticeably. Three in-process nodes (real Raft, real bbolt files, loopback
// TCP), 1M leases of TTL 1h, then KV puts at a bounded rate from several
// writers, through HTTP on the leader and through Server.Apply, in four
// phases:
//
//	first   the first snapshot of every node, which also compacts the
//	        ~1M-entry log the grants left behind (an artifact of the high
//	        threshold set here: with the default threshold of 8192 entries
//	        the log never grows that long)
//	base    no snapshot
//	leader  snapshots back to back on the leader
//	all     snapshots back to back on all three nodes at once
//
// In the snapshot phases only writes that started while a snapshot call
// (persist and compaction) was running are counted. Each phase starts
// after a forced GC, 0.5 s after its writers; base lasts 10 s, the
// snapshot phases at least 10 s.
//
// The nodes share one process and its cores, which makes "all" pessimistic
// (a real node snapshots on its own cores). The lease checkpoint interval is
// set to 1 h: at the default 5 s, the leader would checkpoint all 1M idle
// leases through Raft every 5 s, which is a load of its own and not what this
// measures. Only the snapshots this benchmark takes happen (threshold and
// interval out of the way). Raft failure detection is slowed down (see
// sbRun) so that a noisy host does not cause elections.
//
// Run: go test -run '^$' -bench 'Snapshot_' -benchtime 1x -count 3 -timeout 45m ./server/
// (about 4–5 minutes per run on 2 cores, most of it granting).
// COORDD_BENCH_SNAP_LEASES overrides the number of leases;
// COORDD_BENCH_SNAP_PROFILE=DIR writes a CPU profile of each phase to
// DIR/<phase>.cpu (do not combine with -cpuprofile).
func BenchmarkSnapshot_WriteLatencyDuringSnapshot_1MLeases(b *testing.B) {
	nLeases := 1_000_000
	if v := os.Getenv("COORDD_BENCH_SNAP_LEASES"); v != "" {
		if _, err := fmt.Sscan(v, &nLeases); err != nil || nLeases <= 0 {
			b.Fatalf("COORDD_BENCH_SNAP_LEASES=%q", v)
		}
	}
	for range b.N {
		sbRun(b, nLeases)
	}
}

const (
	sbGranters    = 256
	sbHTTPWriters = 8
	sbApplyWriter = 8
	// Each writer puts every sbWriteEvery: 16 writers at 50/s = 800/s.
	sbWriteEvery = 20 * time.Millisecond
	sbWindow     = 10 * time.Second
	sbMaxPhase   = 90 * time.Second
	sbLeaseTTLms = 3_600_000 // fsm.NewLeaseGrant takes milliseconds
)

func sbRun(b *testing.B, nLeases int) {
	c := testcluster.New(b, 3, func(cfg *server.Config) {
		cfg.LeaseCheckpointInterval = time.Hour
		cfg.SnapshotThreshold = 1 << 40
		cfg.SnapshotInterval = time.Hour
		cfg.SnapshotThresholdCheck = time.Hour
		// Slower failure detection than the defaults (300/300/150 ms): on
		// a shared 2-core host three in-process nodes plus 256 granters
		// miss the 150 ms leader lease now and then, and an election at 1M
		// leases makes the new leader checkpoint every lease at once. The
		// commit path does not depend on these timeouts.
		cfg.HeartbeatTimeout = time.Second
		cfg.ElectionTimeout = time.Second
		cfg.LeaderLeaseTimeout = 500 * time.Millisecond
	})
	leader := c.Leader()

	// Grant the leases from many goroutines so that Raft batches them.
	term0 := leader.Server().Status().Term
	grantStart := time.Now()
	var next, retries atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, sbGranters)
	deadline := time.Now().Add(10 * time.Minute)
	for range sbGranters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for int(next.Add(1)) <= nLeases {
				for attempt := 0; ; attempt++ {
					if time.Now().After(deadline) {
						errc <- errors.New("granting took longer than 10 minutes")
						return
					}
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					res, err := leader.Server().Apply(ctx, fsmCmd(fsm.LeaseGrant{TTL: sbLeaseTTLms}))
					cancel()
					if err == nil && res.Err == nil {
						break
					}
					if err == nil {
						err = res.Err
					}
					if attempt >= 20 {
						errc <- fmt.Errorf("grant: %w", err)
						return
					}
					retries.Add(1)
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	grantTook := time.Since(grantStart)
	if st := leader.Server().Status(); st.State != "Leader" || st.Term != term0 {
		b.Fatalf("an election happened while granting (term %d -> %d, %s is %s); after that every lease is checkpointed at once",
			term0, st.Term, leader.ID, st.State)
	}
	if got := leader.Server().State().LeaseCount(); got < nLeases {
		b.Fatalf("%d leases after granting %d", got, nLeases)
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(grantTook.Seconds(), "grant-s")
	b.ReportMetric(float64(nLeases)/grantTook.Seconds(), "grants/s")
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-inuse-MiB")
	b.Logf("granted %d leases in %s (%.0f/s, %d retries); heap in use after GC %.0f MiB (3 nodes, one process), heap sys %.0f MiB",
		nLeases, grantTook.Round(time.Millisecond), float64(nLeases)/grantTook.Seconds(), retries.Load(),
		float64(ms.HeapInuse)/(1<<20), float64(ms.HeapSys)/(1<<20))

	w := &sbWriters{leader: leader, hc: &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 2 * sbHTTPWriters, IdleConnTimeout: time.Minute},
	}}
	defer w.hc.CloseIdleConnections()
	others := slices.DeleteFunc(slices.Clone(c.Nodes), func(n *testcluster.Node) bool { return n == leader })

	// first: each node's first snapshot, with the log compaction behind it.
	first := w.phase(b, "first", func(stop time.Time) []sbSnap {
		return sbSnapshotAll(b, c.Nodes, time.Time{}, 1)
	})
	for _, s := range first.snaps {
		if s.node == leader {
			b.ReportMetric(float64(s.info.Duration.Milliseconds()), "first-snap-persist-ms")
			b.ReportMetric(float64(s.end.Sub(s.start).Milliseconds()), "first-snap-call-ms")
		}
	}
	first.report(b, "first")

	// base: no snapshot at all.
	base := w.phase(b, "base", func(stop time.Time) []sbSnap {
		time.Sleep(time.Until(stop))
		return nil
	})
	base.report(b, "base")

	// leader: back to back on the leader.
	lead := w.phase(b, "leader", func(stop time.Time) []sbSnap {
		return sbSnapshotAll(b, []*testcluster.Node{leader}, stop, 2)
	})
	lead.report(b, "leader")
	// The file of the leader's last snapshot, before later ones reap it.
	fileSize := sbSnapshotFileSize(b, leader, lead.snaps[len(lead.snaps)-1].info.ID)

	// all: back to back on every node at once.
	all := w.phase(b, "all", func(stop time.Time) []sbSnap {
		return sbSnapshotAll(b, append([]*testcluster.Node{leader}, others...), stop, 2)
	})
	all.report(b, "all")

	// Snapshot figures from the leader-only phase (uncontended by the
	// followers' snapshots).
	var persist, call []time.Duration
	var size int64
	for _, s := range lead.snaps {
		persist = append(persist, s.info.Duration)
		call = append(call, s.end.Sub(s.start))
		size = s.info.Size
	}
	b.ReportMetric(sbMs(sbPct(persist, 0.5)), "snap-persist-ms")
	b.ReportMetric(sbMs(sbPct(call, 0.5)), "snap-call-ms")
	b.ReportMetric(float64(size)/(1<<20), "snap-MiB")
	b.ReportMetric(float64(fileSize)/(1<<20), "snap-file-MiB")
	b.ReportMetric(sbRatio(lead.p(true, 0.99), base.p(true, 0.99)), "leader/base-http-p99-x")
	b.ReportMetric(sbRatio(all.p(true, 0.99), base.p(true, 0.99)), "all/base-http-p99-x")
	for _, ph := range []struct {
		name string
		s    sbPhase
	}{{"leader", lead}, {"all", all}} {
		var d []string
		for _, s := range ph.s.snaps {
			d = append(d, fmt.Sprintf("%s:%s/%s", s.node.ID, s.info.Duration.Round(time.Millisecond), s.end.Sub(s.start).Round(time.Millisecond)))
		}
		b.Logf("%s phase snapshots (node:persist/call): %s", ph.name, strings.Join(d, " "))
	}
	b.Logf("snapshot of %d leases: %d bytes (file %d bytes), persist median %s, call median %s",
		nLeases, size, fileSize, sbPct(persist, 0.5).Round(time.Millisecond), sbPct(call, 0.5).Round(time.Millisecond))
}

// sbSnap is one completed TakeSnapshot call.
type sbSnap struct {
	node       *testcluster.Node
	start, end time.Time
	info       server.SnapshotInfo
}

// sbSnapshotAll takes snapshots back to back on each node (concurrently
// across nodes) until stop has passed and each node took at least minCount,
// or sbMaxPhase ran out. A zero stop means minCount snapshots each.
func sbSnapshotAll(b *testing.B, nodes []*testcluster.Node, stop time.Time, minCount int) []sbSnap {
	var mu sync.Mutex
	var out []sbSnap
	var wg sync.WaitGroup
	begin := time.Now()
	var failed atomic.Value
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for count := 0; (count < minCount || time.Now().Before(stop)) && time.Since(begin) < sbMaxPhase; {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
				t0 := time.Now()
				info, err := n.Server().TakeSnapshot(ctx)
				t1 := time.Now()
				cancel()
				if errors.Is(err, server.ErrNothingNewToSnapshot) {
					time.Sleep(5 * time.Millisecond)
					continue
				}
				if err != nil {
					failed.Store(fmt.Errorf("snapshot on %s: %w", n.ID, err))
					return
				}
				count++
				mu.Lock()
				out = append(out, sbSnap{node: n, start: t0, end: t1, info: info})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	return out
}

// sbSample is one put: when it started and how long it took.
type sbSample struct {
	start time.Time
	took  time.Duration
	http  bool
}

type sbWriters struct {
	leader *testcluster.Node
	hc     *http.Client
	seq    atomic.Int64
}

// sbPhase is what one phase measured: the counted samples and snapshots.
type sbPhase struct {
	http, apply []time.Duration
	snaps       []sbSnap
	failed      int
	firstErr    string
	newTerm     string // non-empty: an election happened during the phase
}

func (p sbPhase) p(http bool, q float64) time.Duration {
	if http {
		return sbPct(p.http, q)
	}
	return sbPct(p.apply, q)
}

func (p sbPhase) report(b *testing.B, name string) {
	for _, via := range []struct {
		name string
		d    []time.Duration
	}{{"http", p.http}, {"apply", p.apply}} {
		b.ReportMetric(sbMs(sbPct(via.d, 0.5)), name+"-"+via.name+"-p50-ms")
		b.ReportMetric(sbMs(sbPct(via.d, 0.99)), name+"-"+via.name+"-p99-ms")
		b.ReportMetric(sbMs(sbPct(via.d, 1)), name+"-"+via.name+"-max-ms")
		b.ReportMetric(float64(len(via.d)), name+"-"+via.name+"-n")
	}
	b.Logf("%-6s http p50 %6.2f p99 %7.2f max %7.2f ms (n=%d) | apply p50 %6.2f p99 %7.2f max %7.2f ms (n=%d) | failed %d",
		name, sbMs(sbPct(p.http, 0.5)), sbMs(sbPct(p.http, 0.99)), sbMs(sbPct(p.http, 1)), len(p.http),
		sbMs(sbPct(p.apply, 0.5)), sbMs(sbPct(p.apply, 0.99)), sbMs(sbPct(p.apply, 1)), len(p.apply), p.failed)
	if p.newTerm != "" {
		b.Errorf("%s: an election happened during the phase (%s): the figures are not comparable", name, p.newTerm)
	}
	if p.failed > 0 {
		b.Errorf("%s: %d writes failed; the first: %s", name, p.failed, p.firstErr)
	}
}

// phase runs the writers while run does its work (run gets the earliest
// time it should stop: sbWindow after the writers warmed up), then keeps
// the samples that started inside a snapshot call, or, when run took no
// snapshot, inside the window.
func (w *sbWriters) phase(b *testing.B, name string, run func(stop time.Time) []sbSnap) sbPhase {
	// Every phase starts from a fresh GC cycle, so that garbage left by
	// the one before is not collected during this one.
	runtime.GC()
	term0 := w.leader.Server().Status().Term
	var mu sync.Mutex
	var samples []sbSample
	var failed atomic.Int64
	var firstErr atomic.Value
	done := make(chan struct{})
	var wg sync.WaitGroup
	// Stops the writers, also when run fails the benchmark.
	stopWriters := sync.OnceFunc(func() {
		close(done)
		wg.Wait()
	})
	defer stopWriters()
	for i := range sbHTTPWriters + sbApplyWriter {
		viaHTTP := i < sbHTTPWriters
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := time.Now().Add(time.Duration(i) * sbWriteEvery / (sbHTTPWriters + sbApplyWriter))
			for n := 0; n < int(sbMaxPhase/sbWriteEvery)+int(sbWindow/sbWriteEvery); n++ {
				select {
				case <-done:
					return
				case <-time.After(time.Until(next)):
				}
				key := fmt.Sprintf("bench/w%02d/%03d", i, n%500)
				val := fmt.Sprintf("%064d", w.seq.Add(1))
				t0 := time.Now()
				err := w.put(viaHTTP, key, val)
				took := time.Since(t0)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				} else {
					mu.Lock()
					samples = append(samples, sbSample{start: t0, took: took, http: viaHTTP})
					mu.Unlock()
				}
				// Open loop at a fixed rate; after a stall, resume the
				// schedule from now rather than bursting.
				next = next.Add(sbWriteEvery)
				if now := time.Now(); next.Before(now) {
					next = now
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond) // warm up
	winStart := time.Now()
	stop := winStart.Add(sbWindow)
	stopProfile := sbProfile(b, name)
	defer stopProfile()
	snaps := run(stop)
	winEnd := time.Now()
	stopProfile()
	stopWriters()
	in := func(t time.Time) bool {
		if snaps == nil {
			return !t.Before(winStart) && t.Before(winEnd)
		}
		for _, s := range snaps {
			if !t.Before(s.start) && t.Before(s.end) {
				return true
			}
		}
		return false
	}
	out := sbPhase{snaps: snaps, failed: int(failed.Load())}
	if st := w.leader.Server().Status(); st.Term != term0 || st.State != "Leader" {
		out.newTerm = fmt.Sprintf("term %d -> %d, %s is %s", term0, st.Term, w.leader.ID, st.State)
	}
	out.firstErr, _ = firstErr.Load().(string)
	for _, s := range samples {
		if !in(s.start) {
			continue
		}
		if s.http {
			out.http = append(out.http, s.took)
		} else {
			out.apply = append(out.apply, s.took)
		}
	}
	return out
}

func (w *sbWriters) put(viaHTTP bool, key, val string) error {
	if !viaHTTP {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		res, err := w.leader.Server().Apply(ctx, fsmCmd(fsm.KVPut{Key: key, Value: []byte(val)}))
		if err == nil {
			err = res.Err
		}
		return err
	}
	req, err := http.NewRequest(http.MethodPut, w.leader.URL()+"/v1/kv/"+key, strings.NewReader(val))
	if err != nil {
		return err
	}
	resp, err := w.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("PUT %s: %d %s", key, resp.StatusCode, body)
	}
	return nil
}

// sbProfile starts a CPU profile of the phase when
// COORDD_BENCH_SNAP_PROFILE names a directory, and returns its stop.
func sbProfile(b *testing.B, name string) func() {
	dir := os.Getenv("COORDD_BENCH_SNAP_PROFILE")
	if dir == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(dir, name+".cpu"))
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		b.Fatal(err)
	}
	return sync.OnceFunc(func() {
		pprof.StopCPUProfile()
		f.Close()
	})
}

// sbSnapshotFileSize is the size of a snapshot's state.bin in the node's
// snapshot store.
func sbSnapshotFileSize(b *testing.B, n *testcluster.Node, id string) int64 {
	fi, err := os.Stat(filepath.Join(n.DataDir, "snapshots", id, "state.bin"))
	if err != nil {
		b.Fatal(err)
	}
	return fi.Size()
}

func sbPct(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*q))]
}

func sbMs(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func sbRatio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// fsmCmd is fsm.NewCommand for a payload the test knows is valid.
func fsmCmd(p fsm.Payload) fsm.Command {
	c, err := fsm.NewCommand(p)
	if err != nil {
		panic(err)
	}
	return c
}
