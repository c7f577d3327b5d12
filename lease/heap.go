package lease

// A leaseHeap is a binary min-heap of entries ordered by entry.key[w] (ties
// broken by lease ID so that batches are deterministic). Each entry records
// its position in entry.idx[w] (-1 when absent), so that an entry can be
// fixed or removed in O(log n). The Lessor keeps two of them: w = expHeap
// (expiry eligibility) and w = cpHeap (checkpoint due time).
//
// The heap's slots hold a copy of each entry's key and ID next to the
// pointer, so that comparisons read the slice and never follow a pointer:
// with a million leases, following two pointers per comparison (cache
// misses) made the sift-downs a third of the leader's CPU under
// keepalives. A sift moves a hole rather than swapping, so each level
// writes one entry's idx. entry.key[w] stays the source of truth: whoever
// changes it calls fix.
//
// A hand-written heap rather than container/heap: the two heaps share one
// entry type, and direct calls avoid the interface dispatch on the hot path.
type leaseHeap struct {
	w int
	s []heapSlot
}

// heapSlot is one place in a leaseHeap: the entry and, for comparisons,
// copies of its key and ID.
type heapSlot struct {
	key int64
	id  uint64
	e   *entry
}

func slotOf(e *entry, w int) heapSlot { return heapSlot{key: e.key[w], id: e.id, e: e} }

func (a *heapSlot) before(b *heapSlot) bool {
	if a.key != b.key {
		return a.key < b.key
	}
	return a.id < b.id
}

func (h *leaseHeap) len() int { return len(h.s) }

func (h *leaseHeap) top() *entry { return h.s[0].e }

func (h *leaseHeap) less(i, j int) bool { return h.s[i].before(&h.s[j]) }

// place puts x at i and records the position in its entry.
func (h *leaseHeap) place(i int, x heapSlot) {
	h.s[i] = x
	x.e.idx[h.w] = int32(i)
}

func (h *leaseHeap) up(i int) {
	x := h.s[i]
	for i > 0 {
		p := (i - 1) / 2
		if !x.before(&h.s[p]) {
			break
		}
		h.place(i, h.s[p])
		i = p
	}
	h.place(i, x)
}

// down sifts the slot at i down and reports whether it moved.
func (h *leaseHeap) down(i int) bool {
	start, n := i, len(h.s)
	x := h.s[i]
	for {
		l := 2*i + 1
		if l >= n || l < 0 {
			break
		}
		c := l
		if r := l + 1; r < n && h.s[r].before(&h.s[l]) {
			c = r
		}
		if !h.s[c].before(&x) {
			break
		}
		h.place(i, h.s[c])
		i = c
	}
	h.place(i, x)
	return i > start
}

// push adds e, which must not be in the heap.
func (h *leaseHeap) push(e *entry) {
	h.s = append(h.s, slotOf(e, h.w))
	h.up(len(h.s) - 1)
}

// fix restores the heap order after e.key[w] changed.
func (h *leaseHeap) fix(e *entry) {
	i := int(e.idx[h.w])
	h.s[i].key = e.key[h.w]
	if !h.down(i) {
		h.up(i)
	}
}

// remove takes e out of the heap; a no-op when it is not in it.
func (h *leaseHeap) remove(e *entry) {
	i := int(e.idx[h.w])
	if i < 0 {
		return
	}
	n := len(h.s) - 1
	last := h.s[n]
	h.s[n] = heapSlot{}
	h.s = h.s[:n]
	e.idx[h.w] = -1
	if i != n {
		h.place(i, last)
		if !h.down(i) {
			h.up(i)
		}
	}
}

// reset empties the heap and releases its storage.
func (h *leaseHeap) reset() { h.s = nil }
