package main

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coordd/coordd/client"
)

// runRecovery starts its own cluster, loads -state-mib of KV state (values
// of -value-kib from 32 writers), waits until every node has a snapshot no
// more than the snapshot threshold behind its log, then -rounds times
// SIGKILLs a follower and restarts it: time from the process start to its
// first HTTP answer and to /readyz 200. Its data dir is measured while it
// is down (apparent size: the sum of file sizes).
func runRecovery(e *env, run int) (Result, error) {
	cfg := e.cfg
	rounds := cfg.rounds
	if rounds == 0 {
		rounds = 3
	}
	valueBytes := cfg.valueKiB << 10
	n := (cfg.stateMiB << 20) / valueBytes
	// coordd snapshots when more than -snapshot-threshold entries (8192 by
	// default) were appended since the last snapshot. A state of fewer
	// entries than twice that (small -state-mib) would never be
	// snapshotted, or only once: lower the threshold for this cluster.
	threshold := uint64(8192)
	var extra []string
	if v, ok := flagValue(cfg.nodeFlags, "snapshot-threshold"); ok {
		if t, err := strconv.ParseUint(v, 10, 64); err == nil && t > 0 {
			threshold = t
		}
	} else if uint64(n) < 2*threshold {
		threshold = uint64(max(n/2, 64))
		extra = []string{"-snapshot-threshold", strconv.FormatUint(threshold, 10)}
		e.logf("recovery run %d: %d entries only: the nodes run with -snapshot-threshold %d", run, n, threshold)
	}
	e.logf("recovery run %d: starting an own cluster", run)
	cl, err := startOwnCluster(e.ctx, &cfg, extra)
	if err != nil {
		return Result{}, err
	}
	defer cl.stop()
	c, err := client.New(e.ctx, client.Config{Endpoints: cl.endpoints()})
	if err != nil {
		return Result{}, fmt.Errorf("client: %w", err)
	}
	defer c.Close()

	e.logf("recovery run %d: loading %d MiB (%d values of %d KiB)", run, cfg.stateMiB, n, cfg.valueKiB)
	fillStart := time.Now()
	var failed atomic.Int64
	err = parallel(n, 32, func(i int) error {
		if e.ctx.Err() != nil {
			return e.ctx.Err()
		}
		val := make([]byte, valueBytes)
		rng := rand.NewChaCha8([32]byte{byte(i), byte(i >> 8), byte(i >> 16), byte(run)})
		_, _ = rng.Read(val)
		ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
		defer cancel()
		if _, err := c.Put(ctx, fmt.Sprintf("coordbench/recovery/%07d", i), val); err != nil {
			failed.Add(1)
			return fmt.Errorf("put: %w", err)
		}
		return nil
	})
	if err != nil {
		return Result{}, fmt.Errorf("load (%d puts failed): %w", failed.Load(), err)
	}
	fill := time.Since(fillStart)
	e.logf("recovery run %d: loaded in %s; waiting for snapshots", run, fill.Round(time.Millisecond))

	snapMiB, err := waitSnapshots(e.ctx, cl, threshold, 3*time.Minute)
	if err != nil {
		return Result{}, err
	}
	leader, _, err := cl.leaderNode(e.ctx, 15*time.Second)
	if err != nil {
		return Result{}, err
	}
	var follower *node
	for _, nd := range cl.nodes {
		if nd != leader {
			follower = nd
			break
		}
	}
	var ready, up []time.Duration
	var du dirUsage
	for r := range rounds {
		follower.kill()
		if du, err = dataDirUsage(follower.dataDir); err != nil {
			return Result{}, err
		}
		start := time.Now()
		if err := follower.start(); err != nil {
			return Result{}, err
		}
		u, rd, err := timeToReady(e.ctx, follower, start, 2*time.Minute)
		if err != nil {
			return Result{}, err
		}
		e.logf("recovery run %d round %d: %s: data dir %s; http up after %s, ready after %s",
			run, r+1, follower.id, du, u.Round(time.Millisecond), rd.Round(time.Millisecond))
		up, ready = append(up, u), append(ready, rd)
	}
	figs := latencyFigures("ready_", ready)[:2] // p50, p99 (of few rounds: ~max)
	figs = append(figs, latencyFigures("http_up_", up)[:1]...)
	figs = append(figs,
		Figure{Key: "datadir_mib", Unit: "MiB", Value: mib(du.total)},
		Figure{Key: "raftdb_mib", Unit: "MiB", Value: mib(du.raftDB)},
		Figure{Key: "snapshots_mib", Unit: "MiB", Value: mib(du.snapshots)},
		Figure{Key: "snapshots_kept", Unit: "count", Value: float64(du.nSnapshots)},
		Figure{Key: "snapshot_mib", Unit: "MiB", Value: snapMiB},
		Figure{Key: "load_s", Unit: "s", Value: fill.Seconds()},
	)
	return Result{Workload: fmt.Sprintf("recovery state=%dMiB", cfg.stateMiB), Run: run, Figures: figs,
		GoalSet: goalSetIf(cfg.stateMiB == 64, "recovery"),
		Params:  map[string]any{"rounds": rounds, "state_mib": cfg.stateMiB, "value_kib": cfg.valueKiB, "node_flags": strings.Join(cfg.nodeFlags, " ")}}, nil
}

