package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// Snapshot policy. Raft snapshots the state machine and compacts its log
// behind the snapshot (keeping TrailingLogs entries for slow followers):
//
//   - on a log-size threshold: once SnapshotThreshold entries were appended
//     since the last snapshot (checked every SnapshotThresholdCheck, with
//     Raft's random stagger of up to one more period);
//   - on a time interval: every SnapshotInterval, when anything was applied
//     since the last snapshot, so that a quiet cluster's snapshot is never
//     older than that.
//
// Taking a snapshot costs O(1) on the FSM goroutine (the state is an
// immutable tree); writing it to disk runs beside Apply.

// ErrNothingNewToSnapshot means no entry was applied since the last snapshot.
var ErrNothingNewToSnapshot = errors.New("server: nothing new to snapshot")

// SnapshotInfo describes the latest snapshot in this node's snapshot store.
type SnapshotInfo struct {
	// ID is the snapshot store's name for it.
	ID string `json:"id"`
	// Index and Term are the Raft index and term it covers.
	Index uint64 `json:"index"`
	Term  uint64 `json:"term"`
	// Size in bytes.
	Size int64 `json:"size"`
	// Time it was completed (or, for one found at startup, its file's
	// modification time).
	Time time.Time `json:"time"`
	// Duration it took to write (0 for one found at startup).
	Duration time.Duration `json:"duration"`
}

// snapshotStats records the snapshots written to the store, for metrics
// and status.
type snapshotStats struct {
	mu       sync.Mutex
	last     SnapshotInfo
	duration prometheus.Histogram
	written  prometheus.Counter
	failed   prometheus.Counter
}

func newSnapshotStats() *snapshotStats {
	return &snapshotStats{
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "coordd_snapshot_duration_seconds",
			Help:    "Time to write a snapshot to the snapshot store (taken here, installed from the leader, or restored from a backup).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 18),
		}),
		written: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "coordd_snapshots_written_total", Help: "Snapshots written to the snapshot store.",
		}),
		failed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "coordd_snapshots_failed_total", Help: "Snapshots that failed or were cancelled while being written.",
		}),
	}
}

func (st *snapshotStats) load() SnapshotInfo {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.last
}

func (st *snapshotStats) record(info SnapshotInfo) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if info.Index >= st.last.Index {
		st.last = info
	}
}

func (st *snapshotStats) collectors() []prometheus.Collector {
	gauge := func(name, help string, f func(SnapshotInfo) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return f(st.load()) })
	}
	return []prometheus.Collector{
		st.duration, st.written, st.failed,
		gauge("coordd_snapshot_last_index", "Raft index of the latest snapshot on this node.", func(i SnapshotInfo) float64 {
			return float64(i.Index)
		}),
		gauge("coordd_snapshot_last_size_bytes", "Size of the latest snapshot on this node.", func(i SnapshotInfo) float64 {
			return float64(i.Size)
		}),
		gauge("coordd_snapshot_last_timestamp_seconds", "Unix time the latest snapshot was completed (0: none).", func(i SnapshotInfo) float64 {
			if i.Time.IsZero() {
				return 0
			}
			return float64(i.Time.UnixNano()) / 1e9
		}),
		gauge("coordd_snapshot_age_seconds", "Seconds since the latest snapshot was completed (-1: none).", func(i SnapshotInfo) float64 {
			if i.Time.IsZero() {
				return -1
			}
			return time.Since(i.Time).Seconds()
		}),
	}
}

// statsSnapshotStore wraps Raft's snapshot store to time and measure every
// snapshot written through it.
type statsSnapshotStore struct {
	raft.SnapshotStore
	stats *snapshotStats
	// guard makes List return the newest snapshot or fail (integrity.go).
	guard snapshotGuard
	// openErr is the last error of Open, for the startup error message.
	openErr atomic.Pointer[error]
}

