package httpapi

import (
	"net/http"
	"strconv"

	"github.com/coordd/coordd/fsm"
)

// snapshotGet answers GET /v1/snapshot: a consistent snapshot of the whole
// replicated state, taken on the leader after a linearizable read barrier
// and streamed in the snapshot file format (header, records, checksum). A
// failure while streaming cuts the connection, so the file's trailer is
// missing and readers refuse it: a partial backup can never pass for a
// whole one.
func (a *API) snapshotGet(w http.ResponseWriter, r *http.Request) {
	if _, err := query(r); err != nil {
		writeError(w, err)
		return
	}
	a.onLeader(w, r, nil, func() error {
		if err := a.readBarrier(r.Context(), false); err != nil {
			return err
		}
		st := a.node.State() // immutable: streaming it does not stall Apply
		w.Header().Set(headerContentType, contentTypeBytes)
		w.Header().Set(headerIndex, strconv.FormatUint(st.Index(), 10))
		w.Header().Set("Content-Disposition", `attachment; filename="coordd-`+strconv.FormatUint(st.Index(), 10)+`.snap"`)
		w.WriteHeader(http.StatusOK)
		if err := fsm.WriteState(w, st); err != nil {
			a.log.Warn("snapshot stream failed", "index", st.Index(), "error", err)
			panic(http.ErrAbortHandler) // cut the connection: no trailer
		}
		return nil
	})
}
