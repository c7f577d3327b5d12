package workload

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/test/jepsen/history"
)

// startTestAgent builds the agent command and starts one agent, killed
// at the end of the test.
func startTestAgent(t *testing.T) *lockAgent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), lockAgentBuildTimeout)
	defer cancel()
	bin, cleanup, err := buildLockAgent(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	a, err := startLockAgent(bin, 1000, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.kill)
	return a
}

// procState is the state letter of process pid in /proc (R, S, T, Z...),
// or "" if it cannot be read.
func procState(pid int) string {
	data, err := os.ReadFile("/proc/" + itoa(pid) + "/stat")
	if err != nil {
		return ""
	}
	// pid (comm) state ...: comm may hold spaces, not ')'.
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return ""
	}
	return s[i+2 : i+3]
}

// The agent's answers go through the workload's do and outcome as a
// direct request's would: status, error code and body of an answer,
// refused connections, timeouts; the resource served to the agents
// checks tokens.
func Test_LockAgent_RelaysRequestsLikeDirectOnes(t *testing.T) {
	t.Parallel()
	a := startTestAgent(t)
	c := &http.Client{Transport: a}
	ctx := context.Background()

	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/leases", func(w http.ResponseWriter, r *http.Request) {
		var req api.LeaseGrantRequest
		if json.NewDecoder(r.Body).Decode(&req) != nil || req.TTLMs != 1000 || r.Header.Get("Content-Type") != "application/json" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		json.NewEncoder(w).Encode(api.Lease{ID: 42})
	})
	mux.HandleFunc("GET /v1/kv/busy", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		json.NewEncoder(w).Encode(api.ErrorBody{Error: api.ErrorDetail{Code: api.CodeNotLeader}})
	})
	mux.HandleFunc("GET /v1/kv/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	r := do(ctx, c, http.MethodPost, srv.URL, "/v1/leases", api.LeaseGrantRequest{TTLMs: 1000}, requestTimeout)
	var l api.Lease
	if !r.ok() || r.decode(&l) != nil || l.ID != 42 {
		t.Errorf("grant through the agent: %d %s %q", r.status, r.code(), r.body)
	}
	r = do(ctx, c, http.MethodGet, srv.URL, "/v1/kv/busy", nil, requestTimeout)
	if st, code := r.outcome(true); st != history.StatusFail || code != api.CodeNotLeader {
		t.Errorf("503 not_leader through the agent: %s %s, want fail not_leader", st, code)
	}
	start := time.Now()
	r = do(ctx, c, http.MethodGet, srv.URL, "/v1/kv/slow", nil, 300*time.Millisecond)
	if st, code := r.outcome(true); st != history.StatusUnknown || code != "timeout" {
		t.Errorf("a timeout through the agent: %s %s, want unknown timeout", st, code)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("a request with a 300 ms timeout took %s through the agent", d)
	}
	l0, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l0.Addr().String()
	l0.Close()
	r = do(ctx, c, http.MethodPost, closed, "/v1/leases", nil, requestTimeout)
	if st, code := r.outcome(true); st != history.StatusFail || code != "connection_refused" {
		t.Errorf("a refused connection through the agent: %s %s, want fail connection_refused", st, code)
	}

	// The fenced resource, read and written by the agent.
	res := newResource(true)
	url, stop, err := res.serve()
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	var got resourceAnswer
	if r = do(ctx, c, http.MethodPost, url, "/read", resourceRequest{Token: 5}, requestTimeout); !r.ok() || r.decode(&got) != nil || got.Seq != 1 {
		t.Errorf("read with token 5: %d %s %q", r.status, r.code(), r.body)
	}
	if r = do(ctx, c, http.MethodPost, url, "/write", resourceRequest{Token: 5, Elems: []string{"a", "b"}}, requestTimeout); !r.ok() || r.decode(&got) != nil || got.Seq != 2 {
		t.Errorf("write with token 5: %d %s %q", r.status, r.code(), r.body)
	}
	r = do(ctx, c, http.MethodPost, url, "/write", resourceRequest{Token: 4, Elems: []string{"c"}}, requestTimeout)
	if st, code := r.outcome(true); st != history.StatusFail || code != errStale {
		t.Errorf("write with token 4 after 5: %s %s, want fail %s", st, code, errStale)
	}
	if r = do(ctx, c, http.MethodPost, url, "/read", resourceRequest{Token: 6}, requestTimeout); !r.ok() || r.decode(&got) != nil || got.Seq != 3 ||
		strings.Join(got.Elems, ",") != "a,b" {
		t.Errorf("read with token 6: %d %s %q", r.status, r.code(), r.body)
	}

	// A killed agent is lost: nothing more is sent.
	a.kill()
	if err := a.cmd.Process.Signal(syscall.Signal(0)); !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("the killed agent was not reaped: %v", err)
	}
	r = do(ctx, c, http.MethodPost, srv.URL, "/v1/leases", api.LeaseGrantRequest{TTLMs: 1000}, requestTimeout)
	if st, code := r.outcome(true); st != history.StatusUnknown || code != "agent_lost" {
		t.Errorf("a request to a killed agent: %s %s, want unknown agent_lost", st, code)
	}
}

