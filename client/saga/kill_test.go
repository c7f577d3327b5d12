package saga_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coordd/coordd/client"
	"github.com/coordd/coordd/client/saga"
	"github.com/coordd/coordd/fencing"
	"github.com/coordd/coordd/internal/testcluster"
)

// The services of the test's sagas: each deduplicates by the step's key,
// refuses stale fencing tokens (fencing.Guard), and keeps a tombstone for
// a compensated key so that a late action of that key cannot take effect.
// The service "shipping" refuses (422, permanently) the sagas whose id
// starts with "fail".
var serviceNames = []string{"inventory", "payment", "shipping"}

type service struct {
	mu      sync.Mutex
	guard   *fencing.Guard
	calls   map[string]int  // action calls per key
	applied map[string]int  // effects applied per key (must stay ≤ 1)
	undone  map[string]int  // effects undone per key (must stay ≤ applied)
	tomb    map[string]bool // compensated keys
	stale   int             // calls refused for a stale token
}

// pausePoint holds the first request that matches it: before the service
// handles it, or after (the effect applied, the answer not sent yet).
type pausePoint struct {
	svc, op, key string
	before       bool
	hit, release chan struct{}
	finished     chan struct{} // the held request was answered
	once         sync.Once
}

type services struct {
	svcs map[string]*service
	mu   sync.Mutex
	p    *pausePoint
	done chan struct{} // closed when the test ends: nothing stays paused
}

func newServices() *services {
	s := &services{svcs: map[string]*service{}, done: make(chan struct{})}
	for _, n := range serviceNames {
		s.svcs[n] = &service{guard: fencing.NewGuard(fencing.NewMemoryStore()), calls: map[string]int{},
			applied: map[string]int{}, undone: map[string]int{}, tomb: map[string]bool{}}
	}
	return s
}

// arm sets the next pause point and returns it.
func (s *services) arm(svc, op, key string, before bool) *pausePoint {
	p := &pausePoint{svc: svc, op: op, key: key, before: before, hit: make(chan struct{}), release: make(chan struct{}), finished: make(chan struct{})}
	s.mu.Lock()
	s.p = p
	s.mu.Unlock()
	return p
}

// pause holds the request if it matches the armed point, and returns the
// point it matched (nil: none).
func (s *services) pause(svc, op, key string, before bool) *pausePoint {
	s.mu.Lock()
	p := s.p
	match := p != nil && p.svc == svc && p.op == op && p.key == key && p.before == before
	if match {
		s.p = nil
	}
	s.mu.Unlock()
	if match {
		p.once.Do(func() { close(p.hit) })
		select {
		case <-p.release:
		case <-s.done:
		}
		return p
	}
	return nil
}

func (s *services) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/") // SVC/OP
	svc, ok := s.svcs[parts[0]]
	if len(parts) != 2 || !ok {
		http.Error(w, "no such service", http.StatusNotFound)
		return
	}
	op, key := parts[1], r.URL.Query().Get("key")
	tok, err := fencing.ParseToken(r.Header.Get(fencing.HeaderToken))
	if err != nil || key == "" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	held := s.pause(parts[0], op, key, true)
	status := func() int {
		svc.mu.Lock()
		defer svc.mu.Unlock()
		if err := svc.guard.Check(r.Context(), r.Header.Get(fencing.HeaderName), tok); err != nil {
			svc.stale++
			return http.StatusConflict
		}
		switch op {
		case "do":
			svc.calls[key]++
			switch {
			case svc.tomb[key]:
				return http.StatusConflict
			case svc.applied[key] > 0:
				return http.StatusOK // a repeat: already done
			case parts[0] == "shipping" && strings.HasPrefix(key, "fail"):
				return http.StatusUnprocessableEntity
			}
			svc.applied[key]++
		case "undo":
			if !svc.tomb[key] {
				svc.tomb[key] = true
				if svc.applied[key] > 0 {
					svc.undone[key]++
				}
			}
		default:
			return http.StatusNotFound
		}
		return http.StatusOK
	}()
	if p := s.pause(parts[0], op, key, false); p != nil {
		held = p
	}
	w.WriteHeader(status)
	if held != nil {
		close(held.finished)
	}
}

// call is a step's action or compensation over HTTP: a refusal (409, 422)
// is permanent, anything else that is not 200 is retried.
func call(base, svc, op string) func(ctx context.Context, sc saga.StepContext) error {
	return func(ctx context.Context, sc saga.StepContext) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/"+svc+"/"+op+"?key="+sc.Key, nil)
		if err != nil {
			return err
		}
		req.Header.Set(fencing.HeaderName, sc.Fence.Name)
		req.Header.Set(fencing.HeaderToken, fmt.Sprint(sc.Fence.Token))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
			return nil
		case http.StatusConflict, http.StatusUnprocessableEntity:
			return saga.Permanent(fmt.Errorf("%s %s %s: refused (%d)", svc, op, sc.Key, resp.StatusCode))
		}
		return fmt.Errorf("%s %s %s: %d", svc, op, sc.Key, resp.StatusCode)
	}
}

