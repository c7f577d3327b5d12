package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coordd/coordd/api"
)

var (
	perturbOnce sync.Once
	perturbBin  string
	perturbErr  error
)

// perturbBinary builds coordd with the coordd_unsafe_perturb tag (TEST
// ONLY: it can corrupt its own replica when COORDD_UNSAFE_PERTURB_APPLY_AT
// is set), once per test binary.
func perturbBinary(t testing.TB) string {
	t.Helper()
	perturbOnce.Do(func() {
		perturbBin = filepath.Join(filepath.Dir(coorddBin), "coordd-unsafe-perturb")
		gobin := filepath.Join(os.Getenv("GOROOT"), "bin", "go")
		if _, err := os.Stat(gobin); err != nil {
			gobin = "go"
		}
		cmd := exec.Command(gobin, "build", "-tags", "coordd_unsafe_perturb", "-o", perturbBin, "github.com/coordd/coordd/cmd/coordd")
		out, err := cmd.CombinedOutput()
		if err != nil {
			perturbErr = fmt.Errorf("building the perturbing coordd: %v\n%s", err, out)
		}
	})
	if perturbErr != nil {
		t.Fatal(perturbErr)
	}
	return perturbBin
}

// perturbedCluster starts three nodes with extra flags, n3 built to
// perturb its state at index at.
func perturbedCluster(t testing.TB, at int, extra ...string) []*proc {
	t.Helper()
	bin := perturbBinary(t)
	procs := launchCluster(t, 3, "info", nil, extra...)
	// launchCluster starts n3 with coordd: restart it with the perturbing
	// build before anything was written.
	n3 := procs[2]
	n3.kill()
	startWith(t, n3, bin, []string{"COORDD_UNSAFE_PERTURB_APPLY_AT=" + strconv.Itoa(at)})
	for _, p := range procs {
		waitReady(t, p, 30*time.Second)
	}
	return procs
}

