package workload

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/test/jepsen/history"
)

// Timeouts of the workloads' requests.
const (
	// requestTimeout bounds a request that does not block.
	requestTimeout = 2 * time.Second
	// blockingMargin is added to the wait of a blocking request.
	blockingMargin = 2 * time.Second
	// finalTimeout bounds Final's retries: the cluster has just been healed.
	finalTimeout = 30 * time.Second
)

// newHTTPClient returns a client for raw requests: no overall timeout (each
// request carries its own context deadline), keep-alive connections to every
// node.
func newHTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 64
	tr.IdleConnTimeout = 30 * time.Second
	return &http.Client{Transport: tr}
}

// reply is what one request got: a transport error, or a status, headers,
// body and, for an error status, the API's error detail.
type reply struct {
	err    error // transport error (timeout, connection refused or cut)
	status int
	header http.Header
	body   []byte
	detail api.ErrorDetail // Code is "" unless the body was an API error
}

// do sends one request to node (a base URL) and reads the whole answer
// within timeout. body, if not nil, is sent as JSON (or as is, if it is a
// []byte).
func do(ctx context.Context, c *http.Client, method, node, path string, body any, timeout time.Duration) reply {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var rb io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rb = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return reply{err: err}
		}
		rb = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, node+path, rb)
	if err != nil {
		return reply{err: err}
	}
	if _, ok := body.([]byte); !ok && body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		return reply{err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{err: err, status: resp.StatusCode}
	}
	r := reply{status: resp.StatusCode, header: resp.Header, body: data}
	if resp.StatusCode/100 != 2 {
		var eb api.ErrorBody
		if json.Unmarshal(data, &eb) == nil {
			r.detail = eb.Error
		}
	}
	return r
}

// ok reports a 2xx answer.
func (r reply) ok() bool { return r.err == nil && r.status/100 == 2 }

// decode reads the JSON body of an ok answer into v.
func (r reply) decode(v any) error { return json.Unmarshal(r.body, v) }

// code is the error code of the answer: the API's code, or "timeout",
// "connection_refused", "connection_error", "agent_lost" (a lock client's
// agent process that exited or stopped answering), or "http_<status>".
func (r reply) code() string {
	switch {
	case r.err != nil && refused(r.err):
		return "connection_refused"
	case r.err != nil && (errors.Is(r.err, context.DeadlineExceeded) || isTimeout(r.err)):
		return "timeout"
	case r.err != nil && errors.Is(r.err, context.Canceled):
		return "canceled"
	case r.err != nil && errors.Is(r.err, errAgentLost):
		return "agent_lost"
	case r.err != nil:
		return "connection_error"
	case r.detail.Code != "":
		return r.detail.Code
	default:
		return "http_" + strconv.Itoa(r.status)
	}
}

// refused reports an error of a connection that was never made: the
// request was certainly not sent.
func refused(err error) bool { return errors.Is(err, syscall.ECONNREFUSED) }

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// notDone are the 503 codes that mean nothing was done (docs/api.md: "retry
// after Retry-After"). outcome_unknown, forward_failed and shutting_down are
// not among them: a forwarded or proposed write may still be applied.
var notDone = map[string]bool{
	api.CodeNotLeader:      true,
	api.CodeNoLeader:       true,
	api.CodeLeaderNotReady: true,
	api.CodeCatchingUp:     true,
}

// outcome is how a history records the answer to a request that may change
// state (write true) or only reads (write false):
//
//   - 2xx: ok;
//   - a refused connection: fail (the request was never sent);
//   - a transport error or timeout: unknown for a write (fail for a read:
//     a read that did not answer says nothing, and changed nothing);
//   - 503 not_leader, no_leader, leader_not_ready, catching_up: fail;
//   - other 5xx (outcome_unknown, forward_failed, shutting_down, internal):
//     unknown for a write, fail for a read;
//   - 4xx: fail, with the API's code (cas_conflict, key_not_found, ...).
func (r reply) outcome(write bool) (history.Status, string) {
	switch {
	case r.ok():
		return history.StatusOK, ""
	case r.err != nil && refused(r.err):
		return history.StatusFail, r.code()
	case r.err != nil || r.status/100 == 5 && !notDone[r.detail.Code]:
		if write {
			return history.StatusUnknown, r.code()
		}
		return history.StatusFail, r.code()
	default:
		return history.StatusFail, r.code()
	}
}

// nodeName is how an op names the node it contacted: host:port.
func nodeName(base string) string {
	return strings.TrimPrefix(strings.TrimPrefix(base, "http://"), "https://")
}

// rng is a goroutine-safe source of randomness seeded for one workload run.
type rng struct {
	mu sync.Mutex
	r  *rand.Rand
}

func newRNG(seed, stream uint64) *rng {
	return &rng{r: rand.New(rand.NewPCG(seed, stream))}
}

func (g *rng) intN(n int) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.r.IntN(n)
}

func (g *rng) float() float64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.r.Float64()
}

// duration returns a random duration in [lo, hi).
func (g *rng) duration(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return lo + time.Duration(g.r.Int64N(int64(hi-lo)))
}

// sleep waits for d or until ctx is done; it reports whether ctx is still
// live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// logf calls env.Logf if it is set.
func (e Env) logf(format string, args ...any) {
	if e.Logf != nil {
		e.Logf(format, args...)
	}
}

// record records op, timing it with the recorder's clock; a failing history
// file is logged, not fatal (the op is kept in memory).
func (e Env) record(op history.Op) history.Op {
	got, err := e.Rec.Record(op)
	if err != nil {
		e.logf("workload: record %s: %v", op, err)
	}
	return got
}

// retry calls f until it returns true or the deadline of finalTimeout (or
// ctx) passes, pausing between attempts. It reports whether f succeeded.
func retry(ctx context.Context, f func() bool) bool {
	ctx, cancel := context.WithTimeout(ctx, finalTimeout)
	defer cancel()
	for {
		if f() {
			return true
		}
		if !sleep(ctx, 200*time.Millisecond) {
			return false
		}
	}
}

// runClients runs n clients at once, client(i) for i in [0, n), and
// returns the sum of what they return (the operations they recorded).
func runClients(n int, client func(i int) int) int {
	var wg sync.WaitGroup
	counts := make([]int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			counts[i] = client(i)
		}()
	}
	wg.Wait()
	total := 0
	for _, c := range counts {
		total += c
	}
	return total
}

// thinkAfter sleeps a little after op, and reports false if ctx ended. A
// little think time keeps the per-key histories within what porcupine
// checks quickly; a little more while the cluster has no leader or the
// node is down.
func thinkAfter(ctx context.Context, g *rng, op history.Op) bool {
	think := g.duration(0, 5*time.Millisecond)
	if op.Status == history.StatusFail && (notDone[op.Error] || op.Error == "connection_refused") {
		think += 50 * time.Millisecond
	}
	return sleep(ctx, think)
}
