package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// Figure is one measured number of one run.
type Figure struct {
	Key   string  // JSON key and table label: "ops_per_s", "p99_ms"
	Unit  string  // "ops/s", "ms", "%", "count", "MiB"
	Value float64 // meaningless when NA
	NA    bool    // could not be measured here (printed "n/a")
}

// Result is what one run of one workload measured.
type Result struct {
	Workload string // mode and the parameters that tell its variants apart
	Run      int    // 1-based
	Figures  []Figure
	// GoalSet names the goals that apply (a key of goals), "" for none:
	// goals hold for the standard parameters of a workload only.
	GoalSet string
	Params  map[string]any
}

// goal is what coordd must reach for a figure at the standard parameters.
type goal struct {
	atMost bool // the figure must be ≤ value (else ≥)
	value  float64
}

func (g goal) String() string {
	if g.atMost {
		return "≤ " + formatNum(g.value)
	}
	return "≥ " + formatNum(g.value)
}

func (g goal) met(v float64) bool {
	if g.atMost {
		return v <= g.value
	}
	return v >= g.value
}

// goals are what coordd must reach, keyed by goal set (a mode and its
// variant, mostly) and figure. They apply to the default parameters of
// each mode, with -target rr (clients on every node) unless the set's name
// ends in "/leader" (the goals that hold whatever the target). Issue 21's
// goals (docs/performance.md compares ZooKeeper 3.8 and etcd 3.4 measured
// side by side on this kind of machine) replace the older ones for
// acquire, keepalive CPU, handoff, leader-kill and recovery; the older
// goals it does not replace stay (acquire-new, batch p99, holder-crash,
// correctness counts).
var goals = map[string]map[string]goal{
	// 64 clients on every node: ≥ ZooKeeper's 5,867 ops/s, p99 ≤ 41 ms.
	"acquire": {"ops_per_s": {false, 5867}, "p99_ms": {true, 41}},
	// Through followers within 10 % of the leader-only figure: the derived
	// "acquire clients=64 rr-vs-leader" of -target both (rr in % of leader).
	"acquire-vs-leader": {"ops_per_s_pct": {false, 90}},
	"acquire-new":       {"ops_per_s": {false, 3 * 986}, "p99_ms": {true, 144 / 2}},
	// 10,000 single-call keepalives (-batch 1): ≤ 35 % of one core for the
	// three members, p99 ≤ 15 ms through followers.
	"keepalive-single": {"cpu_pct_one_core": {true, 35}, "batch_p99_ms": {true, 15},
		"expired": {true, 0}, "not_found_during_run": {true, 0}},
	// 10,000 leases in batches: ≤ 15 % of one core.
	"keepalive": {"cpu_pct_one_core": {true, 15}, "batch_p99_ms": {true, 20},
		"expired": {true, 0}, "not_found_during_run": {true, 0}},
	"keepalive-hold": {"expired": {true, 0}, "not_found_during_run": {true, 0}},
	// Resign call → waiter leads: ≤ ZooKeeper's p50 2.9 ms and etcd's and
	// coordd's own p99 8 ms (waiter queued 200 ms before); ≤ ZooKeeper's
	// 1.8 / 4.4 ms when queued just before.
	"handoff": {"long.p50_ms": {true, 2.9}, "long.p99_ms": {true, 8},
		"just.p50_ms": {true, 1.8}, "just.p99_ms": {true, 4.4}},
	"holder-crash": {"kill_to_standby_p99_ms": {true, 600},
		"past_deadline_ack_p99_ms": {true, 20}, "past_deadline_send_p99_ms": {true, 20}, "early_rounds": {true, 0}},
	// Unchanged by the idle savings: new leader ≤ 400 ms (the longest of
	// the rounds), longest write gap ≤ 500 ms.
	"leader-kill": {"new_leader_max_ms": {true, 400}, "max_write_gap_ms": {true, 500}, "errors": {true, 0}, "idle_term_changes": {true, 0}},
	// 64 MiB of state: restart-to-ready ≤ 0.7 s (the slowest of the
	// rounds), data dir ≤ 100 MiB.
	"recovery": {"ready_p99_ms": {true, 700}, "datadir_mib": {true, 100}},
	// Reserved for the modes of other files: idle (three idle members ≤ 5 %
	// of one core together), million (1M leases held, none expired
	// unintendedly), big-expiry (the longest stall other requests see while
	// a lease holding 10,000 locks and keys expires or is revoked).
	"idle":       {"cpu_pct_one_core_3_members": {true, 5}},
	"million":    {"expired": {true, 0}},
	"big-expiry": {"max_stall_ms": {true, 50}},
	"leader-faults": func() map[string]goal {
		g := map[string]goal{}
		for _, f := range leaderFaults(time.Minute) {
			for _, ttl := range sessionTTLs {
				g[fmt.Sprintf("%s.ttl%s_lost", f.name, ttl)] = goal{true, 0}
			}
			g[f.name+".unnoticed"] = goal{true, 0}
		}
		return g
	}(),
}

