package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v2"
)

// Tests of the monitoring kit in deploy/: the Prometheus alert rules, their
// promtool unit tests, the Grafana dashboard, and the list of the metric
// names they use (deploy/monitoring-metrics.txt).

const (
	alertsFile     = "../../deploy/prometheus/alerts.yml"
	alertTestsFile = "../../deploy/prometheus/alerts_test.yml"
	dashboardFile  = "../../deploy/grafana/coordd.json"
	metricsList    = "../../deploy/monitoring-metrics.txt"
)

type alertRules struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

type alertTests struct {
	Tests []struct {
		Name          string `yaml:"name"`
		AlertRuleTest []struct {
			Alertname string `yaml:"alertname"`
			ExpAlerts []any  `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

// grafanaDashboard is the part of Grafana's dashboard model the test reads.
type grafanaDashboard struct {
	UID        string `json:"uid"`
	Title      string `json:"title"`
	Templating struct {
		List []struct {
			Name string `json:"name"`
			Type string `json:"type"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		ID         int    `json:"id"`
		Type       string `json:"type"`
		Title      string `json:"title"`
		Datasource *struct {
			UID string `json:"uid"`
		} `json:"datasource"`
		GridPos struct{ H, W, X, Y int } `json:"gridPos"`
		Targets []struct {
			Expr  string `json:"expr"`
			RefID string `json:"refId"`
		} `json:"targets"`
	} `json:"panels"`
}

// readYAML decodes path into v; strict refuses fields v does not have.
func readYAML(t *testing.T, path string, v any, strict bool) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	decode := yaml.Unmarshal
	if strict {
		decode = yaml.UnmarshalStrict
	}
	if err := decode(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// readDashboard parses the dashboard strictly enough to catch a broken
// export: valid JSON, unique panel ids, every panel on the data source
// variable with at least one query.
func readDashboard(t *testing.T) (grafanaDashboard, []string) {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(b) {
		t.Fatalf("%s is not valid JSON", dashboardFile)
	}
	var d grafanaDashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("dashboard has no uid or title")
	}
	if !slices.ContainsFunc(d.Templating.List, func(v struct {
		Name string `json:"name"`
		Type string `json:"type"`
	}) bool {
		return v.Name == "datasource" && v.Type == "datasource"
	}) {
		t.Errorf("dashboard has no datasource variable: it could not be imported into another Grafana")
	}
	ids := map[int]bool{}
	var exprs []string
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d is used twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q does not use the ${datasource} variable", p.Title)
		}
		if len(p.Targets) == 0 || p.GridPos.W == 0 || p.GridPos.H == 0 {
			t.Errorf("panel %q has no query or no size", p.Title)
		}
		for _, q := range p.Targets {
			if strings.TrimSpace(q.Expr) == "" || q.RefID == "" {
				t.Errorf("panel %q has a query without expr or refId", p.Title)
			}
			exprs = append(exprs, q.Expr)
		}
	}
	return d, exprs
}

func alertExprs(t *testing.T) (names, exprs []string) {
	t.Helper()
	var r alertRules
	readYAML(t, alertsFile, &r, true)
	for _, g := range r.Groups {
		for _, rule := range g.Rules {
			names = append(names, rule.Alert)
			exprs = append(exprs, rule.Expr)
		}
	}
	return names, exprs
}

