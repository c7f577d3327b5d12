package server

import (
	"net/http"
	"sync"
)

// readShadower mirrors a sampled fraction of reads to shadow members and
// compares the answers (see readshadow_impl in a later step).
type readShadower struct {
	mu    sync.Mutex
	tally map[string][2]uint64 // member -> compared, differed
}

func (rs *readShadower) serve(next http.Handler, w http.ResponseWriter, r *http.Request) {
	next.ServeHTTP(w, r)
}

func (rs *readShadower) counts(member string) (compared, differed uint64) {
	if rs == nil {
		return 0, 0
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	c := rs.tally[member]
	return c[0], c[1]
}

func newReadShadower(*Config) *readShadower { return &readShadower{tally: map[string][2]uint64{}} }
