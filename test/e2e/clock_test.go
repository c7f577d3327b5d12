package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// transferTo moves leadership to p and waits until p leads.
func transferTo(t *testing.T, procs []*proc, p *proc) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if l := leaderOf(t, procs); l == p {
			if st, err := getStatus(p); err == nil && st.State == "Leader" {
				waitReady(t, p, 10*time.Second)
				return
			}
		} else {
			code, _ := post(t, l.url()+"/v1/cluster/transfer-leadership", `{"id":"`+p.id+`"}`, nil)
			t.Logf("transfer leadership %s -> %s: %d", l.id, p.id, code)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s did not become the leader", p.id)
}

// metricOf reads one unlabelled gauge from p's /metrics.
func metricOf(t *testing.T, p *proc, name string) (float64, bool) {
	t.Helper()
	resp, err := httpc.Get(p.url() + "/metrics")
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

// Test_Clock_ALeaderAheadCannotFreezeLockDelayOrDedupExpiryForItsSuccessors:
// n1's wall clock runs an hour ahead (-unsafe-clock-offset, as a badly
// synchronised host's would). While it leads, a lock holder's lease expires
// with a 2 s lock-delay, which therefore ends an hour ahead by n1's clock.
// Leadership then moves to n2, whose clock is right. The replicated clock
// goes on from n1's last stamp with n2's monotonic clock, so the waiting
// candidate gets the lock about 2 s after the expiry, not an hour later
// (with stamps max(last stamp, wall clock), the state's clock stood still
// until n2's wall clock caught up: lock-delays did not end, and idempotency
// records, expired by the same stamps, were kept as long). The skew metric
// shows n2 and n3 an hour behind the replicated clock.
func Test_Clock_ALeaderAheadCannotFreezeLockDelayOrDedupExpiryForItsSuccessors(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real coordd processes")
	}
	procs := launchCluster(t, 3, "info", func(p *proc) []string {
		if p.id == "n1" {
			return []string{"-unsafe-clock-offset", "1h"}
		}
		return nil
	})
	for _, p := range procs {
		waitReady(t, p, 20*time.Second)
	}
	n1, n2 := procs[0], procs[1]
	transferTo(t, procs, n1)

	holder := grantLease(t, n1, "1s")
	waiter := grantLease(t, n1, "60s")
	var c campaignResp
	if code, _ := post(t, n1.url()+"/v1/locks/clock", fmt.Sprintf(`{"lease":%d,"lock_delay":"2s"}`, holder), &c); code != http.StatusOK || !c.Leader {
		t.Fatalf("lock: %d %+v", code, c)
	}
	if code, _ := post(t, n1.url()+"/v1/locks/clock", fmt.Sprintf(`{"lease":%d}`, waiter), &c); code != http.StatusOK || c.Leader {
		t.Fatalf("second candidate: %d %+v", code, c)
	}
	// The holder's lease expires (nobody keeps it alive) while n1 leads.
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := httpc.Get(fmt.Sprintf("%s/v1/leases/%d", n1.url(), holder))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusNotFound {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the holder's lease did not expire")
		}
		time.Sleep(50 * time.Millisecond)
	}
	expired := time.Now()
	transferTo(t, procs, n2)

	// The waiter holds the lock once the 2 s lock-delay is over: allow
	// plenty for a loaded machine, far less than the hour.
	const within = 20 * time.Second
	for {
		resp, err := httpc.Get(n2.url() + "/v1/locks/clock")
		if err == nil {
			var e electionResp
			ok := resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&e) == nil
			resp.Body.Close()
			if ok && e.Leader != nil && e.Leader.Lease == waiter {
				t.Logf("the waiter got the lock %s after the holder's lease expired (lock-delay 2s)", time.Since(expired).Round(time.Millisecond))
				break
			}
		}
		if time.Since(expired) > within {
			t.Fatalf("the lock-delay set while n1 (an hour ahead) led did not end within %s under n2: the replicated clock is frozen", within)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The skew metric: n2 (leader) and n3 see the replicated clock an
	// hour ahead of their wall clocks; n1's own clock agrees with it.
	putKey(t, n2, "clock/k", "v") // a fresh entry for the followers' estimate
	for _, p := range procs {
		var v float64
		var ok bool
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
			if v, ok = metricOf(t, p, "coordd_clock_skew_seconds"); ok && (p == n1 || v < -3000) {
				break
			}
			putKey(t, n2, "clock/k", "v")
		}
		t.Logf("%s: coordd_clock_skew_seconds %v", p.id, v)
		switch {
		case !ok:
			t.Errorf("%s exports no coordd_clock_skew_seconds", p.id)
		case p == n1 && (v < -60 || v > 60):
			t.Errorf("%s: skew %v s, want about 0 (its clock set the replicated clock)", p.id, v)
		case p != n1 && (v > -3500 || v < -3700):
			t.Errorf("%s: skew %v s, want about -3600 (an hour behind the replicated clock)", p.id, v)
		}
	}
}