// waitSnapshots waits until every node has a snapshot at most threshold
// entries behind its last log index (coordd snapshots when more than that
// many entries were appended since the last one), and returns the size of
// the leader's in MiB.
func waitSnapshots(ctx context.Context, cl *cluster, threshold uint64, timeout time.Duration) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var size float64
	for _, n := range cl.nodes {
		for {
			st, err := getStatus(ctx, n.url(), time.Second)
			if err == nil && st.Snapshot != nil && st.Snapshot.Index+threshold >= st.LastIndex {
				if st.State == "Leader" || size == 0 {
					size = mib(st.Snapshot.SizeBytes)
				}
				break
			}
			if !sleepUntil(ctx, time.Now().Add(50*time.Millisecond)) {
				return 0, fmt.Errorf("%s: no recent snapshot after %s (last status: %+v, %v)", n.id, timeout, st, err)
			}
		}
	}
	return size, nil
}

// timeToReady polls a starting node every 5 ms and returns the time from
// start to its first HTTP answer and to /readyz 200.
func timeToReady(ctx context.Context, n *node, start time.Time, timeout time.Duration) (up, ready time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		ok, err := httpOK(ctx, n.url()+"/readyz")
		if err == nil && up == 0 {
			up = time.Since(start)
		}
		if ok {
			return up, time.Since(start), nil
		}
		if !n.p.running() {
			return 0, 0, fmt.Errorf("%s exited while starting; its log ends:\n%s", n.id, tailFile(n.logPath, 15))
		}
		if !sleepUntil(ctx, time.Now().Add(5*time.Millisecond)) {
			return 0, 0, fmt.Errorf("%s not ready after %s; its log ends:\n%s", n.id, timeout, tailFile(n.logPath, 15))
		}
	}
}

// dirUsage is the apparent size of a data dir's files.
type dirUsage struct {
	total, raftDB, snapshots int64
	nSnapshots               int
}

func (d dirUsage) String() string {
	return fmt.Sprintf("%.1f MiB (raft.db %.1f, %d snapshots %.1f)", mib(d.total), mib(d.raftDB), d.nSnapshots, mib(d.snapshots))
}

// dataDirUsage sums the sizes of the files under dir.
func dataDirUsage(dir string) (dirUsage, error) {
	var d dirUsage
	snaps := filepath.Join(dir, "snapshots")
	err := filepath.WalkDir(dir, func(path string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if de.IsDir() {
			if filepath.Dir(path) == snaps {
				d.nSnapshots++
			}
			return nil
		}
		fi, err := de.Info()
		if err != nil {
			return err
		}
		d.total += fi.Size()
		switch {
		case filepath.Base(path) == "raft.db":
			d.raftDB += fi.Size()
		case strings.HasPrefix(path, snaps+string(filepath.Separator)):
			d.snapshots += fi.Size()
		}
		return nil
	})
	if err != nil {
		return d, fmt.Errorf("size of %s: %w", dir, err)
	}
	return d, nil
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

// flagValue finds -name V, --name V, -name=V in args.
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		a = strings.TrimLeft(a, "-")
		if a == name && i+1 < len(args) {
			return args[i+1], true
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v, true
		}
	}
	return "", false
}