var (
	promqlStrings = regexp.MustCompile(`"[^"]*"`)
	promqlBraces  = regexp.MustCompile(`\{[^}]*\}|\[[^\]]*\]`)
	promqlLabels  = regexp.MustCompile(`\b(by|on|without|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promqlToken   = regexp.MustCompile(`[0-9][0-9.eE+]*|[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\()?`)
	promqlWords   = map[string]bool{"by": true, "on": true, "without": true, "ignoring": true, "group_left": true,
		"group_right": true, "and": true, "or": true, "unless": true, "bool": true, "offset": true}
)

// metricNames returns the metric names a PromQL expression reads: what is
// left once strings, label matchers, ranges, label lists, numbers,
// functions and keywords are taken out.
func metricNames(expr string) []string {
	s := promqlStrings.ReplaceAllString(expr, "")
	s = promqlBraces.ReplaceAllString(s, "")
	s = promqlLabels.ReplaceAllString(s, "")
	var out []string
	for _, tok := range promqlToken.FindAllString(s, -1) {
		if tok[0] >= '0' && tok[0] <= '9' || strings.HasSuffix(tok, "(") || promqlWords[tok] {
			continue
		}
		out = append(out, tok)
	}
	return out
}

func TestMonitoring_MetricNames(t *testing.T) {
	got := metricNames(`max by (job) (coordd_raft_commit_index{job=~"$job"}) - on (job) group_right coordd_raft_applied_index > 1e3 and rate(x_total[5m]) or vector(0)`)
	if want := []string{"coordd_raft_commit_index", "coordd_raft_applied_index", "x_total"}; !slices.Equal(got, want) {
		t.Errorf("metricNames = %q, want %q", got, want)
	}
}

// listedMetric is one line of deploy/monitoring-metrics.txt.
type listedMetric struct{ name, source string }

func readMetricsList(t *testing.T) []listedMetric {
	t.Helper()
	f, err := os.Open(metricsList)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []listedMetric
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, source, _ := strings.Cut(line, " ")
		out = append(out, listedMetric{name, strings.TrimSpace(source)})
	}
	return out
}

// The alert rules and the dashboard read exactly the metrics that
// deploy/monitoring-metrics.txt lists.
func TestMonitoring_RulesAndDashboardUseTheListedMetrics(t *testing.T) {
	_, dexprs := readDashboard(t)
	_, aexprs := alertExprs(t)
	used := map[string]string{}
	for _, e := range dexprs {
		for _, n := range metricNames(strings.ReplaceAll(e, "$__rate_interval", "5m")) {
			used[n] = "the dashboard"
		}
	}
	for _, e := range aexprs {
		for _, n := range metricNames(e) {
			used[n] = "the alert rules"
		}
	}
	listed := map[string]bool{}
	for _, m := range readMetricsList(t) {
		listed[m.name] = true
		if used[m.name] == "" {
			t.Errorf("%s lists %s, which neither the rules nor the dashboard use", metricsList, m.name)
		}
	}
	for n, where := range used {
		if !listed[n] {
			t.Errorf("%s reads %s, which %s does not list", where, n, metricsList)
		}
	}
}

// Every alert has a promtool test case where it fires and one where it does
// not.
func TestMonitoring_EveryAlertHasAFiringAndAQuietTest(t *testing.T) {
	names, _ := alertExprs(t)
	var tests alertTests
	readYAML(t, alertTestsFile, &tests, false)
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				quiet[a.Alertname] = true
			}
		}
	}
	for _, n := range names {
		if !fires[n] || !quiet[n] {
			t.Errorf("alert %s: a firing test case: %v, a quiet one: %v (want both in %s)", n, fires[n], quiet[n], alertTestsFile)
		}
	}
}

// promtool checks the rules, runs their unit tests and parses every query
// of the dashboard (make test-alerts installs it; skipped without it).
func TestMonitoring_Promtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not found: make test-alerts installs Debian's prometheus package, which has it")
	}
	run := func(args ...string) {
		t.Helper()
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	run("check", "rules", alertsFile)
	run("test", "rules", alertTestsFile)

	// The dashboard's queries as recording rules, with Grafana's variables
	// replaced by what they expand to.
	_, exprs := readDashboard(t)
	vars := strings.NewReplacer("$__rate_interval", "1m", "$job", ".*", "$instance", ".*")
	var rules []map[string]string
	for i, e := range exprs {
		rules = append(rules, map[string]string{"record": fmt.Sprintf("dashboard:query_%d", i), "expr": vars.Replace(e)})
	}
	b, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dashboard-queries.yml")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	run("check", "rules", path)
}

// scrapeNames returns the sample names on base's /metrics.
func scrapeNames(t *testing.T, base string) map[string]bool {
	t.Helper()
	resp, err := httpc.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s/metrics: %d %v", base, resp.StatusCode, err)
	}
	names := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names
}

// Every metric the rules and the dashboard read is on the /metrics of real
// coordd nodes that have served some traffic (leader-only metrics included).
func Test_E2E_Monitoring_MetricsExistOnRealNodes(t *testing.T) {
	procs := startClusterWith(t, 3, "info", 20*time.Second)
	leader := leaderOf(t, procs)
	// Traffic, so that the metrics made on first use exist: a write, a
	// lease, a campaign and a hand-off.
	putKey(t, leader, "monitoring/x", "1")
	a := uiCampaign(t, leader, `{"ttl":"10s"}`)
	uiCampaign(t, leader, `{"ttl":"10s"}`) // waits, and takes over below
	if code, _ := post(t, leader.url()+"/v1/elections/db-primary/resign", fmt.Sprintf(`{"lease":%d,"token":%d}`, a.Lease, a.Token), nil); code != http.StatusOK {
		t.Fatalf("resign: %d", code)
	}
	have := map[string]bool{}
	for _, p := range procs {
		for n := range scrapeNames(t, p.url()) {
			have[n] = true
		}
	}
	for _, m := range readMetricsList(t) {
		switch {
		case m.source == "prometheus":
		case strings.HasPrefix(m.source, "pending"):
			if have[m.name] {
				t.Logf("%s is on /metrics now: drop its %q mark in %s", m.name, m.source, metricsList)
			} else {
				t.Logf("%s is not on /metrics yet (%s): its rules and panels stay empty until it is", m.name, m.source)
			}
		case !have[m.name]:
			t.Errorf("%s is read by the rules or the dashboard but is on no node's /metrics", m.name)
		}
	}
}
