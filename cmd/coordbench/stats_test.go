package main

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestPercentile_NearestRank(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	cases := []struct {
		p    float64
		want time.Duration
	}{{0.5, 50 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}, {0.001, time.Millisecond}}
	for _, c := range cases {
		if got := percentile(d, c.p); got != c.want {
			t.Errorf("p%v of 1..100 ms = %v, want %v", c.p, got, c.want)
		}
	}
	if d[0] != 100*time.Millisecond {
		t.Error("percentile sorted its input in place")
	}
	if got := percentile(nil, 0.5); got != 0 {
		t.Errorf("percentile of nothing = %v", got)
	}
	if got := percentile([]time.Duration{7}, 0.99); got != 7 {
		t.Errorf("p99 of one sample = %v", got)
	}
	// 3 samples: the p50 is the middle one, the p99 the largest.
	three := []time.Duration{3, 1, 2}
	if percentile(three, 0.5) != 2 || percentile(three, 0.99) != 3 {
		t.Errorf("p50/p99 of 1,2,3 = %v/%v", percentile(three, 0.5), percentile(three, 0.99))
	}
}

func TestLatencyFigures_KeysAndNA(t *testing.T) {
	f := latencyFigures("batch_", []time.Duration{2 * time.Millisecond, 1500 * time.Microsecond})
	if f[0].Key != "batch_p50_ms" || f[1].Key != "batch_p99_ms" || f[2].Key != "batch_max_ms" {
		t.Fatalf("keys: %+v", f)
	}
	if f[0].Value != 1.5 || f[1].Value != 2 || f[2].Value != 2 {
		t.Fatalf("values: %+v", f)
	}
	for _, x := range latencyFigures("", nil) {
		if !x.NA {
			t.Fatalf("no samples should be n/a: %+v", x)
		}
	}
}

func TestSummarize_MedianMinMax(t *testing.T) {
	s, ok := summarize([]float64{5, 1, 3})
	if !ok || s.Median != 3 || s.Min != 1 || s.Max != 5 || s.N != 3 {
		t.Fatalf("odd: %+v %v", s, ok)
	}
	s, _ = summarize([]float64{4, 1, 3, 2})
	if s.Median != 2.5 {
		t.Fatalf("even: median %v, want 2.5", s.Median)
	}
	if _, ok := summarize(nil); ok {
		t.Fatal("no values summarized")
	}
}

func TestSpreadString_Formats(t *testing.T) {
	cases := []struct {
		s    spread
		want string
	}{
		{spread{Median: 5612, Min: 5480.4, Max: 5700.6, N: 3}, "5612 [5480..5701]"},
		{spread{Median: 48.33, Min: 40.04, Max: 51, N: 3}, "48.3 [40.0..51]"},
		{spread{Median: 0.644, Min: 0.61, Max: 0.7, N: 5}, "0.64 [0.61..0.70]"},
		{spread{Median: 0, Min: 0, Max: 0, N: 3}, "0"},
		{spread{Median: 12.5, Min: 12.5, Max: 12.5, N: 1}, "12.5"},
	}
	for _, c := range cases {
		if got := c.s.String(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.s, got, c.want)
		}
	}
}

