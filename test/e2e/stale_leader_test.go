package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A leader SIGSTOPped past a lease's TTL, while the holder keeps the lease
// alive through the new leader, must not answer the holder's keepalive with
// lease_not_found when it is continued: its lease clock stopped at its last
// view, in which the lease looks expired. It may answer anything that says
// "ask someone else" (503) or, once it has learnt of the new leader,
// forward; never a 404 for a live lease. Found by the fault-injection suite
// (FullDisk_Election).
func Test_E2E_ResumedStaleLeader_DoesNotSayALiveLeaseIsGone(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real coordd processes")
	}
	// Slower Raft timing than the default: this test is about what a
	// resumed leader answers, and must not be disturbed by elections that a
	// busy test machine causes on its own.
	procs := startClusterWith(t, 3, "info", 20*time.Second,
		"-heartbeat-timeout", "400ms", "-election-timeout", "400ms", "-leader-lease-timeout", "400ms")
	hc := &http.Client{Timeout: 2 * time.Second}
	keepalive := func(p *proc, id uint64) int {
		resp, err := hc.Post(fmt.Sprintf("%s/v1/leases/%d/keepalive", p.url(), id), "application/json", nil)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	many := func(p *proc, id uint64) int {
		resp, err := hc.Post(p.url()+"/v1/leases/keepalive", "application/json", bytes.NewReader([]byte(fmt.Sprintf(`{"ids":[%d]}`, id))))
		if err != nil {
			return 0
		}
		defer resp.Body.Close()
		var out struct {
			NotFound []uint64 `json:"not_found"`
		}
		if resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&out) == nil && len(out.NotFound) > 0 {
			return http.StatusNotFound
		}
		return resp.StatusCode
	}
	for round := range 3 {
		old := crashLeader(t, procs)
		id := grantLease(t, old, "1500ms")
		if err := old.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		// Keep the lease alive through the others for more than 2 TTLs.
		var others []*proc
		for _, p := range procs {
			if p != old {
				others = append(others, p)
			}
		}
		kept := 0
		var seen []int
		for end := time.Now().Add(3500 * time.Millisecond); time.Now().Before(end); {
			for _, p := range others {
				c := keepalive(p, id)
				seen = append(seen, c)
				if c == http.StatusOK {
					kept++
					break
				}
			}
			time.Sleep(250 * time.Millisecond)
		}
		t.Logf("round %d: keepalives through the others answered %v", round, seen)
		if err := old.cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		// At once: before the old leader hears of the new term. Meanwhile
		// the holder goes on keeping the lease alive through the others.
		stop := make(chan struct{})
		keeping := make(chan struct{})
		go func() {
			defer close(keeping)
			for {
				select {
				case <-stop:
					return
				case <-time.After(250 * time.Millisecond):
				}
				for _, p := range others {
					if keepalive(p, id) == http.StatusOK {
						break
					}
				}
			}
		}()
		t0 := time.Now()
		codes := []int{keepalive(old, id), many(old, id), keepalive(old, id)}
		took := time.Since(t0)
		close(stop)
		<-keeping
		for _, c := range codes {
			if c == http.StatusNotFound {
				t.Fatalf("round %d: the resumed old leader said lease %d is gone (answers %v) while it was kept alive %d times through the new leader", round, id, codes, kept)
			}
		}
		t.Logf("round %d: %d keepalives through the new leader; the resumed old leader answered %v in %s", round, kept, codes, took.Round(time.Millisecond))
		if kept == 0 {
			t.Fatalf("round %d: the lease could not be kept alive through the new leader", round)
		}
		// The lease is alive: a keepalive through any node gets 200 within
		// its TTL (503s while the old leader steps down are retried); never
		// a 404.
		var last []int
		ok := false
		for end := time.Now().Add(1200 * time.Millisecond); !ok && time.Now().Before(end); {
			for _, p := range procs {
				c := keepalive(p, id)
				last = append(last, c)
				if c == http.StatusNotFound {
					t.Fatalf("round %d: lease %d is gone after the old leader resumed (answers %v)", round, id, last)
				}
				if c == http.StatusOK {
					ok = true
					break
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		if !ok {
			t.Fatalf("round %d: no node renewed lease %d after the old leader resumed (answers %v)", round, id, last)
		}
	}
}

// Test_E2E_ResumedDeposedLeader_NeverAcknowledgesAKeepalive: a leader
// SIGSTOPped while the others elect a new one and keep its leases alive,
// then continued, still believes it leads. Keepalives sent to it (queued
// while it was stopped, and sent the moment it is continued) must never be
// acknowledged by it: a 200 may only come from the new leader (forwarded).
// A keepalive is acknowledged only after a quorum round that started after
// it arrived (etcd #15247). Before, the resumed node answered 200 from its
// frozen lease clock.
func Test_E2E_ResumedDeposedLeader_NeverAcknowledgesAKeepalive(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real coordd processes")
	}
	procs := startClusterWith(t, 3, "info", 20*time.Second)
	hc := &http.Client{Timeout: 5 * time.Second}
	type answer struct {
		what     string
		status   int
		servedBy string
	}
	send := func(p *proc, path, body string) answer {
		resp, err := hc.Post(p.url()+path, "application/json", bytes.NewReader([]byte(body)))
		if err != nil {
			return answer{what: path + ": " + err.Error()}
		}
		defer resp.Body.Close()
		return answer{what: path, status: resp.StatusCode, servedBy: resp.Header.Get("X-Coordd-Served-By")}
	}
	for round := range 3 {
		old := leaderOf(t, procs)
		short := grantLease(t, old, "1500ms") // expires in the old leader's frozen view
		long := grantLease(t, old, "60s")     // still alive in it
		batch := fmt.Sprintf(`{"ids":[%d,%d]}`, short, long)
		if err := old.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		// Keep both alive through the others for more than the short TTL.
		kept := 0
		for end := time.Now().Add(2500 * time.Millisecond); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
			for _, p := range others(procs, old) {
				if a := send(p, "/v1/leases/keepalive", batch); a.status == http.StatusOK {
					kept++
					break
				}
			}
		}
		if kept == 0 {
			old.cmd.Process.Signal(syscall.SIGCONT) //nolint:errcheck // failing anyway
			t.Fatalf("round %d: the leases could not be kept alive through the new leader", round)
		}
		// Keepalives that queue at the stopped node, and more the moment
		// it is continued.
		var (
			mu      sync.Mutex
			answers []answer
			wg      sync.WaitGroup
		)
		fire := func() {
			for _, c := range []struct{ path, body string }{
				{fmt.Sprintf("/v1/leases/%d/keepalive", short), ""},
				{fmt.Sprintf("/v1/leases/%d/keepalive", long), ""},
				{"/v1/leases/keepalive", batch},
			} {
				wg.Go(func() {
					a := send(old, c.path, c.body)
					mu.Lock()
					answers = append(answers, a)
					mu.Unlock()
				})
			}
		}
		fire()
		time.Sleep(100 * time.Millisecond)
		if err := old.cmd.Process.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		fire()
		fire()
		wg.Wait()
		for _, a := range answers {
			if a.status == http.StatusOK && a.servedBy == old.id {
				// Legitimate only if it has been elected again since
				// (a busy machine may hold an election at any time).
				if st, err := getStatus(old); err == nil && st.State == "Leader" {
					t.Logf("round %d: %s leads again: its 200 may come from its new term", round, old.id)
					continue
				}
				t.Errorf("round %d: the resumed deposed leader %s acknowledged a keepalive itself: %+v (all: %+v)", round, old.id, a, answers)
			}
		}
		t.Logf("round %d: %d keepalives through the new leader during the stall; the resumed node answered %+v", round, kept, answers)
		if t.Failed() {
			return
		}
	}
}