// alarmFor waits up to timeout until p's status shows an alarm naming
// member, and returns it.
func alarmFor(t testing.TB, p *proc, member string, timeout time.Duration) (api.Alarm, time.Time) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var st api.Status
		if err := getJSON(p.url()+"/v1/status", &st); err == nil {
			for _, a := range st.Alarms {
				if a.Member == member {
					return a, time.Now()
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no alarm for %s on %s after %s", member, p.id, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// writeKeys puts n keys through p, sequentially, retrying 503s.
func writeKeys(t testing.TB, p *proc, prefix string, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("%s/v1/kv/%s/%d", p.url(), prefix, i), strings.NewReader("v"))
		resp, err := httpc.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			if resp != nil {
				resp.Body.Close()
			}
			i--
			time.Sleep(20 * time.Millisecond)
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

var perturbedAt = regexp.MustCompile(`perturbed this node's state.*unix_nano=(\d+)`)

// perturbTime reads the moment n3 perturbed its state from its log.
func perturbTime(t testing.TB, p *proc) time.Time {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		f, err := os.Open(p.logPath)
		if err == nil {
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if m := perturbedAt.FindStringSubmatch(sc.Text()); m != nil {
					f.Close()
					ns, _ := strconv.ParseInt(m[1], 10, 64)
					return time.Unix(0, ns)
				}
			}
			f.Close()
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never logged its perturbation", p.id)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func metricValue(t testing.TB, p *proc, name string) string {
	t.Helper()
	resp, err := httpc.Get(p.url() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == name {
			return f[1]
		}
	}
	return ""
}

func Test_E2E_Digest_PerturbedMemberIsAlarmedAndRefusesUntilDisarmed(t *testing.T) {
	flags := append([]string{"-corrupt-check", "refuse"}, digestFlags...)
	procs := perturbedCluster(t, 250, flags...)
	n1, n3 := procs[0], procs[2]
	writeKeys(t, n1, "before", 400)
	// Detected within one digest interval: the first agreed point after
	// the perturbation is compared (generous bound for a loaded machine).
	a, _ := alarmFor(t, n1, "n3", 60*time.Second)
	if a.Kind != "digest_mismatch" || a.Index < 250 || a.Index > 400 || a.Digest == a.Expected || !strings.Contains(a.Detail, "n1") {
		t.Fatalf("alarm = %+v", a)
	}
	for _, p := range procs {
		if v := metricValue(t, p, "coordd_state_digest_mismatch"); v != "1" {
			t.Errorf("%s: coordd_state_digest_mismatch = %q, want 1", p.id, v)
		}
	}
	// The leader logged it at ERROR, naming the index and the member.
	leader := leaderOf(t, procs)
	logb, _ := os.ReadFile(leader.logPath)
	if !regexp.MustCompile(`\[ERROR\].*state digest mismatch.*index=\d+ member=n3`).Match(logb) {
		t.Errorf("the leader %s did not log the mismatch", leader.id)
	}

	// n3 refuses reads, stale ones too, and points elsewhere.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := httpc.Get(n3.url() + "/v1/kv/before/1?stale")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(string(b), api.CodeStateCorrupt) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("n3 still serves reads: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// n3 refuses to lead: handing it leadership ends with another leader.
	for range 2 {
		leader = leaderOf(t, procs)
		postJSON(leader.url()+"/v1/cluster/transfer-leadership", api.TransferRequest{ID: "n3"}, nil)
		time.Sleep(500 * time.Millisecond)
	}
	deadline = time.Now().Add(15 * time.Second)
	for {
		leader = leaderOf(t, procs)
		if leader != n3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("n3 kept the leadership")
		}
		time.Sleep(100 * time.Millisecond)
	}
	var st api.Status
	if err := getJSON(n3.url()+"/v1/status", &st); err != nil || st.Integrity == nil || !st.Integrity.Refusing {
		t.Fatalf("n3 status: %+v %v", st.Integrity, err)
	}

	// The operator disarms it: n3 serves again.
	var dr api.DisarmResult
	if code, err := postJSON(n3.url()+"/v1/alarms/disarm", api.DisarmRequest{Member: "n3"}, &dr); err != nil || code != http.StatusOK || dr.Disarmed != 1 {
		t.Fatalf("disarm: %d %v %+v", code, err, dr)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		resp, err := httpc.Get(n3.url() + "/v1/kv/before/1?stale")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("n3 does not serve after the disarm")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, _ := postJSON(n1.url()+"/v1/alarms/disarm", api.DisarmRequest{Member: "n3"}, nil); code != http.StatusNotFound {
		t.Fatalf("second disarm: %d, want 404", code)
	}
}

func Test_E2E_Shadow_NeverVotesNeverLeadsServesOnlyStaleReads(t *testing.T) {
	procs := startClusterWith(t, 3, "info", 20*time.Second, digestFlags...)
	shadow := startShadow(t, procs[0], "shadow1", "", nil, digestFlags...)
	waitReady(t, shadow, 30*time.Second)
	writeKeys(t, procs[0], "s", 50)

	// Only stale reads.
	resp, err := httpc.Get(shadow.url() + "/v1/kv/s/1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(b), api.CodeShadowMember) {
		t.Fatalf("linearizable read on the shadow: %d %s", resp.StatusCode, b)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := httpc.Get(shadow.url() + "/v1/kv/s/49?stale")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("stale read on the shadow: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, _ := postJSON(procs[0].url()+"/v1/cluster/transfer-leadership", api.TransferRequest{ID: "shadow1"}, nil); code == http.StatusOK {
		t.Fatal("leadership transferred to the shadow")
	}

	// Two voters die: the shadow does not make a quorum with the third.
	leader := leaderOf(t, procs)
	dead := others(procs, leader)
	for _, p := range dead {
		p.kill()
	}
	survivor := leader
	start := time.Now()
	for time.Since(start) < 4*time.Second {
		req, _ := http.NewRequest(http.MethodPut, survivor.url()+"/v1/kv/nq", strings.NewReader("x"))
		if resp, err := httpc.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Fatal("a write committed with one voter and a shadow")
			}
		}
		var st api.Status
		if err := getJSON(shadow.url()+"/v1/status", &st); err == nil && st.State == "Leader" {
			t.Fatal("the shadow became leader")
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The shadow's Raft never asked for votes.
	logb, _ := os.ReadFile(shadow.logPath)
	if strings.Contains(string(logb), "entering candidate state") {
		t.Fatal("the shadow ran for election")
	}
	for _, p := range dead {
		p.start(t)
	}
	for _, p := range procs {
		waitReady(t, p, 30*time.Second)
	}
	writeKeys(t, procs[0], "after", 5)

	// An operator makes the shadow a voter by mistake: it says so, and
	// hands leadership away whenever it gets it.
	voter := true
	if code, err := postJSON(leaderOf(t, procs).url()+"/v1/cluster/members",
		api.JoinRequest{ID: "shadow1", RaftAddr: shadow.raftAddr, HTTPAddr: shadow.httpAddr, Voter: &voter}, nil); err != nil || code != http.StatusOK {
		t.Fatalf("promoting the shadow: %d %v", code, err)
	}
	postJSON(leaderOf(t, procs).url()+"/v1/cluster/transfer-leadership", api.TransferRequest{ID: "shadow1"}, nil)
	all := append(append([]*proc(nil), procs...), shadow)
	deadline = time.Now().Add(20 * time.Second)
	for {
		logb, _ := os.ReadFile(shadow.logPath)
		if l := leaderOf(t, all); l != shadow && strings.Contains(string(logb), "this shadow member was made a voter") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the promoted shadow leads, or did not say it was made a voter")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// BenchmarkE2E_DigestPerturbToAlarm measures the time from one member
// perturbing its own state to the alarm naming it, as seen on another
// member's /v1/status, with agreed points every 100 entries compared
// every 200 ms, under a steady write load (make bench-digests).
func BenchmarkE2E_DigestPerturbToAlarm(b *testing.B) {
	var took []time.Duration
	for range b.N {
		procs := perturbedCluster(b, 300, digestFlags...)
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("%s/v1/kv/b/%d", procs[0].url(), i%500), strings.NewReader("v"))
				if resp, err := httpc.Do(req); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}()
		_, seen := alarmFor(b, procs[0], "n3", 120*time.Second)
		close(stop)
		<-done
		d := seen.Sub(perturbTime(b, procs[2]))
		took = append(took, d)
		for _, p := range procs {
			p.kill()
		}
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	b.ReportMetric(float64(took[len(took)/2].Milliseconds()), "median-ms")
	b.ReportMetric(float64(took[len(took)-1].Milliseconds()), "max-ms")
	b.Logf("perturbation to alarm over %d runs: median %s, max %s, all %v", len(took), took[len(took)/2], took[len(took)-1], took)
}

func Test_E2E_Shadow_ReadShadowingComparesAnswersAndReturnsOnlyThePrimarys(t *testing.T) {
	procs := startClusterWith(t, 3, "info", 20*time.Second, append([]string{"-read-shadow-rate", "1"}, digestFlags...)...)
	shadow := startShadow(t, procs[0], "shadow1", "", nil, digestFlags...)
	waitReady(t, shadow, 30*time.Second)
	leader := leaderOf(t, procs)
	writeKeys(t, leader, "rs", 30)
	for i := range 60 {
		resp, err := httpc.Get(fmt.Sprintf("%s/v1/kv/rs/%d", leader.url(), i%30))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("read %d: %d", i, resp.StatusCode)
		}
	}
	var ss api.ShadowStatusList
	deadline := time.Now().Add(15 * time.Second)
	for {
		if err := getJSON(leader.url()+"/v1/shadow/status", &ss); err == nil && len(ss.Members) == 1 && ss.Members[0].ReadsCompared >= 30 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("shadow status: %+v", ss)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if m := ss.Members[0]; m.ReadsDiffered != 0 {
		t.Fatalf("mirrored reads differed: %+v", m)
	}
	t.Logf("mirrored reads compared: %d, differed: %d", ss.Members[0].ReadsCompared, ss.Members[0].ReadsDiffered)
}