// newStatsSnapshotStore wraps store and seeds the stats with the latest
// snapshot already on disk under dir.
func newStatsSnapshotStore(store raft.SnapshotStore, dir string, stats *snapshotStats) *statsSnapshotStore {
	if metas, err := store.List(); err == nil && len(metas) > 0 {
		m := metas[0]
		info := SnapshotInfo{ID: m.ID, Index: m.Index, Term: m.Term, Size: m.Size}
		if fi, err := os.Stat(filepath.Join(dir, "snapshots", m.ID, "meta.json")); err == nil {
			info.Time = fi.ModTime()
		}
		stats.record(info)
	}
	return &statsSnapshotStore{SnapshotStore: store, stats: stats, guard: snapshotGuard{dir: filepath.Join(dir, "snapshots")}}
}

func (s *statsSnapshotStore) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration,
	configurationIndex uint64, trans raft.Transport) (raft.SnapshotSink, error) {
	sink, err := s.SnapshotStore.Create(version, index, term, configuration, configurationIndex, trans)
	if err != nil {
		s.stats.failed.Inc()
		return nil, err
	}
	return &statsSink{SnapshotSink: sink, stats: s.stats, start: time.Now(), index: index, term: term}, nil
}

type statsSink struct {
	raft.SnapshotSink
	stats       *snapshotStats
	start       time.Time
	index, term uint64
	size        int64
	failed      bool
}

func (k *statsSink) Write(p []byte) (int, error) {
	n, err := k.SnapshotSink.Write(p)
	k.size += int64(n)
	return n, err
}

func (k *statsSink) Cancel() error {
	if !k.failed {
		k.failed = true
		k.stats.failed.Inc()
	}
	return k.SnapshotSink.Cancel()
}

func (k *statsSink) Close() error {
	if err := k.SnapshotSink.Close(); err != nil {
		if !k.failed {
			k.failed = true
			k.stats.failed.Inc()
		}
		return err
	}
	if k.failed {
		return nil
	}
	took := time.Since(k.start)
	k.stats.duration.Observe(took.Seconds())
	k.stats.written.Inc()
	k.stats.record(SnapshotInfo{ID: k.ID(), Index: k.index, Term: k.term, Size: k.size, Time: time.Now(), Duration: took})
	return nil
}

// LastSnapshot describes the latest snapshot in this node's store; ok is
// false when there is none.
func (s *Server) LastSnapshot() (SnapshotInfo, bool) {
	info := s.snapStats.load()
	return info, info.ID != ""
}

// TakeSnapshot snapshots the state machine now (as the policy would) and
// compacts the log behind it. It returns ErrNothingNewToSnapshot when no
// entry was applied since the last snapshot.
func (s *Server) TakeSnapshot(ctx context.Context) (SnapshotInfo, error) {
	// Raft itself refuses only when nothing at all was applied since the
	// node started; compare with the latest snapshot instead.
	if last, ok := s.LastSnapshot(); ok && s.fsm.State().Index() <= last.Index {
		return SnapshotInfo{}, fmt.Errorf("%w: the latest snapshot covers index %d", ErrNothingNewToSnapshot, last.Index)
	}
	f := s.raft.Snapshot()
	if err := waitFuture(ctx, f); err != nil {
		if errors.Is(err, raft.ErrNothingNewToSnapshot) {
			return SnapshotInfo{}, fmt.Errorf("%w: %v", ErrNothingNewToSnapshot, err)
		}
		return SnapshotInfo{}, fmt.Errorf("server: snapshot: %w", translate(err))
	}
	// The store's sink recorded it when it closed, before the future
	// completed.
	info, _ := s.LastSnapshot()
	return info, nil
}

// runSnapshotTimer takes a snapshot every SnapshotInterval when anything
// was applied since the last one (the time trigger; Raft itself watches
// the log-size threshold).
func (s *Server) runSnapshotTimer() {
	t := time.NewTicker(s.cfg.SnapshotInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		info, err := s.TakeSnapshot(ctx)
		cancel()
		switch {
		case err == nil:
			s.log.Info("snapshot taken (interval)", "index", info.Index, "bytes", info.Size, "took", info.Duration)
		case errors.Is(err, ErrNothingNewToSnapshot), errors.Is(err, ErrShutdown):
		default:
			s.log.Warn("interval snapshot failed", "error", err)
		}
	}
}

