package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSmoke_ScaleModes runs the scale modes with tiny sizes, each on its
// own cluster, and checks their main figures, the zero ones, and that no
// child process is left.
func TestSmoke_ScaleModes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real coordd clusters")
	}
	common := []string{"-quick", "-runs", "1", "-node-flags", "-snapshot-interval 1s -snapshot-threshold-check 1s"}
	cases := []struct {
		name     string
		args     []string
		workload string   // the run line checked: the one whose workload has this prefix
		want     []string // figures that must be measured
		zero     []string // figures that must be 0
	}{
		{"million", []string{"-mode", "million", "-hold-leases", "1500", "-hold", "2s"}, "million leases=1500",
			[]string{"rss_bytes_per_lease", "keepalive_cpu_pct_one_core", "snapshot_mib", "backup_mib", "restart_ready_ms", "batch_p99_ms"},
			[]string{"expired", "not_found_during_run", "failed_calls"}},
		{"million-projected", []string{"-mode", "million", "-hold-leases", "2000", "-project-from", "500,1000", "-hold", "2s"},
			"million leases=2000 projected",
			[]string{"rss_bytes_per_lease", "snapshot_mib", "restart_ready_ms", "grant_s"}, []string{"expired"}},
		{"watchers", []string{"-mode", "watchers", "-watchers", "60", "-streams", "12", "-watch-keys", "6", "-write-rate", "10", "-watch-for", "2s"},
			"watchers",
			[]string{"fanout_p99_ms", "blocking.p99_ms", "sse.p99_ms", "cpu_pct_node", "rss_mib"},
			[]string{"watch_errors", "refused", "write_errors"}},
		{"big-expiry", []string{"-mode", "big-expiry", "-big-locks", "150", "-big-keys", "150", "-big-ttl-ms", "1000", "-probe-rate", "50"},
			"big-expiry",
			[]string{"max_stall_ms", "expire.max_stall_ms", "revoke.max_stall_ms", "expire.release_ms", "revoke.call_ms"},
			[]string{"probe_errors"}},
	}
	dir := t.TempDir()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			start := time.Now()
			out := filepath.Join(dir, c.name+".jsonl")
			args := append(append([]string{"-json-out", out}, common...), c.args...)
			var stdout, stderr bytes.Buffer
			if code := realMain(args, &stdout, &stderr); code != 0 {
				t.Fatalf("exit %d\nstderr:\n%s\nstdout:\n%s", code, stderr.String(), stdout.String())
			}
			t.Logf("%s in %s", c.name, time.Since(start).Round(time.Millisecond))
			figs := runFiguresOf(t, out, c.workload)
			checkSmoke(t, figs, c.want, c.zero, stderr.String())
		})
	}
}

// runFiguresOf reads the figures of the one run line whose workload starts
// with prefix.
func runFiguresOf(t *testing.T, path, prefix string) map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var figs map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var line struct {
			Type     string         `json:"type"`
			Workload string         `json:"workload"`
			Figures  map[string]any `json:"figures"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("bad JSON line %q: %v", sc.Text(), err)
		}
		if line.Type == "run" && strings.HasPrefix(line.Workload, prefix) {
			if figs != nil {
				t.Fatalf("more than one run line of %q", prefix)
			}
			figs = line.Figures
		}
	}
	if figs == nil {
		t.Fatalf("no run line of %q", prefix)
	}
	return figs
}
