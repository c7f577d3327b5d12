package lease

import (
	"errors"
	"sync"
	"time"
)

// Errors returned by the Lessor.
var (
	// ErrNotActive: the Lessor was demoted or never promoted; this node is
	// not (yet) the leader that serves leases.
	ErrNotActive = errors.New("lease: not the active leader")
	// ErrNotFound: the Lessor does not know the lease (never granted, or
	// revoked or expired in the replicated state).
	ErrNotFound = errors.New("lease: lease not found")
	// ErrExpired: the lease is known but its deadline has passed; its
	// expiry is not committed yet. A lease past its deadline is never
	// renewed again.
	ErrExpired = errors.New("lease: lease expired")
)

// Defaults applied by New to a zero Config field.
const (
	DefaultExtension          = time.Second
	DefaultCheckpointInterval = 5 * time.Second
	DefaultMaxBatch           = 1000
)

// retryDelay is how long Expired and DueCheckpoints hold back an item they
// returned, so that a slow commit does not cause a storm of duplicate
// proposals.
const retryDelay = int64(time.Second)

// ceilMillis rounds a remainder up to whole milliseconds, at least 1ms.
// Remaining 0 means "no checkpoint" in the replicated state (it would buy a
// full TTL on the next failover), and the replicated state counts in
// milliseconds: rounding down there would cut up to 1ms off a promised
// deadline on every failover, rounding up here adds at most that much.
func ceilMillis(r int64) int64 {
	const ms = int64(time.Millisecond)
	if r <= ms {
		return ms
	}
	return add(r, ms-1) / ms * ms
}

// Info is what the replicated state knows about one lease.
type Info struct {
	// ID is the lease ID.
	ID uint64
	// TTL is the lease's time to live.
	TTL time.Duration
	// Epoch is the Raft index of the last grant, checkpoint or renew of the
	// lease. Expiry and checkpoint proposals carry the epoch they expect, so
	// that a stale one is ignored.
	Epoch uint64
	// Remaining is the checkpointed remaining TTL; 0 means no checkpoint
	// since the last grant or renew.
	Remaining time.Duration
	// CheckpointStamp is the wall clock (unix nanoseconds) of the leader
	// that proposed the checkpoint, read after it computed Remaining; 0 when
	// Remaining is 0.
	CheckpointStamp int64
}

// Config configures a Lessor. Zero fields take the defaults.
type Config struct {
	// Clock is the monotonic clock; default SystemClock.
	Clock Clock
	// Extension is the bounded extension every lease gets on Promote
	// (default 1s; negative means none). It must exceed the largest
	// difference between the wall clocks of two nodes.
	Extension time.Duration
	// CheckpointInterval: a lease is checkpointed this long after its last
	// grant, keepalive, checkpoint or renew (default 5s). A negative value
	// disables checkpoints (then every failover restarts every lease at a
	// full TTL plus Extension, etcd's behaviour).
	CheckpointInterval time.Duration
	// MaxBatch is the largest number of leases one Expired or
	// DueCheckpoints call returns (default 1000).
	MaxBatch int
}

// Expiry is a lease whose deadline has passed, with the epoch its expiry
// proposal must carry.
type Expiry struct {
	ID, Epoch uint64
}

// Checkpoint is a lease whose remaining TTL is due to be checkpointed
// through Raft: the proposal carries Remaining, the leader's wall clock
// (read after DueCheckpoints returned) and the epoch it expects. Remaining
// is a whole number of milliseconds, at least 1 (0 would mean "no
// checkpoint").
type Checkpoint struct {
	ID        uint64
	Remaining time.Duration
	Epoch     uint64
}

// Indexes of the two heaps in entry.key and entry.idx.
const (
	expHeap = 0 // key: lower bound of the time Expired may return the lease
	cpHeap  = 1 // key: lower bound of the time DueCheckpoints may return the lease
)

