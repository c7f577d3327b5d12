package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coordd/coordd/client"
)

// Benchmarks of leases and elections against three real coordd processes.
// Run with `make bench-e2e`; they are not part of `make test`. Figures are
// reported as custom metrics (ms, %, counts): quote medians over runs.

func post(tb testing.TB, url, body string, out any) (int, time.Duration) {
	tb.Helper()
	start := time.Now()
	resp, err := httpc.Post(url, "application/json", strings.NewReader(body))
	took := time.Since(start)
	if err != nil {
		tb.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(b, out); err != nil {
			tb.Fatalf("POST %s: %v: %s", url, err, b)
		}
	}
	return resp.StatusCode, took
}

type leaseResp struct {
	ID uint64 `json:"id"`
}

type campaignResp struct {
	Leader bool   `json:"leader"`
	Token  uint64 `json:"token"`
}

type electionResp struct {
	Leader *struct {
		Lease uint64 `json:"lease"`
		Token uint64 `json:"token"`
	} `json:"leader"`
}

func grantLease(tb testing.TB, p *proc, ttl string) uint64 {
	tb.Helper()
	var l leaseResp
	if code, _ := post(tb, p.url()+"/v1/leases", `{"ttl":"`+ttl+`"}`, &l); code != http.StatusOK {
		tb.Fatalf("grant: %d", code)
	}
	return l.ID
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

func reportLatencies(b *testing.B, name string, d []time.Duration) {
	b.ReportMetric(float64(percentile(d, 0.5).Microseconds())/1000, name+"-p50-ms")
	b.ReportMetric(float64(percentile(d, 0.99).Microseconds())/1000, name+"-p99-ms")
}

// BenchmarkE2E_Handoff: the leader resigns while a candidate waits; the
// resign's answer already names the next leader (same Raft entry).
func BenchmarkE2E_Handoff(b *testing.B) {
	procs := startCluster(b, 3)
	l := leaderOf(b, procs)
	x, y := grantLease(b, l, "30s"), grantLease(b, l, "30s")
	var lat []time.Duration
	holder, waiter := x, y
	var tok campaignResp
	post(b, l.url()+"/v1/elections/bench/campaign", fmt.Sprintf(`{"lease":%d}`, holder), &tok)
	b.ResetTimer()
	for range b.N {
		post(b, l.url()+"/v1/elections/bench/campaign", fmt.Sprintf(`{"lease":%d}`, waiter), nil)
		var e electionResp
		code, took := post(b, l.url()+"/v1/elections/bench/resign", fmt.Sprintf(`{"lease":%d,"token":%d}`, holder, tok.Token), &e)
		if code != http.StatusOK || e.Leader == nil || e.Leader.Lease != waiter {
			b.Fatalf("resign: %d %+v", code, e)
		}
		lat = append(lat, took)
		tok.Token = e.Leader.Token
		holder, waiter = waiter, holder
		// keep the leases alive
		post(b, fmt.Sprintf("%s/v1/leases/%d/keepalive", l.url(), x), "", nil)
		post(b, fmt.Sprintf("%s/v1/leases/%d/keepalive", l.url(), y), "", nil)
	}
	b.StopTimer()
	reportLatencies(b, "resign-to-next-leader", lat)
}

// BenchmarkE2E_HolderStops: the holder stops keeping its lease alive; how
// long after its last keepalive does the waiting standby lead, against the
// TTL? (COORDD_BENCH_TTL, default 1s.)
func BenchmarkE2E_HolderStops(b *testing.B) {
	ttl := "1s"
	if v := os.Getenv("COORDD_BENCH_TTL"); v != "" {
		ttl = v
	}
	ttlD, _ := time.ParseDuration(ttl)
	procs := startCluster(b, 3)
	l := leaderOf(b, procs)
	standby := grantLease(b, l, "60s")
	var past []time.Duration
	b.ResetTimer()
	for i := range b.N {
		name := fmt.Sprintf("hs-%d", i)
		holder := grantLease(b, l, ttl)
		var c campaignResp
		post(b, l.url()+"/v1/elections/"+name+"/campaign", fmt.Sprintf(`{"lease":%d}`, holder), &c)
		// The holder's last keepalive: sent now, acknowledged below.
		sent := time.Now()
		post(b, fmt.Sprintf("%s/v1/leases/%d/keepalive", l.url(), holder), "", nil)
		var s campaignResp
		post(b, l.url()+"/v1/elections/"+name+"/campaign", fmt.Sprintf(`{"lease":%d,"wait":"30s"}`, standby), &s)
		if !s.Leader || s.Token <= c.Token {
			b.Fatalf("standby did not lead: %+v", s)
		}
		past = append(past, time.Since(sent)-ttlD)
		post(b, l.url()+"/v1/elections/"+name+"/resign", fmt.Sprintf(`{"lease":%d,"token":%d}`, standby, s.Token), nil)
		post(b, fmt.Sprintf("%s/v1/leases/%d/keepalive", l.url(), standby), "", nil)
	}
	b.StopTimer()
	reportLatencies(b, "lead-after-ttl", past)
}

// cpuTicks reads utime+stime of a process, in clock ticks (USER_HZ=100).
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s, nil
}

