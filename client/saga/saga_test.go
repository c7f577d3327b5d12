package saga_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coordd/coordd/client"
	"github.com/coordd/coordd/client/saga"
	"github.com/coordd/coordd/internal/testcluster"
)

// memSteps records what the in-process steps did.
type memSteps struct {
	mu      sync.Mutex
	done    map[string]int
	undone  map[string]int
	flaky   map[string]int // key -> failures left before success
	gate    chan struct{}  // when set, step 1's action waits for it
	tokens  map[uint64]bool
	refuse  string // a key whose action fails permanently
	attempt map[string]int
}

func (m *memSteps) def() saga.Definition {
	step := func(name string, i int) saga.Step {
		return saga.Step{Name: name,
			Action: func(ctx context.Context, sc saga.StepContext) error {
				if i == 1 && m.gate != nil {
					select {
					case <-m.gate:
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				m.mu.Lock()
				defer m.mu.Unlock()
				m.tokens[sc.Fence.Token] = true
				m.attempt[sc.Key] = sc.Attempt
				if m.flaky[sc.Key] > 0 {
					m.flaky[sc.Key]--
					return errors.New("transient")
				}
				if sc.Key == m.refuse {
					return saga.Permanent(errors.New("refused"))
				}
				m.done[sc.Key]++
				return nil
			},
			Compensate: func(ctx context.Context, sc saga.StepContext) error {
				m.mu.Lock()
				defer m.mu.Unlock()
				m.undone[sc.Key]++
				return nil
			}}
	}
	return saga.Definition{Type: "t", Steps: []saga.Step{step("a", 0), step("b", 1), step("c", 2)}}
}

func TestSaga_CompletesRetriesCompensatesAndCancels(t *testing.T) {
	t.Parallel()
	cl := testcluster.New(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c, err := client.New(ctx, client.Config{Endpoints: []string{cl.Nodes[0].HTTPAddr}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m := &memSteps{done: map[string]int{}, undone: map[string]int{}, tokens: map[uint64]bool{}, attempt: map[string]int{},
		flaky: map[string]int{"retry/1": 2}, refuse: "refuse/2", gate: make(chan struct{})}
	r, err := saga.NewRunner(c, "test", saga.Options{SessionTTL: time.Second, RetryInitial: 5 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, m.def())
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"ok", "retry", "refuse", "cancel"} {
		if err := r.Submit(ctx, "t", id, []byte("in")); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Submit(ctx, "t", "ok", nil); !errors.Is(err, saga.ErrExists) {
		t.Fatalf("second submit: %v", err)
	}
	if err := r.Submit(ctx, "nope", "x", nil); !errors.Is(err, saga.ErrUnknownType) {
		t.Fatalf("unknown type: %v", err)
	}
	if err := r.Cancel(ctx, "cancel"); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- r.Run(runCtx) }()
	close(m.gate)
	want := map[string]saga.Status{"ok": saga.Completed, "retry": saga.Completed, "refuse": saga.Compensated, "cancel": saga.Compensated}
	for id, st := range want {
		rec, err := r.Wait(ctx, id)
		if err != nil || rec.Status != st || rec.Token == 0 {
			t.Fatalf("saga %s: %+v %v, want %s", id, rec, err, st)
		}
	}
	stop()
	if err := <-ran; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.attempt["retry/1"] != 3 || m.done["retry/1"] != 1 {
		t.Fatalf("flaky step: %d attempts, done %d; want 3 and 1", m.attempt["retry/1"], m.done["retry/1"])
	}
	for _, k := range []string{"refuse/0", "refuse/1", "refuse/2"} {
		if m.undone[k] != 1 {
			t.Fatalf("%s compensated %d times", k, m.undone[k])
		}
	}
	if m.done["refuse/2"] != 0 || m.done["cancel/0"] != 0 || m.undone["cancel/0"] != 1 {
		t.Fatalf("refused step done %d; cancelled saga: done %d, undone %d", m.done["refuse/2"], m.done["cancel/0"], m.undone["cancel/0"])
	}
	for k, n := range m.done {
		if n != 1 || strings.HasPrefix(k, "ok") && m.undone[k] != 0 {
			t.Fatalf("%s done %d times, undone %d", k, n, m.undone[k])
		}
	}
	recs, err := r.List(ctx)
	if err != nil || len(recs) != 4 {
		t.Fatalf("list: %d %v", len(recs), err)
	}
	if rec, _ := r.Get(ctx, "refuse"); !strings.Contains(rec.Error, "refused") {
		t.Fatalf("error %q", rec.Error)
	}
	if _, err := r.Get(ctx, "none"); !errors.Is(err, saga.ErrNotFound) {
		t.Fatalf("get none: %v", err)
	}
}
