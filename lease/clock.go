package lease

import (
	"sync"
	"time"
)

// Clock gives monotonic time. The Lessor only ever subtracts two readings of
// the same Clock, so a reading needs no particular epoch. Tests and the
// fault-injection suite move it (see FakeClock).
type Clock interface {
	// Now returns the current time. Successive readings must not go backwards.
	Now() time.Time
}

// SystemClock is the real clock: time.Now, whose readings carry Go's
// monotonic clock, so wall-clock steps (NTP, an operator) do not move lease
// deadlines.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// FakeClock is a Clock that only moves when told to. It is safe for
// concurrent use.
type FakeClock struct {
	mu  sync.Mutex
	now time.Time
}

// NewFakeClock returns a FakeClock that reads start until it is advanced.
func NewFakeClock(start time.Time) *FakeClock { return &FakeClock{now: start} }

// Now returns the clock's current reading.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d. A negative d is ignored: a monotonic
// clock never goes backwards.
func (c *FakeClock) Advance(d time.Duration) {
	if d <= 0 {
		return
	}
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// SkewClock runs at an adjustable rate relative to a base clock and can be
// jumped forward: the fault-injection suite's way to give one node's lease
// clock a fast, slow or jumping clock (OS clock tricks do not reach Go's
// monotonic clock). It never goes backwards. It is safe for concurrent use.
type SkewClock struct {
	mu         sync.Mutex
	base       Clock
	anchorBase time.Time // base reading at the last change
	anchorNow  time.Time // this clock's reading at the last change
	rate       float64
	last       time.Time
}

// NewSkewClock returns a SkewClock that reads like base until changed.
func NewSkewClock(base Clock) *SkewClock {
	now := base.Now()
	return &SkewClock{base: base, anchorBase: now, anchorNow: now, rate: 1, last: now}
}

// Now returns the skewed reading.
func (c *SkewClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nowLocked()
}

func (c *SkewClock) nowLocked() time.Time {
	elapsed := c.base.Now().Sub(c.anchorBase)
	t := c.anchorNow.Add(time.Duration(float64(elapsed) * c.rate))
	if t.Before(c.last) {
		t = c.last
	}
	c.last = t
	return t
}

// Jump moves the clock forward by d (d <= 0 is ignored).
func (c *SkewClock) Jump(d time.Duration) {
	if d <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.nowLocked()
	c.anchorBase, c.anchorNow = c.base.Now(), now.Add(d)
	c.last = c.anchorNow
}

// SetRate makes the clock run rate times as fast as its base from now on
// (rate must be > 0; others are ignored).
func (c *SkewClock) SetRate(rate float64) {
	if !(rate > 0) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.nowLocked()
	c.anchorBase, c.anchorNow, c.rate = c.base.Now(), now, rate
}

// Skew reports how far ahead of its base the clock is, and its rate.
func (c *SkewClock) Skew() (ahead time.Duration, rate float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nowLocked().Sub(c.base.Now()), c.rate
}
