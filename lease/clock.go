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