// entry is the in-memory state of one lease. Times are nanoseconds since
// Lessor.origin on the Lessor's monotonic clock.
type entry struct {
	id    uint64
	ttl   int64
	epoch uint64
	// base is the deadline promised to the holder as far as this leader
	// knows: the last keepalive or grant plus TTL, or what the replicated
	// state implies after a failover. Checkpoints carry base - now.
	base int64
	// deadline is the deadline this leader enforces: base, plus Extension
	// after Promote until the next keepalive. The extension is never
	// checkpointed, so failovers do not accumulate it.
	deadline int64
	// notBefore holds the lease back from Expired after it was returned
	// (0: not held back).
	notBefore int64
	// cpDue is when the next checkpoint is due (without the hold-off after
	// it was handed out); cpHold is that hold-off (0: none).
	cpDue, cpHold int64
	// key is the heap key. Both are lazily maintained lower bounds:
	// key[expHeap] of max(deadline, notBefore), key[cpHeap] of
	// max(cpDue, cpHold) (cpAt). A key is raised when its entry reaches
	// the top of the heap and is found early, so a keepalive, which only
	// moves both times later, touches neither heap: with 1M leases, the
	// two sift-downs per keepalive were a fifth of the leader's CPU.
	key [2]int64
	idx [2]int32
	// held: the replicated state holds a checkpointed remainder for the
	// lease (a keepalive must be committed before it is acknowledged).
	held bool
	// pending: a checkpoint was handed out by DueCheckpoints and has been
	// neither applied nor superseded by a renew or checkpoint. It may still
	// commit after a keepalive, so it counts as held.
	pending bool
}

func (e *entry) eligible() int64 { return max(e.deadline, e.notBefore) }

// Lessor is the leader-side lease clock. It is safe for concurrent use.
type Lessor struct {
	mu       sync.Mutex
	clock    Clock
	origin   time.Time
	ext      int64
	cpEvery  int64 // 0: checkpoints disabled
	maxBatch int

	active bool
	leases map[uint64]*entry
	exp    leaseHeap
	cp     leaseHeap
	// wake is signalled when a keepalive brings an event forward (see
	// Wake).
	wake chan struct{}
}

// New returns an inactive Lessor; it serves nothing until Promote.
func New(cfg Config) *Lessor {
	l := &Lessor{
		clock:    cfg.Clock,
		ext:      int64(cfg.Extension),
		cpEvery:  int64(cfg.CheckpointInterval),
		maxBatch: cfg.MaxBatch,
		exp:      leaseHeap{w: expHeap},
		cp:       leaseHeap{w: cpHeap},
		wake:     make(chan struct{}, 1),
	}
	if l.clock == nil {
		l.clock = SystemClock{}
	}
	switch {
	case l.ext == 0:
		l.ext = int64(DefaultExtension)
	case l.ext < 0:
		l.ext = 0
	}
	switch {
	case l.cpEvery == 0:
		l.cpEvery = int64(DefaultCheckpointInterval)
	case l.cpEvery < 0:
		l.cpEvery = 0
	}
	if l.maxBatch <= 0 {
		l.maxBatch = DefaultMaxBatch
	}
	l.origin = l.clock.Now()
	return l
}

func (l *Lessor) now() int64 { return int64(l.clock.Now().Sub(l.origin)) }

// add returns a+b, saturating instead of overflowing.
func add(a, b int64) int64 {
	s := a + b
	switch {
	case b > 0 && s < a:
		return 1<<63 - 1
	case b < 0 && s > a:
		return -1 << 63
	}
	return s
}

// Promote makes the Lessor active with the given leases, replacing whatever
// it held. A new leader calls it once the first entry of its term is
// applied, with every lease of the replicated state; wallNow is its wall
// clock (unix nanoseconds). With now the monotonic clock:
//
//   - Remaining == 0: deadline = now + TTL + Extension. A keepalive
//     acknowledged by the old leader after its last checkpoint may have
//     promised up to a full TTL from a moment before now.
//   - Remaining > 0: deadline = now + max(Remaining - elapsed + Extension, 0)
//     with elapsed = max(wallNow - CheckpointStamp, 0): the time since the
//     checkpoint is measured with the wall clocks of the two leaders, which
//     is safe as long as they agree within Extension. A stamp in the future
//     (skew) deducts nothing, and so does a missing stamp (0).
//
// Note the Extension is added before flooring at now. While the remainder
// lasts (elapsed <= Remaining) that is now + (Remaining - elapsed) plus
// Extension; a lease whose remainder ran out during the election keeps only
// what is left of its extension (nothing once elapsed >= Remaining +
// Extension), so that failovers in quick succession cannot keep a dead
// lease alive one Extension at a time.
//
// The extension is enforced but never checkpointed. Every lease is due for
// a checkpoint at once, so that after another failover the next leader
// resumes from a fresh remainder.
func (l *Lessor) Promote(leases []Info, wallNow int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.clear()
	l.active = true
	l.leases = make(map[uint64]*entry, len(leases))
	l.exp.s = make([]heapSlot, 0, len(leases))
	if l.cpEvery > 0 {
		l.cp.s = make([]heapSlot, 0, len(leases))
	}
	slab := make([]entry, len(leases)) // one allocation; Promote replaces all of it
	for i, in := range leases {
		if old := l.leases[in.ID]; old != nil { // duplicate: the last one wins
			l.removeFromSlices(old)
		}
		e := &slab[i]
		*e = entry{id: in.ID, ttl: int64(in.TTL), epoch: in.Epoch, idx: [2]int32{-1, -1}}
		if in.Remaining <= 0 {
			e.base = add(now, e.ttl)
			e.deadline = add(e.base, l.ext)
		} else {
			elapsed := int64(0)
			if in.CheckpointStamp != 0 {
				elapsed = max(wallNow-in.CheckpointStamp, 0)
			}
			left := add(add(int64(in.Remaining), -elapsed), l.ext)
			e.deadline = add(now, max(left, 0))
			e.base = add(e.deadline, -l.ext)
			e.held = true
		}
		e.key[expHeap] = e.deadline
		e.cpDue, e.key[cpHeap] = now, now
		l.leases[in.ID] = e
		e.idx[expHeap] = int32(len(l.exp.s))
		l.exp.s = append(l.exp.s, slotOf(e, expHeap))
		if l.cpEvery > 0 {
			e.idx[cpHeap] = int32(len(l.cp.s))
			l.cp.s = append(l.cp.s, slotOf(e, cpHeap))
		}
	}
	heapify(&l.exp)
	heapify(&l.cp)
}