// A pause is a real SIGSTOP of the agent's process: its keepalives stop
// until the SIGCONT, then go on. An agent that does not answer in time
// is lost and killed.
func Test_LockAgent_PauseStopsTheProcessAndItsKeepAlives(t *testing.T) {
	t.Parallel()
	a := startTestAgent(t)
	var mu sync.Mutex
	var beats []time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/leases/9/keepalive" {
			http.NotFound(w, r)
			return
		}
		mu.Lock()
		beats = append(beats, time.Now())
		mu.Unlock()
		w.Write([]byte(`{"id":9,"ttl_ms":300}`))
	}))
	defer srv.Close()
	count := func(from, to time.Time) int {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, b := range beats {
			if !b.Before(from) && b.Before(to) {
				n++
			}
		}
		return n
	}

	// TTL 300 ms: a keepalive every 100 ms.
	if err := a.keepAlive(9, 300*time.Millisecond, []string{srv.URL}, 1); err != nil {
		t.Fatal(err)
	}
	time.Sleep(350 * time.Millisecond)
	state := make(chan string, 1)
	go func() {
		time.Sleep(300 * time.Millisecond)
		state <- procState(a.pid())
	}()
	stopped := time.Now()
	if err := a.pause(800 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	if s := <-state; s != "T" {
		t.Errorf("the paused agent's state is %q, want T (stopped)", s)
	}
	time.Sleep(350 * time.Millisecond)
	st, err := a.halt()
	if err != nil {
		t.Fatal(err)
	}
	// A keepalive sent just before the SIGSTOP may be served during the
	// pause (under load, late); a running agent would send 8.
	before, during, after := count(time.Time{}, stopped), count(stopped, resumed), count(resumed, time.Now())
	t.Logf("keepalives: %d before the pause, %d during, %d after; the agent counted %+v", before, during, after, st)
	if before < 2 || during > 1 || after < 2 || st.Sent != before+during+after || st.OK != st.Sent {
		t.Errorf("keepalives: %d before the pause, %d during, %d after (agent: %+v): want some, at most one (sent before the pause), some",
			before, during, after, st)
	}

	// Stopped behind the workload's back, the agent answers nothing: lost,
	// and killed.
	if err := a.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := do(context.Background(), &http.Client{Transport: a}, http.MethodGet, srv.URL, "/x", nil, 200*time.Millisecond)
	if code := r.code(); code != "agent_lost" {
		t.Errorf("a request to a stopped agent: %s, want agent_lost", code)
	}
	if d := time.Since(start); d > 200*time.Millisecond+lockAgentMargin+time.Second {
		t.Errorf("the request to a stopped agent took %s", d)
	}
	select {
	case <-a.exited:
	case <-time.After(lockAgentReapTimeout):
		t.Errorf("the lost agent was not killed")
	}
}
