package server

import (
	"testing"
	"time"
)

// Test_StampClock_StartsAfterTheLastStampAndRunsOnTheMonotonicClock: a
// leader whose wall clock is behind the last stamp starts just after it
// (not at its wall clock, which would freeze the state's clock), one whose
// wall clock is ahead starts there; either way the clock then advances
// with elapsed time only, whatever the wall clock does, and never goes
// backwards.
func Test_StampClock_StartsAfterTheLastStampAndRunsOnTheMonotonicClock(t *testing.T) {
	wall := time.Unix(1_000_000, 0)
	c := newStampClock(func() time.Time { return wall })

	// Not leading: max(floor, wall).
	if got := c.now(0); got != wall.UnixNano() {
		t.Fatalf("idle clock reads %d, want the wall clock %d", got, wall.UnixNano())
	}
	ahead := wall.Add(time.Hour).UnixNano() // a previous leader an hour ahead
	c.begin(ahead)
	first := c.now(ahead)
	if first < ahead+int64(stampEpsilon) || first > ahead+int64(stampEpsilon)+int64(time.Second) {
		t.Fatalf("first stamp %d, want just after the last stamp %d", first, ahead)
	}
	wall = wall.Add(-time.Minute) // the wall clock steps back: no effect
	time.Sleep(20 * time.Millisecond)
	second := c.now(ahead)
	if d := time.Duration(second - first); d < 20*time.Millisecond || d > 10*time.Second {
		t.Fatalf("the clock advanced %s in 20ms of elapsed time", d)
	}
	if got := c.now(second + int64(time.Hour)); got != second+int64(time.Hour) {
		t.Fatalf("a floor above the clock is not honoured: %d", got)
	}
	c.end()

	// A leader whose wall clock is ahead of the last stamp starts there.
	wall = time.Unix(2_000_000, 0)
	c.begin(wall.Add(-time.Hour).UnixNano())
	if got := c.now(0); got < wall.UnixNano() || got > wall.Add(time.Second).UnixNano() {
		t.Fatalf("stamp %d, want the wall clock %d", got, wall.UnixNano())
	}
	wall = wall.Add(time.Hour) // stepping the wall clock forward does not rush it
	if got := c.now(0); got > time.Unix(2_000_000, 0).Add(10*time.Second).UnixNano() {
		t.Fatalf("the clock followed a wall clock step: %d", got)
	}
}

// Test_SkewEstimator_TakesTheLargestRecentSample: samples are low by the
// time an entry took to arrive, so the estimate is the largest of the last
// one or two windows, and older windows are forgotten.
func Test_SkewEstimator_TakesTheLargestRecentSample(t *testing.T) {
	e := newSkewEstimator(10 * time.Second)
	if _, ok := e.get(); ok {
		t.Fatal("an estimate before any sample")
	}
	at := time.Unix(0, 0)
	e.sample(-5*time.Millisecond, at)
	e.sample(-2*time.Millisecond, at.Add(time.Second))
	e.sample(-9*time.Millisecond, at.Add(2*time.Second))
	if got, _ := e.get(); got != -2*time.Millisecond {
		t.Fatalf("estimate %s, want the largest sample -2ms", got)
	}
	// The next window keeps the previous one's maximum...
	e.sample(-50*time.Millisecond, at.Add(11*time.Second))
	if got, _ := e.get(); got != -2*time.Millisecond {
		t.Fatalf("estimate %s, want -2ms from the previous window", got)
	}
	// ...and a window later it is gone.
	e.sample(-50*time.Millisecond, at.Add(22*time.Second))
	if got, _ := e.get(); got != -50*time.Millisecond {
		t.Fatalf("estimate %s, want -50ms", got)
	}
	// A long silence forgets both windows.
	e.sample(time.Hour, at.Add(60*time.Second))
	e.sample(-time.Second, at.Add(100*time.Second))
	if got, _ := e.get(); got != -time.Second {
		t.Fatalf("estimate %s, want -1s", got)
	}
	e.set(3 * time.Second)
	if got, _ := e.get(); got != 3*time.Second {
		t.Fatalf("set: %s", got)
	}
}
