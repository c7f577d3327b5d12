package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
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
