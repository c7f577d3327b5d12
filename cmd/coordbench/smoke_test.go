package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestMain lets the test binary stand in for coordbench when holder-crash
// re-executes itself as the holder child.
func TestMain(m *testing.M) {
	if slices.Contains(os.Args[1:], "-child-holder") {
		os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func osGetpid() int { return os.Getpid() }

// TestSmoke_EveryModeOnAnOwnCluster runs each mode briefly on clusters of
// its own (coordd is built with go build, as on a fresh clone) and checks
// that each printed a run line with its main figures, that nothing failed,
// and that no child process is left.
func TestSmoke_EveryModeOnAnOwnCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real coordd clusters")
	}
	common := []string{"-own-cluster", "-quick", "-runs", "1", "-node-flags", "-snapshot-threshold-check 1s"}
	cases := []struct {
		mode string
		args []string
		want []string // figures that must be measured
		zero []string // figures that must be 0
	}{
		{"acquire", []string{"-clients", "8", "-duration", "1s", "-warmup", "200ms"}, []string{"ops_per_s", "p99_ms"}, []string{"errors"}},
		{"acquire-new", []string{"-clients", "8", "-duration", "1s", "-warmup", "200ms"}, []string{"ops_per_s", "p99_ms"}, []string{"errors"}},
		{"keepalive", []string{"-leases", "600", "-batch", "100", "-ttl", "1500ms", "-duration", "1s"},
			[]string{"batch_p99_ms", "cpu_pct_one_core"}, []string{"expired", "not_found_during_run", "failed_calls"}},
		{"handoff", []string{"-rounds", "5"}, []string{"long.p50_ms", "just.p99_ms"}, nil},
		{"holder-crash", []string{"-rounds", "2"}, []string{"kill_to_standby_p50_ms", "past_deadline_send_p99_ms"}, []string{"early_rounds"}},
		{"leader-kill", []string{"-rounds", "1", "-idle", "1s"}, []string{"new_leader_p50_ms", "max_write_gap_ms"}, []string{"errors"}},
		{"recovery", []string{"-rounds", "1", "-state-mib", "2"}, []string{"ready_p50_ms", "datadir_mib"}, nil},
		{"idle", []string{"-idle", "1s"}, []string{"cpu_pct_one_core_3_members", "cpu_pct_leader"}, []string{"term_changes"}},
	}
	dir := t.TempDir()
	for _, c := range cases {
		t.Run(c.mode, func(t *testing.T) {
			start := time.Now()
			out := filepath.Join(dir, c.mode+".jsonl")
			args := append(append([]string{"-mode", c.mode, "-json-out", out}, common...), c.args...)
			var stdout, stderr bytes.Buffer
			if code := realMain(args, &stdout, &stderr); code != 0 {
				t.Fatalf("exit %d\nstderr:\n%s\nstdout:\n%s", code, stderr.String(), stdout.String())
			}
			t.Logf("%s in %s", c.mode, time.Since(start).Round(time.Millisecond))
			figs := runFigures(t, out)
			checkSmoke(t, figs, c.want, c.zero, stderr.String())
		})
	}
}

// runFigures reads the figures of the one run line of a JSON lines file.
func runFigures(t *testing.T, path string) map[string]any {
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
			Type    string         `json:"type"`
			Figures map[string]any `json:"figures"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("bad JSON line %q: %v", sc.Text(), err)
		}
		if line.Type == "run" {
			if figs != nil {
				t.Fatal("more than one run line")
			}
			figs = line.Figures
		}
	}
	if figs == nil {
		t.Fatal("no run line")
	}
	return figs
}

// checkSmoke fails t unless every figure of want was measured and every
// one of zero is 0, and no child process is left running.
func checkSmoke(t *testing.T, figs map[string]any, want, zero []string, stderr string) {
	t.Helper()
	for _, k := range want {
		if v, ok := figs[k]; !ok || v == nil {
			t.Errorf("%s not measured: %v\n%s", k, figs, stderr)
		}
	}
	for _, k := range zero {
		if v, ok := figs[k].(float64); !ok || v != 0 {
			t.Errorf("%s = %v, want 0\n%s", k, figs[k], stderr)
		}
	}
	theReaper.mu.Lock()
	left := len(theReaper.procs)
	theReaper.mu.Unlock()
	if left != 0 {
		t.Errorf("%d child processes left running", left)
	}
}