func orderSaga(base string) saga.Definition {
	d := saga.Definition{Type: "order"}
	for _, s := range serviceNames {
		d.Steps = append(d.Steps, saga.Step{Name: s, Action: call(base, s, "do"), Compensate: call(base, s, "undo")})
	}
	return d
}

const runnerName = "orders"

func newRunner(t testing.TB, c *client.Client, base string, log *slog.Logger) *saga.Runner {
	r, err := saga.NewRunner(c, runnerName, saga.Options{SessionTTL: time.Second, RetryInitial: 20 * time.Millisecond,
		RetryMax: 200 * time.Millisecond, Logger: log}, orderSaga(base))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestSagaRunnerChild is the saga runner process of the kill test: it runs
// until it is killed (or gets SIGTERM).
func TestSagaRunnerChild(t *testing.T) {
	eps := os.Getenv("COORDD_SAGA_CHILD_ENDPOINTS")
	if eps == "" {
		t.Skip("the saga kill test's runner process")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	c, err := client.New(ctx, client.Config{Endpoints: strings.Split(eps, ","), BreakerOpenFor: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	_ = newRunner(t, c, os.Getenv("COORDD_SAGA_CHILD_SERVICES"), log).Run(ctx)
}

// runnerProc is a runner process.
type runnerProc struct {
	cmd    *exec.Cmd
	stderr *syncBuf
	done   chan struct{}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func startRunner(t *testing.T, eps, base string) *runnerProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSagaRunnerChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "COORDD_SAGA_CHILD_ENDPOINTS="+eps, "COORDD_SAGA_CHILD_SERVICES="+base)
	p := &runnerProc{cmd: cmd, stderr: &syncBuf{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = io.Discard, p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.kill() })
	return p
}

func (p *runnerProc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGCONT)
	_ = p.cmd.Process.Kill()
	<-p.done
}

func wait[T any](t *testing.T, ch <-chan T, d time.Duration, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(d):
		t.Fatalf("timed out after %s waiting for %s", d, what)
	}
}

// TestSaga_RunnerKilledAtEveryStep_EachStepTakesEffectOnce runs sagas with
// runner processes that are SIGKILLed before and after every action and
// every compensation (the effect applied, the answer not received), and
// once SIGSTOPped past its session's TTL, across a kill of the Raft
// leader: every saga ends completed or compensated, no step takes effect
// twice, compensations undo exactly what took effect, and the paused,
// deposed runner's call and log write are refused.
func TestSaga_RunnerKilledAtEveryStep_EachStepTakesEffectOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster and a dozen runner processes")
	}
	cl := testcluster.New(t, 3)
	var eps []string
	for _, n := range cl.Nodes {
		eps = append(eps, n.HTTPAddr)
	}
	svcs := newServices()
	srv := httptest.NewServer(svcs)
	defer srv.Close()
	defer close(svcs.done) // before Close, which waits for paused requests
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c, err := client.New(ctx, client.Config{Endpoints: eps, BreakerOpenFor: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctl := newRunner(t, c, srv.URL, slog.New(slog.NewTextHandler(io.Discard, nil))) // submits and reads; never runs
	kills := 0
	var live *runnerProc
	// killAt arms a pause point, waits for a runner to reach it, kills the
	// runner, and lets the request go on.
	killAt := func(svc, op, key string, before bool) {
		t.Helper()
		p := svcs.arm(svc, op, key, before)
		if live == nil {
			live = startRunner(t, strings.Join(eps, ","), srv.URL)
		}
		wait(t, p.hit, 60*time.Second, fmt.Sprintf("a runner at %s %s %s (before: %v)", svc, op, key, before))
		live.kill()
		live, kills = nil, kills+1
		close(p.release)
		// The dead runner's request is answered before the next point is
		// armed: it must not be the one that reaches it.
		wait(t, p.finished, 30*time.Second, "the held request to be answered")
	}
	finish := func(id string, want saga.Status) *saga.Record {
		t.Helper()
		if live == nil {
			live = startRunner(t, strings.Join(eps, ","), srv.URL)
		}
		wctx, wcancel := context.WithTimeout(ctx, 60*time.Second)
		defer wcancel()
		rec, err := ctl.Wait(wctx, id)
		if err != nil || rec.Status != want {
			t.Fatalf("saga %s: %+v %v, want %s\nrunner log:\n%s", id, rec, err, want, live.stderr)
		}
		return rec
	}

	// A saga that completes, its runner killed around every action.
	if err := ctl.Submit(ctx, "order", "ok", nil); err != nil {
		t.Fatal(err)
	}
	for i, s := range serviceNames {
		for _, before := range []bool{true, false} {
			killAt(s, "do", fmt.Sprintf("ok/%d", i), before)
		}
	}
	finish("ok", saga.Completed)

	// A saga whose last step is refused: compensated, its runner killed
	// around the refusal and every compensation, with a Raft leader kill
	// in the middle.
	if err := ctl.Submit(ctx, "order", "fail", nil); err != nil {
		t.Fatal(err)
	}
	killAt("shipping", "do", "fail/2", true)
	for i := len(serviceNames) - 1; i >= 0; i-- {
		for _, before := range []bool{true, false} {
			killAt(serviceNames[i], "undo", fmt.Sprintf("fail/%d", i), before)
		}
		if i == 1 {
			leader := cl.Leader()
			cl.Kill(leader)
			cl.Restart(leader)
		}
	}
	rec := finish("fail", saga.Compensated)
	if !strings.Contains(rec.Error, "shipping") {
		t.Fatalf("compensated saga's error %q does not name the step", rec.Error)
	}

	// A saga whose runner is paused (SIGSTOP) in the middle of a step past
	// its session's TTL: a successor finishes it; the paused runner's late
	// call is refused by the service's fence, and its log write by
	// coordd's.
	live.kill() // the paused runner must be the leader
	live, kills = nil, kills+1
	if err := ctl.Submit(ctx, "order", "stop", nil); err != nil {
		t.Fatal(err)
	}
	p := svcs.arm("payment", "do", "stop/1", true)
	paused := startRunner(t, strings.Join(eps, ","), srv.URL)
	wait(t, p.hit, 60*time.Second, "the runner to call payment for saga stop")
	if err := paused.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	live = startRunner(t, strings.Join(eps, ","), srv.URL)
	done := finish("stop", saga.Completed)
	staleBefore := svcs.svcs["payment"].staleCount()
	close(p.release) // the paused runner's request reaches the service late
	if err := paused.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	testcluster.Poll(t, 30*time.Second, func() error {
		if svcs.svcs["payment"].staleCount() <= staleBefore {
			return errors.New("the paused runner's late call was not refused")
		}
		if s := paused.stderr.String(); !strings.Contains(s, "stops leading") && !strings.Contains(s, "deposed") {
			return errors.New("the paused runner did not notice it was deposed")
		}
		return nil
	})
	after, err := ctl.Get(ctx, "stop")
	if err != nil || after.Status != saga.Completed || after.ModifyIndex != done.ModifyIndex || after.Token != done.Token {
		t.Fatalf("saga stop after the paused runner woke: %+v %v (was %+v)", after, err, done)
	}
	paused.kill()
	live.kill()
	kills += 2
	live = nil

	// Every step took effect at most once, exactly once for the completed
	// sagas, and was undone exactly when the saga was compensated.
	dups, repeats := 0, 0
	for _, name := range serviceNames {
		s := svcs.svcs[name]
		s.mu.Lock()
		for k, n := range s.applied {
			if n > 1 {
				dups++
				t.Errorf("%s: %s took effect %d times", name, k, n)
			}
		}
		for _, n := range s.calls {
			repeats += max(n-1, 0)
		}
		t.Logf("%s: calls %v, applied %v, undone %v, refused as stale %d", name, s.calls, s.applied, s.undone, s.stale)
		i := map[string]int{"inventory": 0, "payment": 1, "shipping": 2}[name]
		for _, id := range []string{"ok", "stop"} {
			k := fmt.Sprintf("%s/%d", id, i)
			if s.applied[k] != 1 || s.tomb[k] {
				t.Errorf("%s: completed saga's %s applied %d times, compensated %v", name, k, s.applied[k], s.tomb[k])
			}
		}
		k := fmt.Sprintf("fail/%d", i)
		wantApplied := 1
		if name == "shipping" {
			wantApplied = 0 // refused
		}
		if s.applied[k] != wantApplied || s.undone[k] != wantApplied || !s.tomb[k] {
			t.Errorf("%s: compensated saga's %s applied %d, undone %d, tombstone %v", name, k, s.applied[k], s.undone[k], s.tomb[k])
		}
		s.mu.Unlock()
	}
	if repeats < len(serviceNames) {
		t.Errorf("%d repeated calls: each runner killed after its action took effect should have a successor that calls again", repeats)
	}
	t.Logf("sagas run: 3; runner kills: %d (plus 1 SIGSTOP); Raft leader kills: 1; completed: 2; compensated: 1; "+
		"repeated calls answered from the services' dedup: %d; duplicate effects: %d", kills, repeats, dups)
}

func (s *service) staleCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stale
}
