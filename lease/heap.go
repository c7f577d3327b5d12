package lease

// A leaseHeap is a binary min-heap of entries ordered by entry.key[w] (ties
// broken by lease ID so that batches are deterministic). Each entry records
// its position in entry.idx[w] (-1 when absent), so that an entry can be
// fixed or removed in O(log n). The Lessor keeps two of them: w = expHeap
// (expiry eligibility) and w = cpHeap (checkpoint due time).
//
// A hand-written heap rather than container/heap: the two heaps share one
// entry type, and direct calls avoid the interface dispatch on the hot path.
type leaseHeap struct {
	w int
	s []*entry
}

func (h *leaseHeap) len() int { return len(h.s) }

func (h *leaseHeap) top() *entry { return h.s[0] }

func (h *leaseHeap) less(i, j int) bool {
	a, b := h.s[i], h.s[j]
	if a.key[h.w] != b.key[h.w] {
		return a.key[h.w] < b.key[h.w]
	}
	return a.id < b.id
}

func (h *leaseHeap) swap(i, j int) {
	h.s[i], h.s[j] = h.s[j], h.s[i]
	h.s[i].idx[h.w] = int32(i)
	h.s[j].idx[h.w] = int32(j)
}

func (h *leaseHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(i, p) {
			return
		}
		h.swap(i, p)
		i = p
	}
}

func (h *leaseHeap) down(i int) bool {
	start, n := i, len(h.s)
	for {
		l := 2*i + 1
		if l >= n || l < 0 {
			break
		}
		c := l
		if r := l + 1; r < n && h.less(r, l) {
			c = r
		}
		if !h.less(c, i) {
			break
		}
		h.swap(i, c)
		i = c
	}
	return i > start
}

// push adds e, which must not be in the heap.
func (h *leaseHeap) push(e *entry) {
	e.idx[h.w] = int32(len(h.s))
	h.s = append(h.s, e)
	h.up(len(h.s) - 1)
}

// fix restores the heap order after e.key[w] changed.
func (h *leaseHeap) fix(e *entry) {
	i := int(e.idx[h.w])
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
	if i != n {
		h.swap(i, n)
	}
	h.s[n] = nil
	h.s = h.s[:n]
	e.idx[h.w] = -1
	if i != n {
		if !h.down(i) {
			h.up(i)
		}
	}
}

// reset empties the heap and releases its storage.
func (h *leaseHeap) reset() { h.s = nil }
