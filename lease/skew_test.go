package lease_test

import (
	"testing"
	"time"

	"github.com/coordd/coordd/lease"
)

func TestSkewClockJumpsForwardAndChangesRateWithoutGoingBack(t *testing.T) {
	base := lease.NewFakeClock(time.Unix(1000, 0))
	c := lease.NewSkewClock(base)
	t0 := c.Now()
	base.Advance(time.Second)
	if got := c.Now().Sub(t0); got != time.Second {
		t.Fatalf("rate 1: %s, want 1s", got)
	}
	c.Jump(5 * time.Second)
	if got := c.Now().Sub(t0); got != 6*time.Second {
		t.Fatalf("after a 5s jump: %s, want 6s", got)
	}
	c.Jump(-time.Hour) // ignored: never backwards
	c.SetRate(2)
	base.Advance(time.Second)
	if got := c.Now().Sub(t0); got != 8*time.Second {
		t.Fatalf("rate 2: %s, want 8s", got)
	}
	c.SetRate(0.5)
	base.Advance(2 * time.Second)
	if got := c.Now().Sub(t0); got != 9*time.Second {
		t.Fatalf("rate 0.5: %s, want 9s", got)
	}
	c.SetRate(0) // ignored
	if ahead, rate := c.Skew(); rate != 0.5 || ahead != 5*time.Second {
		t.Fatalf("Skew = %s %v, want 5s ahead at 0.5", ahead, rate)
	}
}