func init() {
	// With -target leader only the goals that hold whatever the target:
	// nothing expires, holders are not passed over early, a leader kill
	// stays within its bounds.
	for set, keys := range map[string][]string{
		"keepalive-single": {"expired", "not_found_during_run"},
		"keepalive":        {"expired", "not_found_during_run"},
		"keepalive-hold":   {"expired", "not_found_during_run"},
		"holder-crash":     {"early_rounds"},
		"leader-kill":      {"new_leader_max_ms", "max_write_gap_ms", "errors", "idle_term_changes"},
	} {
		g := map[string]goal{}
		for _, k := range keys {
			g[k] = goals[set][k]
		}
		goals[set+"/leader"] = g
	}
}

// standardGoalSets are the goal sets the standard set should measure: a
// set with no result is listed as not measured.
var standardGoalSets = []string{"acquire", "acquire-vs-leader", "acquire-new", "keepalive-single", "keepalive",
	"keepalive-hold", "handoff", "holder-crash", "leader-kill", "recovery", "idle", "million", "big-expiry"}

// derivedKeys are the figures compared between target=rr and
// target=leader, in % of the leader's: key → derived key.
var derivedKeys = []string{"ops_per_s", "p50_ms", "p99_ms", "batch_p50_ms", "batch_p99_ms", "cpu_pct_one_core",
	"long.p50_ms", "long.p99_ms", "just.p50_ms", "just.p99_ms", "kill_to_standby_p99_ms", "max_write_gap_ms"}

// reporter prints progress on stderr, JSON lines to jsonw (if any), and
// keeps every result for the final table.
type reporter struct {
	mu       sync.Mutex
	progress io.Writer
	jsonw    io.Writer
	start    time.Time
	results  []Result
	order    []string          // workloads in the order first seen
	goalSet  map[string]string // workload → its goal set
	// expect are the goal sets that should have results (the standard
	// set's): the summary lists the goals of those without as not measured.
	expect []string
}

func newReporter(progress, jsonw io.Writer) *reporter {
	return &reporter{progress: progress, jsonw: jsonw, start: time.Now()}
}

// logf prints a progress line on stderr, stamped with the time since start.
func (r *reporter) logf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintf(r.progress, "[%6.1fs] %s\n", time.Since(r.start).Seconds(), fmt.Sprintf(format, args...))
}

