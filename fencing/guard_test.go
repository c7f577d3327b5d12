package fencing

import (
	"context"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestGuardCheck(t *testing.T) {
	ctx := context.Background()
	for _, f := range storeFactories {
		t.Run(f.name, func(t *testing.T) {
			s := f.open(t)
			defer s.Close()
			g := NewGuard(s)

			mustAccept := func(name string, tok Token) {
				t.Helper()
				if err := g.Check(ctx, name, tok); err != nil {
					t.Fatalf("Check(%q, %d) = %v, want accepted", name, tok, err)
				}
			}
			mustRefuse := func(name string, tok, highest Token) {
				t.Helper()
				err := g.Check(ctx, name, tok)
				if !errors.Is(err, ErrStaleToken) {
					t.Fatalf("Check(%q, %d) = %v, want ErrStaleToken", name, tok, err)
				}
				var se *StaleTokenError
				if !errors.As(err, &se) {
					t.Fatalf("Check(%q, %d) error %T is not a *StaleTokenError", name, tok, err)
				}
				if se.Name != name || se.Token != tok || se.Highest != highest {
					t.Fatalf("StaleTokenError = %+v, want {%s %d %d}", *se, name, tok, highest)
				}
			}

			mustAccept("locks/a", 12)
			mustAccept("locks/a", 12) // equal: the same holder keeps writing
			mustAccept("locks/a", 15) // higher: a new holder
			mustRefuse("locks/a", 12, 15)
			mustRefuse("locks/a", 14, 15)
			mustAccept("locks/a", 15)
			// Names are independent: a lower token of another name passes.
			mustAccept("locks/b", 3)
			mustRefuse("locks/b", 2, 3)
			mustRefuse("locks/a", 3, 15)
			if h, err := g.Highest("locks/a"); err != nil || h != 15 {
				t.Fatalf("Highest(locks/a) = %d, %v; want 15", h, err)
			}
			if h, err := g.Highest("locks/unknown"); err != nil || h != 0 {
				t.Fatalf("Highest(locks/unknown) = %d, %v; want 0", h, err)
			}

			if err := g.Check(ctx, "", 5); !errors.Is(err, ErrBadName) {
				t.Errorf("Check with empty name = %v, want ErrBadName", err)
			}
			if err := g.Check(ctx, strings.Repeat("x", MaxNameLen+1), 5); !errors.Is(err, ErrBadName) {
				t.Errorf("Check with long name = %v, want ErrBadName", err)
			}
			if err := g.Check(ctx, "locks/a", 0); !errors.Is(err, ErrBadToken) {
				t.Errorf("Check with token 0 = %v, want ErrBadToken", err)
			}
			if _, err := g.Highest("bad\xff"); !errors.Is(err, ErrBadName) {
				t.Errorf("Highest with bad name = %v, want ErrBadName", err)
			}

			// A cancelled context records nothing.
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			if err := g.Check(cctx, "locks/a", 99); !errors.Is(err, context.Canceled) {
				t.Errorf("Check with a cancelled context = %v, want context.Canceled", err)
			}
			if h, _ := g.Highest("locks/a"); h != 15 {
				t.Errorf("a cancelled Check raised the highest to %d", h)
			}
		})
	}
}

// TestGuardOrder is the case the package exists for: once the higher token is
// recorded, the lower one is refused.
func TestGuardOrder(t *testing.T) {
	g := NewGuard(NewMemoryStore())
	ctx := context.Background()
	if err := g.Check(ctx, "n", 15); err != nil {
		t.Fatal(err)
	}
	if err := g.Check(ctx, "n", 12); !errors.Is(err, ErrStaleToken) {
		t.Fatalf("late holder with 12 after 15: %v, want ErrStaleToken", err)
	}
}

func TestGuardStoreError(t *testing.T) {
	g := NewGuard(failingStore{errDiskFull})
	err := g.Check(context.Background(), "n", 5)
	if !errors.Is(err, errDiskFull) {
		t.Fatalf("Check = %v, want the store's error wrapped", err)
	}
	if errors.Is(err, ErrStaleToken) {
		t.Fatal("a store failure reads as a stale token")
	}
	if !strings.HasPrefix(err.Error(), "fencing: check ") {
		t.Errorf("error %q lacks context", err)
	}
	if _, err := g.Highest("n"); !errors.Is(err, errDiskFull) {
		t.Fatalf("Highest = %v, want the store's error wrapped", err)
	}
}

// TestGuardConcurrent runs Checks with random tokens from many goroutines and
// checks every answer against what the store held before and after it.
func TestGuardConcurrent(t *testing.T) {
	for _, f := range storeFactories {
		t.Run(f.name, func(t *testing.T) {
			s := f.open(t)
			defer s.Close()
			g := NewGuard(s)
			ctx := context.Background()
			names := []string{"locks/a", "locks/b", "locks/c"}
			const workers, checks = 16, 150

			var mu sync.Mutex
			maxAccepted := map[string]Token{}
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					rng := rand.New(rand.NewPCG(uint64(w), 42))
					seen := map[string]Token{} // highest this goroutine has observed
					for range checks {
						name := names[rng.IntN(len(names))]
						// Mostly rising tokens with some stragglers, so that
						// accepts, equal accepts and refusals all happen.
						tok := Token(rng.IntN(5000) + 1)
						before, err := g.Highest(name)
						if err != nil {
							t.Error(err)
							return
						}
						err = g.Check(ctx, name, tok)
						after, herr := g.Highest(name)
						if herr != nil {
							t.Error(herr)
							return
						}
						var se *StaleTokenError
						switch {
						case err == nil:
							if tok < before || tok < seen[name] {
								t.Errorf("%s: accepted %d after %d was recorded", name, tok, max(before, seen[name]))
							}
							if after < tok {
								t.Errorf("%s: accepted %d but highest is then %d", name, tok, after)
							}
							mu.Lock()
							maxAccepted[name] = max(maxAccepted[name], tok)
							mu.Unlock()
							seen[name] = max(seen[name], tok)
						case errors.As(err, &se):
							if se.Highest <= tok || se.Highest < before || after < se.Highest {
								t.Errorf("%s: refused %d with highest %d (before %d, after %d)", name, tok, se.Highest, before, after)
							}
							seen[name] = max(seen[name], se.Highest)
						default:
							t.Errorf("Check(%s, %d): %v", name, tok, err)
						}
						if after < before {
							t.Errorf("%s: highest went down from %d to %d", name, before, after)
						}
						seen[name] = max(seen[name], after)
					}
				})
			}
			wg.Wait()
			for _, name := range names {
				h, err := s.Highest(name)
				if err != nil {
					t.Fatal(err)
				}
				if h != maxAccepted[name] {
					t.Errorf("%s: store's highest %d, max accepted %d", name, h, maxAccepted[name])
				}
			}
		})
	}
}

