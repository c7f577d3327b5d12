package main

import (
	"encoding/json"
	"fmt"
	"io"
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

// goals are the targets of the comparison with etcd 3.4.23 and ZooKeeper
// 3.8.0 (see docs/performance.md), keyed by goal set (a mode, mostly) and figure. They
// apply to the default parameters of each mode.
var goals = map[string]map[string]goal{
	"acquire":     {"ops_per_s": {false, 5523}, "p99_ms": {true, 50}},
	"acquire-new": {"ops_per_s": {false, 3 * 986}, "p99_ms": {true, 144 / 2}},
	"keepalive": {"cpu_pct_one_core": {true, 25}, "batch_p99_ms": {true, 20},
		"expired": {true, 0}, "not_found_during_run": {true, 0}},
	"keepalive-hold": {"expired": {true, 0}, "not_found_during_run": {true, 0}},
	"handoff": {"long.p50_ms": {true, 0.7}, "long.p99_ms": {true, 3},
		"just.p50_ms": {true, 0.7}, "just.p99_ms": {true, 3}},
	"holder-crash": {"kill_to_standby_p99_ms": {true, 600},
		"past_deadline_ack_p99_ms": {true, 20}, "past_deadline_send_p99_ms": {true, 20}},
	"leader-kill": {"max_write_gap_ms": {true, 500}, "errors": {true, 0}, "idle_term_changes": {true, 0}},
	"recovery":    {"ready_ms": {true, 700}, "datadir_mib": {true, 100}},
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

// summary groups the results by workload and figure, in the order seen.
func (r *reporter) summary() []summaryRow {
	r.mu.Lock()
	defer r.mu.Unlock()
	var rows []summaryRow
	for _, w := range r.order {
		var keys []string
		units := map[string]string{}
		vals := map[string][]float64{}
		for _, res := range r.results {
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
			if g, ok := goals[r.goalSet[w]][k]; ok {
				row.goal = &g
			}
			rows = append(rows, row)
		}
	}
	return rows
}

// printSummary prints the table of every workload (median [min..max]
// across runs, the goal and whether the median meets it) and one JSON
// summary line per workload.
func (r *reporter) printSummary(w io.Writer) {
	rows := r.summary()
	if len(rows) == 0 {
		fmt.Fprintln(w, "coordbench: no results")
		return
	}
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "workload\tfigure\tmedian [min..max]\tunit\truns\tgoal\t")
	last := ""
	byWorkload := map[string]map[string]any{}
	for _, row := range rows {
		name := row.workload
		if name == last {
			name = ""
		}
		last = row.workload
		val, g := "n/a", ""
		if !row.na {
			val = row.s.String()
		}
		if row.goal != nil {
			g = row.goal.String()
			switch {
			case row.na:
				g += "  (not measured)"
			case row.goal.met(row.s.Median):
				g += "  ok"
			default:
				g += "  MISSED"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t\n", name, row.key, val, row.unit, row.s.N, g)
		if byWorkload[row.workload] == nil {
			byWorkload[row.workload] = map[string]any{}
		}
		if row.na {
			byWorkload[row.workload][row.key] = nil
		} else {
			byWorkload[row.workload][row.key] = row.s
		}
	}
	_ = tw.Flush()
	for _, wl := range r.order {
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
