package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Issue 5, recovery time, on three real coordd processes with 64 MiB and
// 256 MiB of state (values of 256 KiB put through the leader):
//
//   - BenchmarkRecovery_RestartToReady: SIGKILL one follower and start it
//     again; then SIGKILL all three and start all three. Measured from the
//     process start to /readyz 200 (polled every 5 ms), with the time to
//     the first HTTP answer (the snapshot is restored before the HTTP
//     server serves).
//   - BenchmarkRecovery_JoinCatchUp: a fourth, empty node started with
//     -join; measured from its process start until it is ready and has
//     applied the leader's commit index at join time. The log is
//     compacted, so it must be sent the snapshot (InstallSnapshot).
//
// The nodes run with recovFlags: a snapshot every 2 s when anything
// changed, and 128 trailing log entries (the default, 10240, would keep
// 2.5 GiB of 256 KiB entries in the log and a new node would be sent the
// log rather than the snapshot). Each iteration starts a fresh cluster.
//
// Run: go test -run '^$' -bench 'Recovery_' -benchtime 1x -count 3 -timeout 60m ./test/e2e/

var recovFlags = []string{"-snapshot-interval", "2s", "-trailing-logs", "128"}

const (
	recovValueBytes = 256 << 10
	recovWriters    = 4
)

var recovSizes = []struct {
	name  string
	bytes int
}{{"state=64MiB", 64 << 20}, {"state=256MiB", 256 << 20}}

var recovHTTP = &http.Client{
	Timeout:   60 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 2 * recovWriters, IdleConnTimeout: time.Minute},
}

func BenchmarkRecovery_RestartToReady(b *testing.B) {
	for _, size := range recovSizes {
		b.Run(size.name, func(b *testing.B) {
			var m recovMetrics
			for range b.N {
				recovRestartOnce(b, size.bytes, &m)
			}
			m.report(b)
		})
	}
}

func BenchmarkRecovery_JoinCatchUp(b *testing.B) {
	for _, size := range recovSizes {
		b.Run(size.name, func(b *testing.B) {
			var m recovMetrics
			for range b.N {
				recovJoinOnce(b, size.bytes, &m)
			}
			m.report(b)
		})
	}
}

// recovMetrics collects one value per iteration for each metric and
// reports the median.
type recovMetrics struct {
	names []string
	vals  map[string][]float64
}

func (m *recovMetrics) add(name string, v float64) {
	if m.vals == nil {
		m.vals = map[string][]float64{}
	}
	if _, ok := m.vals[name]; !ok {
		m.names = append(m.names, name)
	}
	m.vals[name] = append(m.vals[name], v)
}

func (m *recovMetrics) report(b *testing.B) {
	for _, n := range m.names {
		v := slices.Clone(m.vals[n])
		slices.Sort(v)
		b.ReportMetric(v[len(v)/2], n)
	}
}