// BenchmarkE2E_Keepalive holds COORDD_BENCH_LEASES leases (default 10000)
// with a keepalive per lease every TTL/3 for 10 s and reports the CPU of
// each node, keepalive latency and unintended expiries. b.N is ignored
// beyond the first round.
func BenchmarkE2E_Keepalive(b *testing.B) {
	n := 10000
	if v := os.Getenv("COORDD_BENCH_LEASES"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	const ttl = 3 * time.Second
	procs := startCluster(b, 3)
	l := leaderOf(b, procs)
	ids := make([]uint64, n)
	var wg sync.WaitGroup
	for w := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 32 {
				ids[i] = grantLease(b, l, ttl.String())
			}
		}()
	}
	wg.Wait()
	b.ResetTimer()
	before := map[*proc]int64{}
	for _, p := range procs {
		before[p], _ = cpuTicks(p.cmd.Process.Pid)
	}
	start := time.Now()
	const run = 10 * time.Second
	var mu sync.Mutex
	var lat []time.Duration
	var lost, sent atomic.Int64
	workers := 64
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mine := n / workers
			if mine == 0 {
				mine = 1
			}
			interval := ttl / 3 / time.Duration(mine)
			next := time.Now()
			for i := w; time.Since(start) < run; i += workers {
				if i >= n {
					i = w
				}
				next = next.Add(interval)
				time.Sleep(time.Until(next))
				t0 := time.Now()
				resp, err := httpc.Post(fmt.Sprintf("%s/v1/leases/%d/keepalive", l.url(), ids[i]), "application/json", nil)
				sent.Add(1)
				if err != nil {
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusNotFound {
					lost.Add(1)
				}
				mu.Lock()
				lat = append(lat, time.Since(t0))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	for i, p := range procs {
		after, _ := cpuTicks(p.cmd.Process.Pid)
		pct := float64(after-before[p]) / 100 / elapsed.Seconds() * 100
		role := "follower"
		if p == l {
			role = "leader"
		}
		b.ReportMetric(pct, fmt.Sprintf("cpu%%-n%d-%s", i+1, role))
	}
	b.ReportMetric(float64(sent.Load())/elapsed.Seconds(), "keepalives/s")
	b.ReportMetric(float64(lost.Load()), "unintended-expiries")
	reportLatencies(b, "keepalive", lat)
}

// BenchmarkE2E_ClientFailover: one Go client writes in a loop through all
// three endpoints; the Raft leader is SIGKILLed. Reported: time from the
// kill to the client's first successful write, and calls that failed
// (the client retries, so there should be none).
func BenchmarkE2E_ClientFailover(b *testing.B) {
	var gaps []time.Duration
	var failed int
	for range b.N {
		procs := startCluster(b, 3)
		var eps []string
		for _, p := range procs {
			eps = append(eps, p.httpAddr)
		}
		c, err := client.New(context.Background(), client.Config{Endpoints: eps})
		if err != nil {
			b.Fatal(err)
		}
		var mu sync.Mutex
		var acks []time.Time
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				_, err := c.Put(ctx, fmt.Sprintf("f/%d", i), []byte("v"))
				cancel()
				mu.Lock()
				if err != nil {
					failed++
				} else {
					acks = append(acks, time.Now())
				}
				mu.Unlock()
			}
		}()
		time.Sleep(time.Second)
		leader := leaderOf(b, procs)
		killed := time.Now()
		leader.kill()
		time.Sleep(3 * time.Second)
		close(stop)
		wg.Wait()
		c.Close()
		for _, a := range acks {
			if a.After(killed) {
				gaps = append(gaps, a.Sub(killed))
				break
			}
		}
		for _, p := range procs {
			p.kill()
		}
	}
	reportLatencies(b, "kill-to-first-client-write", gaps)
	b.ReportMetric(float64(failed), "failed-calls")
}