// removeFromSlices takes e out of the heap slices Promote is filling (not
// yet heap-ordered, so order does not matter).
func (l *Lessor) removeFromSlices(e *entry) {
	for _, h := range []*leaseHeap{&l.exp, &l.cp} {
		i := int(e.idx[h.w])
		if i < 0 {
			continue
		}
		last := len(h.s) - 1
		h.place(i, h.s[last])
		h.s[last] = heapSlot{}
		h.s = h.s[:last]
		e.idx[h.w] = -1
	}
}

func heapify(h *leaseHeap) {
	for i := h.len()/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

// Demote forgets every lease and makes the Lessor inactive: every later
// call except Promote and Active returns ErrNotActive or nothing.
func (l *Lessor) Demote() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.clear()
}

func (l *Lessor) clear() {
	l.active = false
	l.leases = nil
	l.exp.reset()
	l.cp.reset()
}

// Active reports whether the Lessor was promoted and not demoted since.
func (l *Lessor) Active() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.active
}

// Grant records that a grant of info.ID was applied: deadline = now + TTL,
// first checkpoint due CheckpointInterval later. A grant of a known ID
// replaces it. No-op when inactive.
func (l *Lessor) Grant(info Info) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.active {
		return
	}
	now := l.now()
	e := l.leases[info.ID]
	if e == nil {
		e = &entry{id: info.ID, idx: [2]int32{-1, -1}}
		l.leases[info.ID] = e
	}
	e.ttl, e.epoch = int64(info.TTL), info.Epoch
	e.base = add(now, e.ttl)
	e.deadline = e.base
	e.notBefore = 0
	e.held, e.pending = info.Remaining > 0, false
	e.key[expHeap] = e.deadline
	if e.idx[expHeap] < 0 {
		l.exp.push(e)
	} else {
		l.exp.fix(e)
	}
	l.scheduleCheckpoint(e, add(now, l.cpEvery))
}

// Forget drops id: it was revoked or expired in the replicated state.
func (l *Lessor) Forget(id uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.leases[id]
	if e == nil {
		return
	}
	l.exp.remove(e)
	l.cp.remove(e)
	delete(l.leases, id)
}

// Keepalive renews id in memory, deadline = now + TTL, and returns the TTL
// as the remaining time.
//
// needsCommit is true when the replicated state holds (or may soon hold: a
// checkpoint was handed out and not yet applied) a checkpointed remainder
// for the lease. The caller must then commit a renew through Raft (which
// clears the remainder, bumps the epoch and calls Renewed) BEFORE
// acknowledging the client; otherwise a failover would resume from the old
// remainder and could expire the lease before the deadline just promised.
//
// Errors: ErrExpired when the deadline already passed (a lease is never
// resurrected), ErrNotFound when id is unknown, ErrNotActive when inactive.
func (l *Lessor) Keepalive(id uint64) (remaining time.Duration, needsCommit bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.active {
		return 0, false, ErrNotActive
	}
	e := l.leases[id]
	if e == nil {
		return 0, false, ErrNotFound
	}
	now := l.now()
	if e.deadline <= now {
		return 0, false, ErrExpired
	}
	d := add(now, e.ttl)
	e.base, e.deadline = d, d
	// A keepalive pushes the next checkpoint back by CheckpointInterval
	// (unless a remainder is held or on its way, which the renew commit
	// will settle): a live holder costs no Raft write at all, and a holder
	// that stops is checkpointed CheckpointInterval after its last
	// keepalive, which is what the bound counts.
	if !e.held && !e.pending && e.idx[cpHeap] >= 0 {
		l.scheduleCheckpoint(e, add(now, l.cpEvery))
	}
	// key[expHeap] only has to stay a lower bound: the heap is touched only
	// when the deadline moves earlier (a keepalive inside the extension that
	// Promote gave).
	if d < e.key[expHeap] {
		e.key[expHeap] = d
		l.exp.fix(e)
		l.signal()
	}
	return time.Duration(e.ttl), e.held || e.pending, nil
}