// add records one run's result, prints its one-line digest and its JSON line.
func (r *reporter) add(res Result) {
	r.mu.Lock()
	r.results = append(r.results, res)
	seen := false
	for _, w := range r.order {
		seen = seen || w == res.Workload
	}
	if !seen {
		r.order = append(r.order, res.Workload)
	}
	if r.goalSet == nil {
		r.goalSet = map[string]string{}
	}
	r.goalSet[res.Workload] = res.GoalSet
	r.mu.Unlock()
	var parts []string
	for _, f := range res.Figures {
		v := "n/a"
		if !f.NA {
			v = formatNum(f.Value)
		}
		parts = append(parts, f.Key+"="+v)
	}
	r.logf("%s run %d: %s", res.Workload, res.Run, strings.Join(parts, " "))
	figs := map[string]any{}
	for _, f := range res.Figures {
		if f.NA {
			figs[f.Key] = nil
		} else {
			figs[f.Key] = f.Value
		}
	}
	r.emit(map[string]any{"type": "run", "workload": res.Workload, "mode": modeOf(res.Workload),
		"run": res.Run, "figures": figs, "params": res.Params, "time": time.Now().UTC().Format(time.RFC3339Nano)})
}

// emit writes one JSON line, if JSON output is on.
func (r *reporter) emit(v any) {
	if r.jsonw == nil {
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		r.logf("coordbench: encode JSON: %v", err)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	_, _ = r.jsonw.Write(append(b, '\n'))
}

// modeOf is the mode of a workload label ("keepalive leases=100000" →
// "keepalive").
func modeOf(workload string) string {
	mode, _, _ := strings.Cut(workload, " ")
	return mode
}

// summaryRow is one figure of one workload across its runs.
type summaryRow struct {
	workload, key, unit string
	s                   spread
	na                  bool // not measured in any run
	goal                *goal
}

// verdict is "met", "MISSED", "n/a" (not measured) or "" (no goal).
func (row summaryRow) verdict() string {
	switch {
	case row.goal == nil:
		return ""
	case row.na:
		return "n/a"
	case row.goal.met(row.s.Median):
		return "met"
	}
	return "MISSED"
}

// derivedSuffix names the workload that compares "W target=rr" with "W
// target=leader": "W rr-vs-leader".
const derivedSuffix = " rr-vs-leader"

// withDerived returns results and order with, for every workload measured
// with both targets, a derived workload: each figure of derivedKeys of the
// rr run in % of the leader run's, run i of one against run i of the other
// (each run on a cluster of its own, so the spread across the pairs shows
// the noise). Its goal set is the rr workload's plus "-vs-leader". Caller
// holds r.mu.
func (r *reporter) withDerived() ([]Result, []string, map[string]string) {
	results, order := slices.Clone(r.results), []string{}
	sets := maps.Clone(r.goalSet)
	byWorkload := map[string][]Result{}
	for _, res := range r.results {
		byWorkload[res.Workload] = append(byWorkload[res.Workload], res)
	}
	seen := map[string]bool{}
	for _, w := range r.order {
		order = append(order, w)
		seen[w] = true
		base, isRR := strings.CutSuffix(w, " target=rr")
		if !isRR {
			base, _ = strings.CutSuffix(w, " target=leader")
		}
		// After the second of the two workloads.
		if !seen[base+" target=rr"] || !seen[base+" target=leader"] || seen[base+derivedSuffix] {
			continue
		}
		seen[base+derivedSuffix] = true
		rr, leader := byWorkload[base+" target=rr"], byWorkload[base+" target=leader"]
		dw := base + derivedSuffix
		order = append(order, dw)
		if set := sets[base+" target=rr"]; set != "" {
			sets[dw] = set + "-vs-leader"
		}
		for i := range min(len(rr), len(leader)) {
			d := Result{Workload: dw, Run: i + 1, GoalSet: sets[dw]}
			for _, k := range derivedKeys {
				a, okA := figure(rr[i], k)
				b, okB := figure(leader[i], k)
				if !okA || !okB {
					continue
				}
				f := Figure{Key: k + "_pct", Unit: "% of leader", NA: a.NA || b.NA || b.Value == 0}
				if !f.NA {
					f.Value = 100 * a.Value / b.Value
				}
				d.Figures = append(d.Figures, f)
			}
			results = append(results, d)
		}
	}
	return results, order, sets
}

// figure finds a figure of a result by key.
func figure(res Result, key string) (Figure, bool) {
	for _, f := range res.Figures {
		if f.Key == key {
			return f, true
		}
	}
	return Figure{}, false
}

// summary groups the results (and the derived rr-vs-leader workloads) by
// workload and figure, in the order seen, then lists the goals of expected
// goal sets that have no workload at all (not measured).
func (r *reporter) summary() []summaryRow {
	r.mu.Lock()
	defer r.mu.Unlock()
	results, order, sets := r.withDerived()
	var rows []summaryRow
	for _, w := range order {
		var keys []string
		units := map[string]string{}
		vals := map[string][]float64{}
		for _, res := range results {
			if res.Workload != w {
				continue
			}
			for _, f := range res.Figures {
				if _, ok := units[f.Key]; !ok {
					keys = append(keys, f.Key)
					units[f.Key] = f.Unit
				}
				if !f.NA {
					vals[f.Key] = append(vals[f.Key], f.Value)
				}
			}
		}
		for _, k := range keys {
			row := summaryRow{workload: w, key: k, unit: units[k]}
			var ok bool
			row.s, ok = summarize(vals[k])
			row.na = !ok
			if g, ok := goals[sets[w]][k]; ok {
				row.goal = &g
			}
			rows = append(rows, row)
		}
	}
	seen := map[string]bool{}
	for _, set := range sets {
		seen[set] = true
	}
	for _, set := range r.expect {
		if seen[set] {
			continue
		}
		for _, k := range slices.Sorted(maps.Keys(goals[set])) {
			g := goals[set][k]
			rows = append(rows, summaryRow{workload: "(" + set + ": not run)", key: k, na: true, goal: &g})
		}
	}
	return rows
}

// printSummary prints the table of every workload (median [min..max]
// across runs, the goal and whether the median meets it), the count of
// goals met, missed and not measured, the missed ones again, and one JSON
// summary line per workload.
func (r *reporter) printSummary(w io.Writer) {
	rows := r.summary()
	if len(rows) == 0 {
		fmt.Fprintln(w, "coordbench: no results")
		return
	}
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "workload\tfigure\tmedian [min..max]\tunit\truns\tgoal\tmet\t")
	last := ""
	byWorkload := map[string]map[string]any{}
	var order []string
	count := map[string]int{}
	var missed []string
	for _, row := range rows {
		name := row.workload
		if name == last {
			name = ""
		}
		last = row.workload
		val, g, v := "n/a", "", row.verdict()
		if !row.na {
			val = row.s.String()
		}
		if row.goal != nil {
			g = row.goal.String()
			count[v]++
			if v == "MISSED" {
				missed = append(missed, fmt.Sprintf("%s %s = %s (goal %s)", row.workload, row.key, val, g))
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t\n", name, row.key, val, row.unit, row.s.N, g, v)
		if strings.HasPrefix(row.workload, "(") {
			continue // a goal set that did not run
		}
		if byWorkload[row.workload] == nil {
			byWorkload[row.workload] = map[string]any{}
			order = append(order, row.workload)
		}
		if row.na {
			byWorkload[row.workload][row.key] = nil
		} else {
			byWorkload[row.workload][row.key] = row.s
		}
	}
	_ = tw.Flush()
	if total := count["met"] + count["MISSED"] + count["n/a"]; total > 0 {
		fmt.Fprintf(w, "\ngoals: %d met, %d MISSED, %d not measured (of %d; each judged on the median across runs)\n",
			count["met"], count["MISSED"], count["n/a"], total)
		for _, m := range missed {
			fmt.Fprintf(w, "  MISSED: %s\n", m)
		}
	}
	for _, wl := range order {
		r.emit(map[string]any{"type": "summary", "workload": wl, "mode": modeOf(wl), "figures": byWorkload[wl]})
	}
}

// goalSetIf is set when the parameters are the standard ones, else "".
func goalSetIf(standard bool, set string) string {
	if standard {
		return set
	}
	return ""
}
