package server

import (
	"sync"
	"time"
)

// stampEpsilon is how far a new leader's first stamp is at least ahead of
// the last stamp in the log.
const stampEpsilon = time.Millisecond

// stampClock is the leader's replicated clock: the stamp every command it
// proposes carries, the only time the state machine knows (lock-delays,
// idempotency record expiry, lease checkpoints, grant times).
//
// When this node becomes the leader (its first entry of the term applied,
// so it has every stamp of earlier leaders) the clock starts once at
// max(last stamp + ε, this node's wall clock), then advances with this
// node's monotonic clock only. So no single node can freeze the replicated
// clock (a leader whose wall clock ran ahead leaves its successors a clock
// that goes on from there, not one stuck until their wall clocks catch up)
// or rush it during its term (stepping its wall clock changes nothing). A
// node whose wall clock is ahead of the replicated clock still moves it
// forward once, when it is elected, by that much: coordd_clock_skew_seconds
// shows such a node before it leads, and docs/operations.md says what that
// costs.
type stampClock struct {
	wall func() time.Time // this node's wall clock (with any unsafe offset)

	mu      sync.Mutex
	running bool
	base    int64     // the stamp at start
	start   time.Time // monotonic reading at start
	last    int64     // the last stamp handed out
}

func newStampClock(wall func() time.Time) *stampClock {
	return &stampClock{wall: wall}
}

// begin starts the clock for a term, after last, the state's stamp.
func (c *stampClock) begin(last int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.base = max(last+int64(stampEpsilon), c.wall().UnixNano())
	c.start = time.Now()
	c.last = c.base
	c.running = true
}

// end stops the clock when the term ends.
func (c *stampClock) end() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.running = false
}

// isRunning reports whether the clock runs (this node leads).
func (c *stampClock) isRunning() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.running
}

// now returns the replicated clock's current reading, never less than the
// last one, nor than floor (the state's stamp: a stamp below it would be
// raised by the state machine anyway). A clock that is not running (this
// node does not lead) reads max(floor, wall clock).
func (c *stampClock) now(floor int64) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.running {
		return max(floor, c.wall().UnixNano())
	}
	t := max(c.base+int64(time.Since(c.start)), c.last, floor)
	c.last = t
	return t
}