// Checkpointed records that a checkpoint of id was applied at Raft index
// epoch: the replicated state now holds a remainder (the next keepalive
// needs a commit) and the next checkpoint is due CheckpointInterval later.
// An expiry proposal held back by Expired can be retried at once (its epoch
// is stale now).
func (l *Lessor) Checkpointed(id uint64, epoch uint64) { l.applied(id, epoch, true) }

// Renewed records that a renew of id was applied at Raft index epoch: the
// replicated state holds no remainder any more and the next checkpoint is
// due CheckpointInterval later.
func (l *Lessor) Renewed(id uint64, epoch uint64) { l.applied(id, epoch, false) }

func (l *Lessor) applied(id, epoch uint64, held bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.active {
		return
	}
	e := l.leases[id]
	if e == nil {
		return
	}
	now := l.now()
	e.epoch, e.held, e.pending = epoch, held, false
	l.releaseExpiry(e)
	l.scheduleCheckpoint(e, add(now, l.cpEvery))
}

// Retry lets Expired and DueCheckpoints return id again at once instead of
// holding it back for a second: the caller's proposal for it failed.
func (l *Lessor) Retry(id uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.active {
		return
	}
	e := l.leases[id]
	if e == nil {
		return
	}
	l.releaseExpiry(e)
	e.cpHold = 0
	if e.idx[cpHeap] >= 0 && e.key[cpHeap] > e.cpDue {
		e.key[cpHeap] = e.cpDue
		l.cp.fix(e)
	}
}

// releaseExpiry drops the hold-off of e in the expiry heap.
func (l *Lessor) releaseExpiry(e *entry) {
	e.notBefore = 0
	if e.key[expHeap] > e.deadline {
		e.key[expHeap] = e.deadline
		l.exp.fix(e)
	}
}

// scheduleCheckpoint makes e's next checkpoint due at at and ends any
// hold-off. The heap is touched only when the key must move earlier (or
// e is not in it): a later time is found when e reaches the top.
func (l *Lessor) scheduleCheckpoint(e *entry, at int64) {
	if l.cpEvery <= 0 {
		return
	}
	e.cpDue, e.cpHold = at, 0
	switch {
	case e.idx[cpHeap] < 0:
		e.key[cpHeap] = at
		l.cp.push(e)
	case at < e.key[cpHeap]:
		e.key[cpHeap] = at
		l.cp.fix(e)
	}
}

// cpAt is when DueCheckpoints may return e: its checkpoint's due time, or
// the hold-off after it was handed out, whichever is later.
func (e *entry) cpAt() int64 { return max(e.cpDue, e.cpHold) }

// cpTop returns the top of the checkpoint heap with its key exact, raising
// stale keys on the way (nil if the heap is empty).
func (l *Lessor) cpTop() *entry {
	for l.cp.len() > 0 {
		e := l.cp.top()
		if at := e.cpAt(); at != e.key[cpHeap] {
			e.key[cpHeap] = at
			l.cp.fix(e)
			continue
		}
		return e
	}
	return nil
}

// Remaining returns the time until this leader expires id (its deadline
// minus now, floored at 0; the extension after Promote included).
func (l *Lessor) Remaining(id uint64) (time.Duration, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.active {
		return 0, ErrNotActive
	}
	e := l.leases[id]
	if e == nil {
		return 0, ErrNotFound
	}
	return time.Duration(max(e.deadline-l.now(), 0)), nil
}

