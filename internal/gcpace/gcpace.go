// Package gcpace keeps the Go garbage collector's target (GOGC) high while
// the live heap is small, and lowers it as the live heap grows, so that the
// memory the heap may grow by between collections stays under a cap.
//
// coordd's state is a set of immutable radix trees: every write copies a
// path of nodes, so it allocates much, and a high GOGC (400) saves most of
// the collector's CPU. But GOGC is a ratio: with 400 the heap may reach
// five times the live state, and a node holding 1 GiB of state would use
// 5 GiB. The work of a collection is proportional to the live heap, and
// collections are needed once per headroom's worth of allocation, so past
// some size a fixed headroom costs little: this package sets, after each
// collection,
//
//	GOGC = clamp(headroom / live * 100, Floor, maxPercent)
//
// where maxPercent is the configured percentage: the heap may grow by at most
// headroom, and at least by Floor percent of the live heap (Go's default,
// so that a large state never collects more often than Go would).
package gcpace

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
)

// Floor is the lowest GOGC the pacer sets: Go's default.
const Floor = 100

// Percent returns the GOGC for a live heap of live bytes: maxPercent
// while the headroom it gives stays under headroom, lower as live grows,
// never under Floor (or under maxPercent, if that is lower). headroom 0
// means no cap.
func Percent(live, headroom uint64, maxPercent int) int {
	if headroom == 0 || maxPercent <= Floor || live == 0 {
		return maxPercent
	}
	p := headroom * 100 / live
	switch {
	case p >= uint64(maxPercent):
		return maxPercent
	case p <= Floor:
		return Floor
	}
	return int(p)
}

// Pacer re-computes GOGC after every garbage collection.
type Pacer struct {
	headroom uint64
	max      int // GOGC while the live heap is small
	stopped  atomic.Bool
	current  atomic.Int64
	sample   []metrics.Sample
	mu       sync.Mutex // serialises Update (the finalizer goroutine and any other caller)
}

// Start sets GOGC to maxPercent and starts adjusting it after every
// collection (see the package comment). Stop ends the adjustments and
// leaves GOGC as it is.
func Start(headroom uint64, maxPercent int) *Pacer {
	p := &Pacer{headroom: headroom, max: maxPercent, sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
	p.current.Store(int64(maxPercent))
	debug.SetGCPercent(maxPercent)
	p.arm()
	return p
}

// Stop ends the adjustments.
func (p *Pacer) Stop() { p.stopped.Store(true) }

// Current is the GOGC the pacer set last.
func (p *Pacer) Current() int { return int(p.current.Load()) }

// sentinel is garbage on purpose: its finalizer runs after the collection
// that found it unreachable, and arms a new one for the next.
type sentinel struct{ _ [16]byte }

func (p *Pacer) arm() {
	s := &sentinel{}
	runtime.SetFinalizer(s, func(*sentinel) {
		if p.stopped.Load() {
			return
		}
		p.Update()
		p.arm()
	})
}

// Update reads the live heap of the last collection and sets GOGC from it.
func (p *Pacer) Update() {
	p.mu.Lock()
	defer p.mu.Unlock()
	metrics.Read(p.sample)
	if p.sample[0].Value.Kind() != metrics.KindUint64 {
		return
	}
	want := Percent(p.sample[0].Value.Uint64(), p.headroom, p.max)
	if int64(want) != p.current.Load() {
		debug.SetGCPercent(want)
		p.current.Store(int64(want))
	}
}