// The size-aware trigger. Raft's own trigger counts entries
// (SnapshotThreshold), and the log on disk is what a member pays for
// the entries since its last snapshot plus TrailingLogs behind it: with
// 4 KiB values, 8,192 + 2,048 entries are 40 MiB of log, about twice that
// in bbolt pages (a 4 KiB value takes two), and a bbolt file never
// shrinks. So coordd also snapshots when the entries applied since the
// last snapshot hold more than max(snapshotLogMinBytes, last snapshot
// size / snapshotLogFraction) bytes (a snapshot then costs at most
// snapshotLogFraction times the log bytes that called for it), and keeps
// about trailingLogBytes of entries behind a snapshot (at least
// minTrailingLogs entries, at most -trailing-logs): the log stays a small
// fraction of the state whatever the entries' size.
const (
	snapshotLogMinBytes = 4 << 20
	snapshotLogFraction = 8
	trailingLogBytes    = 2 << 20
	minTrailingLogs     = 16
)

// logBytes counts the command entries applied since the last snapshot
// began (trackedFSM counts on the FSM goroutine; the trigger reads).
type logBytes struct {
	bytes, entries atomic.Uint64
	// limit is the byte count that calls for a snapshot.
	limit atomic.Uint64
	kick  chan struct{}
}

func newLogBytes(lastSnapshotSize int64) *logBytes {
	lb := &logBytes{kick: make(chan struct{}, 1)}
	lb.setLimit(lastSnapshotSize)
	return lb
}

// setLimit derives the trigger from the size of the latest snapshot.
func (lb *logBytes) setLimit(snapshotSize int64) {
	lb.limit.Store(max(snapshotLogMinBytes, uint64(max(snapshotSize, 0))/snapshotLogFraction))
}

// applied counts entries of the given total size, and kicks the trigger
// once the limit is passed. Nil-safe (tests build trackedFSMs without).
func (lb *logBytes) applied(entries, bytes uint64) {
	if lb == nil {
		return
	}
	lb.entries.Add(entries)
	if lb.bytes.Add(bytes) >= lb.limit.Load() {
		select {
		case lb.kick <- struct{}{}:
		default:
		}
	}
}

// snapshotTaken restarts the count: the log behind this snapshot is
// compacted.
func (lb *logBytes) snapshotTaken() {
	if lb == nil {
		return
	}
	lb.bytes.Store(0)
	lb.entries.Store(0)
}

// trailingLogs is how many entries to keep behind a snapshot: about
// trailingLogBytes of entries of the average size seen since the last
// snapshot, within [minTrailingLogs, max].
func (lb *logBytes) trailingLogs(most uint64) uint64 {
	n, b := lb.entries.Load(), lb.bytes.Load()
	if n == 0 || b == 0 {
		return most
	}
	t := uint64(trailingLogBytes) / max(b/n, 1)
	return min(max(t, minTrailingLogs), most)
}

// runLogBytesSnapshots takes a snapshot each time the entries applied
// since the last one pass the byte limit (see logBytes), first sizing
// Raft's TrailingLogs to the entries' average size.
func (s *Server) runLogBytesSnapshots() {
	lb := s.logBytes
	for {
		select {
		case <-s.stop:
			return
		case <-lb.kick:
		}
		if lb.bytes.Load() < lb.limit.Load() {
			continue // a snapshot came in between
		}
		s.reloadMu.Lock()
		cur := s.raft.ReloadableConfig()
		if want := lb.trailingLogs(s.cfg.TrailingLogs); want != cur.TrailingLogs {
			cur.TrailingLogs = want
			if err := s.raft.ReloadConfig(cur); err != nil {
				s.log.Warn("cannot size the trailing logs", "error", err)
			}
		}
		s.reloadMu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		info, err := s.TakeSnapshot(ctx)
		cancel()
		switch {
		case err == nil:
			lb.setLimit(info.Size)
			s.log.Info("snapshot taken (log size)", "index", info.Index, "bytes", info.Size, "took", info.Duration,
				"trailing_logs", s.raft.ReloadableConfig().TrailingLogs)
		case errors.Is(err, ErrNothingNewToSnapshot), errors.Is(err, ErrShutdown):
		default:
			s.log.Warn("log-size snapshot failed", "error", err)
			select { // retry after a pause rather than at every apply
			case <-s.stop:
				return
			case <-time.After(time.Second):
			}
		}
	}
}
