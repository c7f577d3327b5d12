package netproxy

import (
	"errors"
	"fmt"
	"math"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Errors returned by this package.
var (
	// ErrNotLoopback: a target address is not an IP literal on loopback.
	ErrNotLoopback = errors.New("netproxy: not a loopback address")
	// ErrUnknownNode: a node ID that the Net was not created with.
	ErrUnknownNode = errors.New("netproxy: unknown node")
	// ErrInvalidFaults: negative delay or jitter, or loss outside [0, 1].
	ErrInvalidFaults = errors.New("netproxy: invalid faults")
	// ErrInvalidPartition: a node listed twice, or a bad node set.
	ErrInvalidPartition = errors.New("netproxy: invalid partition")
)

// Faults are the faults applied to one direction of traffic. The zero value
// is a healthy network. See the package documentation for the semantics.
type Faults struct {
	// Cut discards every byte sent in this direction.
	Cut bool
	// Delay is added to every chunk, plus a uniform random [0, Jitter).
	Delay, Jitter time.Duration
	// Loss is the probability, per chunk, that the connection is reset
	// instead of the chunk being delivered.
	Loss float64
}

// IsZero reports whether f is a healthy network.
func (f Faults) IsZero() bool { return f == Faults{} }

// Validate reports ErrInvalidFaults for negative durations or a loss
// probability outside [0, 1].
func (f Faults) Validate() error {
	if f.Delay < 0 || f.Jitter < 0 {
		return fmt.Errorf("%w: negative delay %v or jitter %v", ErrInvalidFaults, f.Delay, f.Jitter)
	}
	if math.IsNaN(f.Loss) || f.Loss < 0 || f.Loss > 1 {
		return fmt.Errorf("%w: loss %v not in [0, 1]", ErrInvalidFaults, f.Loss)
	}
	return nil
}

// String is "ok", or the faults that are set, e.g. "cut delay=50ms±10ms loss=0.1".
func (f Faults) String() string {
	if f.IsZero() {
		return "ok"
	}
	var parts []string
	if f.Cut {
		parts = append(parts, "cut")
	}
	if f.Delay > 0 || f.Jitter > 0 {
		s := "delay=" + f.Delay.String()
		if f.Jitter > 0 {
			s += "±" + f.Jitter.String()
		}
		parts = append(parts, s)
	}
	if f.Loss > 0 {
		parts = append(parts, fmt.Sprintf("loss=%g", f.Loss))
	}
	return strings.Join(parts, " ")
}

// Stats count what happened to the bytes of one direction.
type Stats struct {
	Delivered int64 // bytes written to the receiver
	Dropped   int64 // bytes discarded because the direction was cut
	Resets    int64 // connections reset by Loss
}

// Direction is the fault state of one direction of traffic between two
// nodes, shared by the streams of every link that carry bytes that way (see
// the package documentation). It is safe for concurrent use.
type Direction struct {
	name string

	mu      sync.Mutex
	faults  Faults
	streams map[*stream]struct{} // live streams carrying this direction

	delivered, dropped, resets atomic.Int64
}

// NewDirection returns a healthy direction; name is for messages only.
func NewDirection(name string) *Direction {
	return &Direction{name: name, streams: make(map[*stream]struct{})}
}

// Name is the name given to NewDirection.
func (d *Direction) Name() string { return d.name }

// String is the name and the current faults.
func (d *Direction) String() string { return d.name + ": " + d.Faults().String() }

// Faults returns the current faults.
func (d *Direction) Faults() Faults {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.faults
}

// Set replaces the faults. If f does not cut, every connection that has
// discarded bytes in this direction is reset (its stream has a hole).
func (d *Direction) Set(f Faults) error {
	return d.update(func(cur *Faults) { *cur = f })
}

// Heal clears every fault: Set(Faults{}).
func (d *Direction) Heal() { _ = d.Set(Faults{}) }

// Stats returns the byte and reset counts so far.
func (d *Direction) Stats() Stats {
	return Stats{Delivered: d.delivered.Load(), Dropped: d.dropped.Load(), Resets: d.resets.Load()}
}

// update applies fn to a copy of the faults and installs the result if it is
// valid, then resets the connections that a heal leaves with a hole.
func (d *Direction) update(fn func(*Faults)) error {
	d.mu.Lock()
	f := d.faults
	fn(&f)
	if err := f.Validate(); err != nil {
		d.mu.Unlock()
		return fmt.Errorf("%s: %w", d.name, err)
	}
	d.faults = f
	var holed []*pconn
	if !f.Cut {
		for s := range d.streams {
			if s.holed {
				holed = append(holed, s.c)
			}
		}
	}
	d.mu.Unlock()
	for _, c := range holed {
		c.close(true)
	}
	return nil
}

// register adds s to the live streams and reports whether the direction is
// cut now; with holeIfCut, a cut marks s as holed at once (a black-holed
// connection, reset on heal).
func (d *Direction) register(s *stream, holeIfCut bool) (cut bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.streams[s] = struct{}{}
	if d.faults.Cut && holeIfCut {
		s.holed = true
	}
	return d.faults.Cut
}

func (d *Direction) unregister(s *stream) {
	d.mu.Lock()
	delete(d.streams, s)
	d.mu.Unlock()
}

// admit is the fate of a chunk of s due now: the faults in force, and
// whether s has a hole (it has if the direction is cut now: the chunk is
// about to be discarded).
func (d *Direction) admit(s *stream) (f Faults, holed bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.faults.Cut {
		s.holed = true
	}
	return d.faults, s.holed
}

// checkLoopback returns ErrNotLoopback unless addr is host:port with a
// loopback IP literal.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%w: %q: %v", ErrNotLoopback, addr, err)
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%w: %q", ErrNotLoopback, addr)
	}
	return nil
}