func recovMs(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func recovMiB(n int64) float64 { return float64(n) / (1 << 20) }

// recovRestartOnce: fresh cluster, fill, wait for snapshots, then restart
// one follower and then the whole cluster.
func recovRestartOnce(b *testing.B, stateBytes int, m *recovMetrics) {
	procs := recovStartCluster(b, 3, recovFlags...)
	leader := leaderOf(b, procs)
	fillTook, lastIndex := recovFill(b, leader, stateBytes)
	m.add("fill-s", fillTook.Seconds())
	snap := recovWaitSnapshots(b, procs, lastIndex)
	m.add("snapshot-MiB", recovMiB(snap.SizeBytes))

	// One follower.
	var follower *proc
	for _, p := range procs {
		if p != leader {
			follower = p
			break
		}
	}
	follower.kill()
	du := recovDataDir(b, follower.dataDir)
	m.add("follower-datadir-MiB", recovMiB(du.allocated))
	m.add("follower-raftdb-MiB", recovMiB(du.raftDB))
	m.add("follower-snapshots-MiB", recovMiB(du.snapshots))
	up, ready := recovTimeToReady(b, []*proc{follower})
	m.add("follower-http-up-ms", recovMs(up[0]))
	m.add("follower-ready-ms", recovMs(ready[0]))
	b.Logf("%d MiB: filled in %s; snapshot %.1f MiB; follower %s data dir %s; restart: http up %s, ready %s",
		stateBytes>>20, fillTook.Round(time.Millisecond), recovMiB(snap.SizeBytes), follower.id, du,
		up[0].Round(time.Millisecond), ready[0].Round(time.Millisecond))

	// The whole cluster.
	for _, p := range procs {
		p.kill()
	}
	var dirs []string
	for _, p := range procs {
		d := recovDataDir(b, p.dataDir)
		dirs = append(dirs, fmt.Sprintf("%s %s", p.id, d))
		m.add(p.id+"-datadir-MiB", recovMiB(d.allocated))
	}
	up, ready = recovTimeToReady(b, procs)
	slowUp, slowReady := slices.Max(up), slices.Max(ready)
	m.add("cluster-http-up-ms", recovMs(slowUp))
	m.add("cluster-ready-ms", recovMs(slowReady))
	b.Logf("%d MiB: whole cluster restart: data dirs %s; http up %v; ready %v (all ready after %s)",
		stateBytes>>20, strings.Join(dirs, "; "), recovRound(up), recovRound(ready), slowReady.Round(time.Millisecond))
}

// recovJoinOnce: fresh cluster, fill, wait for snapshots and compaction,
// then start an empty fourth node that joins.
func recovJoinOnce(b *testing.B, stateBytes int, m *recovMetrics) {
	procs := recovStartCluster(b, 3, recovFlags...)
	leader := leaderOf(b, procs)
	fillTook, lastIndex := recovFill(b, leader, stateBytes)
	m.add("fill-s", fillTook.Seconds())
	snap := recovWaitSnapshots(b, procs, lastIndex)
	m.add("snapshot-MiB", recovMiB(snap.SizeBytes))

	ls, err := recovGetStatus(leader)
	if err != nil {
		b.Fatal(err)
	}
	if ls.FirstLogIndex <= 1 {
		b.Fatalf("the leader's log is not compacted (first index %d): the new node would not need a snapshot", ls.FirstLogIndex)
	}
	target := ls.CommitIndex

	dir := filepath.Dir(leader.dataDir)
	p := &proc{id: "n4", raftAddr: freePort(b), httpAddr: freePort(b)}
	p.dataDir = filepath.Join(dir, p.id)
	p.logPath = filepath.Join(dir, p.id+".log")
	p.args = append([]string{"-id", p.id, "-data-dir", p.dataDir, "-raft-addr", p.raftAddr,
		"-http-addr", p.httpAddr, "-join", leader.httpAddr, "-log-level", "info"}, recovFlags...)
	b.Cleanup(p.kill)

	start := time.Now()
	p.start(b)
	var up time.Duration
	var st recovStatus
	for deadline := start.Add(2 * time.Minute); ; {
		st, err = recovGetStatus(p)
		if err == nil && up == 0 {
			up = time.Since(start)
		}
		if err == nil && st.Ready && st.AppliedIndex >= target {
			break
		}
		if !p.running() {
			b.Fatalf("%s exited while joining", p.id)
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s not caught up after 2m: %+v %v", p.id, st, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	took := time.Since(start)
	if st.Snapshot == nil || st.Snapshot.Index < ls.FirstLogIndex {
		b.Fatalf("%s caught up without a snapshot install: %+v (leader's first log index %d)", p.id, st.Snapshot, ls.FirstLogIndex)
	}
	m.add("join-http-up-ms", recovMs(up))
	m.add("join-caught-up-ms", recovMs(took))
	m.add("join-install-write-ms", float64(st.Snapshot.DurationMS))
	// Let the install settle on disk, then measure the new node's dir.
	p.kill()
	du := recovDataDir(b, p.dataDir)
	m.add("join-datadir-MiB", recovMiB(du.allocated))
	ldu := recovDataDir(b, leader.dataDir)
	m.add("leader-datadir-MiB", recovMiB(ldu.allocated))
	b.Logf("%d MiB: filled in %s; snapshot %.1f MiB at index %d; leader commit %d, first log index %d; "+
		"new node: http up %s, ready and caught up %s (snapshot written in %d ms); its data dir %s; leader's %s",
		stateBytes>>20, fillTook.Round(time.Millisecond), recovMiB(snap.SizeBytes), snap.Index, target, ls.FirstLogIndex,
		up.Round(time.Millisecond), took.Round(time.Millisecond), st.Snapshot.DurationMS, du, ldu)
}

func recovRound(d []time.Duration) []time.Duration {
	out := make([]time.Duration, len(d))
	for i, x := range d {
		out[i] = x.Round(time.Millisecond)
	}
	return out
}

// recovStartCluster is startCluster with extra flags (and info logs). Every
// process is killed in b.Cleanup.
func recovStartCluster(tb testing.TB, n int, extra ...string) []*proc {
	tb.Helper()
	return startClusterWith(tb, n, "info", 20*time.Second, extra...)
}

// recovFill puts stateBytes of 256 KiB random values through the leader
// from a few writers and returns how long it took and the highest index
// written.
func recovFill(b *testing.B, leader *proc, stateBytes int) (time.Duration, uint64) {
	n := stateBytes / recovValueBytes
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var last uint64
	errc := make(chan error, recovWriters)
	for w := range recovWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.NewChaCha8([32]byte{byte(w), byte(time.Now().UnixNano())})
			val := make([]byte, recovValueBytes)
			for i := w; i < n; i += recovWriters {
				_, _ = rng.Read(val)
				url := fmt.Sprintf("%s/v1/kv/recov/%06d", leader.url(), i)
				var err error
				var idx uint64
				for attempt := 0; attempt < 10; attempt++ {
					if idx, err = recovPut(ctx, url, val); err == nil || ctx.Err() != nil {
						break
					}
					time.Sleep(100 * time.Millisecond)
				}
				if err != nil {
					errc <- err
					return
				}
				mu.Lock()
				last = max(last, idx)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		b.Fatalf("fill: %v", err)
	}
	return time.Since(start), last
}

func recovPut(ctx context.Context, url string, val []byte) (uint64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, bytes.NewReader(val))
	if err != nil {
		return 0, err
	}
	resp, err := recovHTTP.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("PUT %s: %d %s", url, resp.StatusCode, body)
	}
	var w struct {
		Index uint64 `json:"index"`
	}
	if err := json.Unmarshal(body, &w); err != nil || w.Index == 0 {
		return 0, fmt.Errorf("PUT %s: answer %s: %v", url, body, err)
	}
	return w.Index, nil
}

// recovStatus is the part of /v1/status these benchmarks read.
type recovStatus struct {
	ID            string `json:"id"`
	State         string `json:"state"`
	CommitIndex   uint64 `json:"commit_index"`
	AppliedIndex  uint64 `json:"applied_index"`
	LastIndex     uint64 `json:"last_index"`
	Ready         bool   `json:"ready"`
	FirstLogIndex uint64 `json:"first_log_index"`
	Snapshot      *struct {
		Index      uint64 `json:"index"`
		SizeBytes  int64  `json:"size_bytes"`
		DurationMS int64  `json:"duration_ms"`
	} `json:"snapshot"`
}

func recovGetStatus(p *proc) (recovStatus, error) {
	var st recovStatus
	resp, err := recovHTTP.Get(p.url() + "/v1/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("%s status: %d", p.id, resp.StatusCode)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

type recovSnap struct {
	Index     uint64
	SizeBytes int64
}

// recovWaitSnapshots waits until every node has a snapshot covering index
// and has compacted its log behind it, and returns the leader's snapshot.
func recovWaitSnapshots(b *testing.B, procs []*proc, index uint64) recovSnap {
	deadline := time.Now().Add(2 * time.Minute)
	var out recovSnap
	for _, p := range procs {
		for {
			st, err := recovGetStatus(p)
			if err == nil && st.Snapshot != nil && st.Snapshot.Index >= index && st.FirstLogIndex > 1 {
				if st.State == "Leader" || out.Index == 0 {
					out.Index, out.SizeBytes = st.Snapshot.Index, st.Snapshot.SizeBytes
				}
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("%s: no snapshot of everything after 2m: %+v %v", p.id, st, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return out
}

// recovTimeToReady starts the given (stopped) processes at once and
// returns, for each, the time from its start to its first HTTP answer and
// to /readyz 200.
func recovTimeToReady(b *testing.B, ps []*proc) (up, ready []time.Duration) {
	up, ready = make([]time.Duration, len(ps)), make([]time.Duration, len(ps))
	errs := make([]error, len(ps))
	var wg sync.WaitGroup
	for i, p := range ps {
		start := time.Now()
		p.start(b)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for deadline := start.Add(2 * time.Minute); ; {
				resp, err := recovHTTP.Get(p.url() + "/readyz")
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if up[i] == 0 {
						up[i] = time.Since(start)
					}
					if resp.StatusCode == http.StatusOK {
						ready[i] = time.Since(start)
						return
					}
				}
				if !p.running() {
					errs[i] = fmt.Errorf("%s exited while starting", p.id)
					return
				}
				if time.Now().After(deadline) {
					errs[i] = fmt.Errorf("%s not ready after 2m (last error %v)", p.id, err)
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
	return up, ready
}

// recovDU is what a data dir holds: blocks allocated (as du counts them),
// and the apparent sizes of raft.db and of the snapshot store.
type recovDU struct {
	allocated, apparent, raftDB, snapshots int64
	nSnapshots                             int
}

func (d recovDU) String() string {
	return fmt.Sprintf("du %.1f MiB (apparent %.1f: raft.db %.1f, %d snapshots %.1f)",
		recovMiB(d.allocated), recovMiB(d.apparent), recovMiB(d.raftDB), d.nSnapshots, recovMiB(d.snapshots))
}

func recovDataDir(b *testing.B, dir string) recovDU {
	var d recovDU
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := e.Info()
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			d.allocated += st.Blocks * 512
		}
		if e.IsDir() {
			if filepath.Dir(path) == filepath.Join(dir, "snapshots") {
				d.nSnapshots++
			}
			return nil
		}
		d.apparent += fi.Size()
		switch {
		case path == filepath.Join(dir, "raft.db"):
			d.raftDB = fi.Size()
		case strings.HasPrefix(path, filepath.Join(dir, "snapshots")+string(filepath.Separator)):
			d.snapshots += fi.Size()
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	return d
}
