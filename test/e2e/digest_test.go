package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coordd/coordd/api"
)

// digestFlags are the digest settings of the digest tests: agreed points
// every 100 entries, compared five times a second, snapshots often (and
// short logs behind them) so that restarts and a joining shadow read
// snapshots.
var digestFlags = []string{"-digest-interval", "100", "-digest-poll", "200ms",
	"-snapshot-threshold", "400", "-snapshot-threshold-check", "500ms", "-trailing-logs", "100"}

// startShadow starts a shadow member joining through via.
func startShadow(t testing.TB, via *proc, id string, bin string, env []string, extra ...string) *proc {
	t.Helper()
	dir := t.TempDir()
	p := &proc{id: id, raftAddr: freePort(t), httpAddr: freePort(t), dataDir: filepath.Join(dir, id), logPath: filepath.Join(dir, id+".log")}
	p.args = append([]string{"-id", id, "-data-dir", p.dataDir, "-raft-addr", p.raftAddr, "-http-addr", p.httpAddr,
		"-join", via.httpAddr, "-shadow", "-log-level", "debug"}, extra...)
	startWith(t, p, bin, env)
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			b, _ := os.ReadFile(p.logPath)
			if len(b) > 32<<10 {
				b = b[len(b)-32<<10:]
			}
			t.Logf("---- %s log ----\n%s", p.id, b)
		}
	})
	return p
}

// startWith starts p with another build and environment (both empty:
// coordd's).
func startWith(t testing.TB, p *proc, bin string, env []string) {
	t.Helper()
	p.bin, p.env = bin, env
	p.start(t)
}

// getJSON GETs url into v, failing on a status other than 200.
func getJSON(url string, v any) error {
	resp, err := httpc.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	return json.Unmarshal(b, v)
}

func postJSON(url string, body any, v any) (int, error) {
	b, _ := json.Marshal(body)
	resp, err := httpc.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if v != nil && resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(out, v); err != nil {
			return resp.StatusCode, err
		}
	}
	return resp.StatusCode, nil
}