func TestParseProcStat_CommWithSpacesAndParens(t *testing.T) {
	// A real line of /proc/PID/stat (fields 1..22 and more), with a comm
	// that holds ") (" to defeat naive splitting.
	line := "4242 (co) (ord d) S 1 4242 4242 0 -1 4194560 1234 0 0 0 517 83 0 0 20 0 12 0 99 123456 789 18446744073709551615\n"
	st, err := parseProcStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if st.Comm != "co) (ord d" || st.State != 'S' || st.UTime != 517 || st.STime != 83 {
		t.Fatalf("parsed %+v", st)
	}
	for _, bad := range []string{"", "42 coordd S 1", "42 (coordd) S 1 2 3"} {
		if _, err := parseProcStat([]byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestReadProcStat_OwnProcess(t *testing.T) {
	st, err := readProcStat(osGetpid())
	if err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	if st.Comm == "" || st.UTime < 0 || st.STime < 0 {
		t.Fatalf("own stat: %+v", st)
	}
}

func TestCPUPercent_TicksOverElapsed(t *testing.T) {
	before := procStat{UTime: 100, STime: 50}
	after := procStat{UTime: 130, STime: 70} // 50 ticks = 0.5 s of CPU
	if got := cpuPercent(before, after, 2); got != 25 {
		t.Fatalf("0.5 s of CPU over 2 s = %v%%, want 25", got)
	}
}

func TestReporter_TableAndJSON(t *testing.T) {
	var progress, js, table bytes.Buffer
	r := newReporter(&progress, &js)
	for i, v := range []float64{6000, 5000, 5900} {
		r.add(Result{Workload: "acquire clients=64 target=rr", Run: i + 1, GoalSet: "acquire", Figures: []Figure{
			{Key: "ops_per_s", Unit: "ops/s", Value: v}, {Key: "p99_ms", Unit: "ms", Value: 60},
			{Key: "cpu_pct_one_core", Unit: "%", NA: true}}})
	}
	r.printSummary(&table)
	out := strings.Join(strings.Fields(table.String()), " ") // columns one space apart
	for _, want := range []string{"5900 [5000..6000]", "≥ 5867 met", "≤ 41 MISSED", "n/a", "goal met",
		"goals: 1 met, 1 MISSED, 0 not measured (of 2", "MISSED: acquire clients=64 target=rr p99_ms = 60 (goal ≤ 41)"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	lines := strings.Split(strings.TrimSpace(js.String()), "\n")
	if len(lines) != 4 || !strings.Contains(lines[0], `"type":"run"`) || !strings.Contains(lines[3], `"type":"summary"`) ||
		!strings.Contains(lines[3], `"median":5900`) || !strings.Contains(lines[0], `"cpu_pct_one_core":null`) {
		t.Fatalf("JSON lines:\n%s", js.String())
	}
}

func TestReporter_DerivesRRVsLeaderAndListsGoalsNotRun(t *testing.T) {
	var progress, table bytes.Buffer
	r := newReporter(&progress, nil)
	r.expect = []string{"acquire", "acquire-vs-leader", "idle"}
	for i, v := range []float64{5000, 4000, 6000} {
		r.add(Result{Workload: "acquire clients=64 target=rr", Run: i + 1, GoalSet: "acquire", Figures: []Figure{
			{Key: "ops_per_s", Unit: "ops/s", Value: v}, {Key: "p99_ms", Unit: "ms", Value: 30}}})
	}
	for i, v := range []float64{5000, 5000, 5000} {
		r.add(Result{Workload: "acquire clients=64 target=leader", Run: i + 1, GoalSet: "acquire/leader", Figures: []Figure{
			{Key: "ops_per_s", Unit: "ops/s", Value: v}, {Key: "p99_ms", Unit: "ms", Value: 20}}})
	}
	r.printSummary(&table)
	out := strings.Join(strings.Fields(table.String()), " ")
	// Run by run: 100, 80, 120 % of the leader's ops/s; p99 150 %.
	for _, want := range []string{"acquire clients=64 rr-vs-leader", "ops_per_s_pct", "100 [80..120]", "% of leader",
		"≥ 90 met", "p99_ms_pct 150", "(idle: not run)", "cpu_pct_one_core_3_members", "≤ 5 n/a",
		"goals: 2 met, 1 MISSED, 1 not measured (of 4"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Index(out, "rr-vs-leader") < strings.Index(out, "target=leader") {
		t.Errorf("the derived workload comes before the second of its two:\n%s", table.String())
	}
	// The leader workload has no throughput goals of its own.
	for _, l := range strings.Split(table.String(), "\n") {
		if strings.Contains(l, "target=leader") && strings.Contains(l, "≥") {
			t.Errorf("a goal on the leader workload: %s", l)
		}
	}
}

func TestParseFlags_QuickKeepsExplicitFlags(t *testing.T) {
	var stderr bytes.Buffer
	c, err := parseFlags([]string{"-quick", "-rounds", "7", "-mode", "handoff"}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if c.rounds != 7 || c.runs != 1 || c.duration != 2*time.Second {
		t.Fatalf("quick: %+v", c)
	}
	if _, err := parseFlags([]string{"-mode", "nope"}, &stderr); err == nil {
		t.Fatal("unknown mode accepted")
	}
	if len(c.endpoints) != 3 || c.endpoints[0] != "http://127.0.0.1:7101" {
		t.Fatalf("default endpoints: %v", c.endpoints)
	}
}

func TestPlan_StandardRunsEveryModeAndHoldsManyLeases(t *testing.T) {
	c := &config{mode: "standard", leases: 10000, batch: 1000, holdLeases: 100000, runs: 3, holdRuns: 1, target: "rr"}
	var got []string
	for _, s := range plan(c) {
		got = append(got, fmt.Sprintf("%s/%d/%d/%s", s.mode.name, s.cfg.leases, s.cfg.batch, s.cfg.target))
	}
	want := []string{"acquire/10000/1000/rr", "acquire/10000/1000/leader", "acquire-new/10000/1000/rr",
		"keepalive/10000/1/rr", "keepalive/10000/1/leader", "keepalive/10000/1000/rr", "keepalive/100000/1000/rr",
		"handoff/10000/1000/rr", "holder-crash/10000/1000/rr", "leader-kill/10000/1000/rr", "recovery/10000/1000/"}
	if !slices.Equal(got[:len(want)], want) || len(got) != len(want)+len(modeNames)-7 {
		t.Fatalf("standard plan:\n got %v\nwant %v (then the modes after recovery)", got, want)
	}
	// An explicit -target holds for every step; -mode M -target both is M twice.
	c.target, c.targetSet = "leader", true
	for _, s := range plan(c) {
		if s.cfg.target != "leader" && s.cfg.target != "" {
			t.Errorf("-target leader: %s runs with %q", s.mode.name, s.cfg.target)
		}
	}
	c.mode, c.target = "keepalive", "both"
	if steps := plan(c); len(steps) != 2 || steps[0].cfg.target != "rr" || steps[1].cfg.target != "leader" {
		t.Errorf("-mode keepalive -target both: %+v", steps)
	}
	c.mode = "recovery"
	if steps := plan(c); len(steps) != 1 || steps[0].cfg.target != "" {
		t.Errorf("-mode recovery -target both: %+v", steps)
	}
}

func TestParseFlags_Target(t *testing.T) {
	var stderr bytes.Buffer
	c, err := parseFlags(nil, &stderr)
	if err != nil || c.target != "rr" || c.targetSet {
		t.Fatalf("default target: %+v %v", c, err)
	}
	if c, err = parseFlags([]string{"-target", "both"}, &stderr); err != nil || c.target != "both" || !c.targetSet {
		t.Fatalf("-target both: %+v %v", c, err)
	}
	if _, err := parseFlags([]string{"-target", "followers"}, &stderr); err == nil {
		t.Fatal("-target followers accepted")
	}
}

func TestEnv_EndpointsByTarget(t *testing.T) {
	eps := []string{"http://a", "http://b", "http://c"}
	e := &env{cfg: config{target: "rr"}, endpoints: eps, order: []string{"http://b", "http://c", "http://a"}}
	for i, want := range []string{"http://b", "http://c", "http://a", "http://b"} {
		if got := e.nextEndpoints(); len(got) != 1 || got[0] != want {
			t.Errorf("rr client %d: %v, want [%s]", i, got, want)
		}
	}
	if e.spread() != 3 || e.label() != " target=rr" || e.goalSet("acquire") != "acquire" {
		t.Errorf("rr: spread %d label %q goal set %q", e.spread(), e.label(), e.goalSet("acquire"))
	}
	e.cfg.target = "leader"
	if got := e.nextEndpoints(); !slices.Equal(got, eps) || e.spread() != 1 || e.goalSet("keepalive") != "keepalive/leader" {
		t.Errorf("leader: %v spread %d goal set %q", got, e.spread(), e.goalSet("keepalive"))
	}
	e.cfg.target = ""
	if e.label() != "" || e.goalSet("recovery") != "recovery" {
		t.Errorf("no target: label %q goal set %q", e.label(), e.goalSet("recovery"))
	}
}

func TestIsLoopbackAndFlagValue(t *testing.T) {
	for ep, want := range map[string]bool{"http://127.0.0.1:7101": true, "localhost:1": true, "[::1]:80": true,
		"http://10.0.0.1:7101": false, "example.com:80": false} {
		if got := isLoopback(ep); got != want {
			t.Errorf("isLoopback(%q) = %v", ep, got)
		}
	}
	if v, ok := flagValue([]string{"-a", "1", "--snapshot-threshold=99"}, "snapshot-threshold"); !ok || v != "99" {
		t.Errorf("flagValue: %q %v", v, ok)
	}
	if _, ok := flagValue([]string{"-snapshot-threshold-check", "1s"}, "snapshot-threshold"); ok {
		t.Error("flagValue matched a longer flag")
	}
}