// TestGuardConcurrentPersisted checks that what the bolt store reports after
// concurrent checks is what a reopen finds.
func TestGuardConcurrentPersisted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fencing.db")
	s, err := OpenBoltStore(path)
	if err != nil {
		t.Fatal(err)
	}
	g := NewGuard(s)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for tok := Token(w + 1); tok <= 200; tok += 8 {
				_ = g.Check(context.Background(), "n", tok)
			}
		})
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = OpenBoltStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if h, err := s.Highest("n"); err != nil || h != 200 {
		t.Fatalf("after reopen Highest = %d, %v; want 200", h, err)
	}
}

func TestGuardMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := NewGuard(NewMemoryStore(), WithRegisterer(reg))
	ctx := context.Background()
	_ = g.Check(ctx, "n", 12)
	_ = g.Check(ctx, "n", 15)
	_ = g.Check(ctx, "n", 15)
	_ = g.Check(ctx, "n", 12)
	_ = g.Check(ctx, "", 12)
	_ = g.Check(ctx, "n", 0)

	want := []struct {
		name   string
		labels map[string]string
		value  float64
	}{
		{"coordd_fencing_accepted_total", nil, 3},
		{"coordd_fencing_rejected_total", map[string]string{"reason": "stale"}, 1},
		{"coordd_fencing_rejected_total", map[string]string{"reason": "bad_name"}, 1},
		{"coordd_fencing_rejected_total", map[string]string{"reason": "bad_token"}, 1},
		{"coordd_fencing_store_errors_total", nil, 0},
	}
	for _, w := range want {
		if got := counterValue(t, reg, w.name, w.labels); got != w.value {
			t.Errorf("%s%v = %v, want %v", w.name, w.labels, got, w.value)
		}
	}

	// A second Guard on the same registry shares the counters instead of
	// panicking, and its store errors are counted.
	g2 := NewGuard(failingStore{errDiskFull}, WithRegisterer(reg))
	_ = g2.Check(ctx, "n", 20)
	_ = g2.Check(ctx, "m", 1)
	if got := counterValue(t, reg, "coordd_fencing_store_errors_total", nil); got != 2 {
		t.Errorf("store errors = %v, want 2", got)
	}
	_ = g2.Check(ctx, "", 1)
	if got := counterValue(t, reg, "coordd_fencing_rejected_total", map[string]string{"reason": "bad_name"}); got != 2 {
		t.Errorf("bad_name rejections shared = %v, want 2", got)
	}

	// No per-name labels: the series are the same whatever names were seen.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() != "reason" {
					t.Errorf("%s has label %q", mf.GetName(), lp.GetName())
				}
			}
		}
	}
}

func TestNewGuardPanics(t *testing.T) {
	t.Run("nil store", func(t *testing.T) {
		defer func() {
			if recover() == nil {
				t.Fatal("NewGuard(nil) did not panic")
			}
		}()
		NewGuard(nil)
	})
	t.Run("conflicting metric", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		reg.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "coordd_fencing_accepted_total", Help: "a gauge"}))
		defer func() {
			if recover() == nil {
				t.Fatal("NewGuard with a conflicting metric did not panic")
			}
		}()
		NewGuard(NewMemoryStore(), WithRegisterer(reg))
	})
}