// postRetry is postJSON retried while the answer is 503 (an election under
// way on a loaded machine), for up to 15 s.
func postRetry(url string, body any, v any) (int, error) {
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, err := postJSON(url, body, v)
		if (err == nil && code != http.StatusServiceUnavailable) || time.Now().After(deadline) {
			return code, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mixedLoad writes n entries of every kind through the given nodes: keys
// put and deleted, leases granted and revoked, locks and elections
// campaigned for with new leases, idempotent retries. It returns the
// acknowledged count.
func mixedLoad(t testing.TB, procs func() []*proc, n, workers int) int {
	t.Helper()
	var done, acked atomic.Int64
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			var leases []uint64
			for {
				i := done.Add(1)
				if i > int64(n) || ctx.Err() != nil {
					return
				}
				ps := procs()
				p := ps[rng.IntN(len(ps))]
				var req *http.Request
				switch i % 8 {
				case 0, 1, 2:
					req, _ = http.NewRequest(http.MethodPut, fmt.Sprintf("%s/v1/kv/mix/%d/%d", p.url(), w, rng.IntN(200)), strings.NewReader(strconv.FormatInt(i, 10)))
				case 3:
					req, _ = http.NewRequest(http.MethodDelete, fmt.Sprintf("%s/v1/kv/mix/%d/%d", p.url(), w, rng.IntN(200)), nil)
				case 4:
					req, _ = http.NewRequest(http.MethodPost, p.url()+"/v1/leases", strings.NewReader(`{"ttl":"30s"}`))
				case 5:
					if len(leases) > 0 {
						id := leases[0]
						leases = leases[1:]
						req, _ = http.NewRequest(http.MethodDelete, fmt.Sprintf("%s/v1/leases/%d", p.url(), id), nil)
					} else {
						req, _ = http.NewRequest(http.MethodPut, fmt.Sprintf("%s/v1/kv/mix/idem/%d", p.url(), i%50), strings.NewReader("x"))
						req.Header.Set(api.HeaderIdempotencyKey, fmt.Sprintf("idem-%d-%d", w, i%30))
					}
				case 6:
					req, _ = http.NewRequest(http.MethodPost, fmt.Sprintf("%s/v1/locks/mix-lock-%d", p.url(), rng.IntN(10)), strings.NewReader(`{"ttl":"30s","wait":"0s"}`))
				case 7:
					req, _ = http.NewRequest(http.MethodPost, fmt.Sprintf("%s/v1/elections/mix-el-%d/campaign", p.url(), rng.IntN(10)), strings.NewReader(`{"ttl":"30s","value":"v","wait":"0s"}`))
				}
				req = req.WithContext(ctx)
				resp, err := httpc.Do(req)
				if err != nil {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode/100 == 2 {
					acked.Add(1)
					if i%8 == 4 {
						var l struct {
							ID uint64 `json:"id"`
						}
						if json.Unmarshal(b, &l) == nil && l.ID != 0 {
							leases = append(leases, l.ID)
						}
					}
				} else if resp.StatusCode >= 500 {
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	return int(acked.Load())
}

// digestsAgreeAt commits a digest point and waits until every node has a
// digest there; it returns them by member.
func digestsAgreeAt(t testing.TB, procs []*proc) (uint64, map[string]string) {
	t.Helper()
	var point api.DigestPointResult
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, err := postJSON(procs[0].url()+"/v1/digests", nil, &point)
		if err == nil && code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("POST /v1/digests: %d %v", code, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	got := map[string]string{}
	for len(got) < len(procs) {
		for _, p := range procs {
			var ds api.Digests
			if err := getJSON(fmt.Sprintf("%s/v1/digests?index=%d", p.url(), point.Index), &ds); err == nil && len(ds.Digests) == 1 {
				got[p.id] = ds.Digests[0].Digest
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("digests at %d after 30 s: %v", point.Index, got)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return point.Index, got
}

func allEqual(m map[string]string) bool {
	first := ""
	for _, v := range m {
		if first == "" {
			first = v
		}
		if v != first {
			return false
		}
	}
	return true
}

// commonDigests compares every index that several nodes digested; it
// returns how many indexes were compared and the first disagreement.
func commonDigests(t testing.TB, procs []*proc) (compared int, bad string) {
	t.Helper()
	by := map[uint64]map[string]string{}
	for _, p := range procs {
		var ds api.Digests
		if err := getJSON(p.url()+"/v1/digests", &ds); err != nil {
			t.Fatalf("%s: %v", p.id, err)
		}
		for _, g := range ds.Digests {
			if by[g.Index] == nil {
				by[g.Index] = map[string]string{}
			}
			by[g.Index][p.id] = g.Digest
		}
	}
	for i, m := range by {
		if len(m) < 2 {
			continue
		}
		compared++
		if !allEqual(m) && bad == "" {
			bad = fmt.Sprintf("index %d: %v", i, m)
		}
	}
	return compared, bad
}

// digestEntries is how many entries Test_E2E_Digest_ClusterAndShadowAgree
// writes: a few thousand in make test, COORDD_DIGEST_ENTRIES (make
// test-digests: 100000) otherwise.
func digestEntries() int {
	if n, err := strconv.Atoi(os.Getenv("COORDD_DIGEST_ENTRIES")); err == nil && n > 0 {
		return n
	}
	return 3000
}

func Test_E2E_Digest_ClusterAndShadowAgreeThroughSnapshotsRestartsAndALeaderKill(t *testing.T) {
	start := time.Now()
	n := digestEntries()
	procs := startClusterWith(t, 3, "info", 20*time.Second, digestFlags...)
	shadow := startShadow(t, procs[0], "shadow1", "", nil, digestFlags...)
	waitReady(t, shadow, 30*time.Second)

	var mu sync.Mutex
	live := append([]*proc(nil), procs...)
	targets := func() []*proc {
		mu.Lock()
		defer mu.Unlock()
		return append([]*proc(nil), live...)
	}
	quarter := n / 4
	acked := mixedLoad(t, targets, quarter, 16)

	// A follower restarts (SIGTERM): it comes back from its snapshot.
	leader := leaderOf(t, procs)
	follower := others(procs, leader)[0]
	mu.Lock()
	live = others(procs, follower)
	mu.Unlock()
	follower.term(t, 15*time.Second)
	acked += mixedLoad(t, targets, quarter, 16)
	follower.start(t)
	waitReady(t, follower, 30*time.Second)

	// The leader is SIGKILLed under load, then restarts.
	mu.Lock()
	live = append([]*proc(nil), procs...)
	mu.Unlock()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		acked += mixedLoad(t, targets, quarter, 16)
	}()
	time.Sleep(time.Second)
	leader = leaderOf(t, procs)
	mu.Lock()
	live = others(procs, leader)
	mu.Unlock()
	leader.kill()
	wg.Wait()
	leader.start(t)
	waitReady(t, leader, 30*time.Second)
	mu.Lock()
	live = append([]*proc(nil), procs...)
	mu.Unlock()
	acked += mixedLoad(t, targets, n-3*quarter, 16)

	all := append(append([]*proc(nil), procs...), shadow)
	index, ds := digestsAgreeAt(t, all)
	if !allEqual(ds) {
		t.Fatalf("digests at the digest point %d differ: %v", index, ds)
	}
	compared, bad := commonDigests(t, all)
	if bad != "" {
		t.Fatalf("digests differ at %s", bad)
	}
	if compared == 0 {
		t.Fatal("no index digested by two nodes")
	}
	var st api.Status
	if err := getJSON(procs[0].url()+"/v1/status", &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Alarms) != 0 {
		t.Fatalf("alarms raised: %+v", st.Alarms)
	}
	// The leader compared the shadow too.
	var ss api.ShadowStatusList
	deadline := time.Now().Add(15 * time.Second)
	for {
		if err := getJSON(procs[0].url()+"/v1/shadow/status", &ss); err == nil && len(ss.Members) == 1 && ss.Members[0].Agreed > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("shadow status: %+v", ss)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if m := ss.Members[0]; m.Member != "shadow1" || !m.Shadow || m.Voter || m.Mismatches != 0 {
		t.Fatalf("shadow status: %+v", m)
	}
	t.Logf("%d entries sent (%d acknowledged), digests equal at the digest point %d on %d nodes and at %d common indexes; shadow agreed at %d points over %d entries; took %s",
		n, acked, index, len(all), compared, ss.Members[0].Agreed, ss.Members[0].AgreedEntries, time.Since(start).Round(time.Second))
}