// Expired returns up to MaxBatch leases whose deadline has passed, oldest
// deadline first (a lease returned again after its hold-off sorts by the end
// of its hold-off), each with the epoch its expiry proposal must carry. It
// does not forget them: Forget is called when the expiry is applied. A lease
// returned once is not returned again for a second (so that a slow commit
// does not cause a storm of duplicate proposals) unless Retry, Checkpointed
// or Renewed is called for it.
func (l *Lessor) Expired() []Expiry {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.active {
		return nil
	}
	now := l.now()
	var out []Expiry
	for l.exp.len() > 0 && len(out) < l.maxBatch {
		e := l.exp.top()
		if e.key[expHeap] > now {
			break
		}
		if el := e.eligible(); el != e.key[expHeap] {
			e.key[expHeap] = el // kept alive since it was keyed: re-sort
			l.exp.fix(e)
			continue
		}
		if out == nil {
			out = make([]Expiry, 0, min(l.maxBatch, l.exp.len()))
		}
		out = append(out, Expiry{ID: e.id, Epoch: e.epoch})
		e.notBefore = add(now, retryDelay)
		e.key[expHeap] = e.notBefore
		l.exp.fix(e)
	}
	return out
}

// DueCheckpoints returns up to MaxBatch leases whose checkpoint is due and
// whose deadline has not passed, soonest due first, each with its current
// remaining TTL (the promised deadline minus now, without the extension
// Promote gave, rounded up to whole milliseconds, at least 1ms) and the epoch the checkpoint proposal must
// carry. The caller stamps the proposal with its wall clock read after this
// call returns. An item is not returned again for a second unless
// Checkpointed, Renewed or Retry is called for it.
//
// A lease in the extension Promote gave it (promised deadline passed,
// enforced deadline not yet) whose replicated state already holds a
// remainder is not checkpointed again: that remainder already says when it
// ends.
func (l *Lessor) DueCheckpoints() []Checkpoint {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.active || l.cpEvery <= 0 {
		return nil
	}
	now := l.now()
	var out []Checkpoint
	for len(out) < l.maxBatch {
		e := l.cpTop()
		if e == nil || e.key[cpHeap] > now {
			break
		}
		if e.deadline <= now {
			l.cp.remove(e) // expired: never checkpointed again
			continue
		}
		r := e.base - now
		if r <= 0 && e.held {
			l.cp.remove(e) // a keepalive commits a renew, which reschedules
			continue
		}
		if out == nil {
			out = make([]Checkpoint, 0, min(l.maxBatch, l.cp.len()))
		}
		out = append(out, Checkpoint{ID: e.id, Remaining: time.Duration(ceilMillis(r)), Epoch: e.epoch})
		e.pending = true
		e.cpHold = add(now, retryDelay)
		e.key[cpHeap] = e.cpHold
		l.cp.fix(e)
	}
	return out
}

// NextEvent returns the earliest time at which Expired or DueCheckpoints may
// return something new, for the caller's timer; ok is false when there is
// nothing to wait for (or the Lessor is inactive). The time may be early
// (a lease due for a checkpoint may expire first) but is never late; it may
// be in the past, meaning now.
func (l *Lessor) NextEvent() (t time.Time, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.active {
		return time.Time{}, false
	}
	var next int64
	for l.exp.len() > 0 {
		e := l.exp.top()
		el := e.eligible()
		if el == e.key[expHeap] {
			next, ok = el, true
			break
		}
		e.key[expHeap] = el
		l.exp.fix(e)
	}
	if l.cp.len() > 0 {
		now := l.now()
		e := l.cpTop()
		for e != nil && e.deadline <= now {
			l.cp.remove(e)
			e = l.cpTop()
		}
		if e != nil {
			if c := e.key[cpHeap]; !ok || c < next {
				next, ok = c, true
			}
		}
	}
	if !ok {
		return time.Time{}, false
	}
	return l.origin.Add(time.Duration(next)), true
}

// NextEventIn is NextEvent as a time from now on the Lessor's clock (0 if
// the event is due already).
func (l *Lessor) NextEventIn() (time.Duration, bool) {
	t, ok := l.NextEvent()
	if !ok {
		return 0, false
	}
	return max(t.Sub(l.clock.Now()), 0), true
}

// Wake returns a channel that receives when a keepalive brought the next
// event forward (a keepalive inside the extension Promote gave moves the
// deadline earlier). A caller that sleeps until NextEvent selects on it.
// Applied grants, renewals, checkpoints and retries do not signal it: the
// caller knows of those (it applies or proposes them).
func (l *Lessor) Wake() <-chan struct{} { return l.wake }

func (l *Lessor) signal() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Len returns the number of leases the Lessor tracks (0 when inactive).
func (l *Lessor) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.leases)
}
