package httpapi

import (
	"errors"
	"net"
	"net/http"
	"strconv"

	"github.com/coordd/coordd/api"
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
		w.Header().Set(api.HeaderIndex, strconv.FormatUint(st.Index(), 10))
		w.Header().Set("Content-Disposition", `attachment; filename="coordd-`+strconv.FormatUint(st.Index(), 10)+`.snap"`)
		w.WriteHeader(http.StatusOK)
		if err := fsm.WriteState(w, st); err != nil {
			a.log.Warn("snapshot stream failed", "index", st.Index(), "error", err)
			panic(http.ErrAbortHandler) // cut the connection: no trailer
		}
		return nil
	})
}

// MaxRestoreBump bounds ?bump: far more than any cluster's lifetime of
// writes, far from overflowing an index.
const MaxRestoreBump = 1 << 48

// snapshotPost answers POST /v1/snapshot: the body is a snapshot file (as
// GET /v1/snapshot or `coordctl snapshot save` wrote it) to restore into
// the running cluster. The whole file is read and verified (framing, record
// counts, checksum, every record) before anything changes: a truncated or
// corrupted file gets 400 invalid_snapshot and leaves the cluster as it was.
// A follower streams the upload to the leader.
//
// ?bump=N raises the index (and so every token issued after the restore) by
// N above the backup's and the log's (like etcdutl's --bump-revision).
// Without it, a restore into a cluster whose history is behind the backup
// (a new or wiped cluster, whose log knows nothing of the tokens the old
// cluster issued after the backup was taken) bumps by
// fsm.DefaultRestoreBump; ?bump=0 opts out.
func (a *API) snapshotPost(w http.ResponseWriter, r *http.Request) {
	q, err := query(r, "bump")
	if err != nil {
		writeError(w, err)
		return
	}
	bump, explicit, err := uintParam(q, "bump")
	if err == nil && bump > MaxRestoreBump {
		err = badRequest("query parameter \"bump\" must be at most " + strconv.FormatUint(MaxRestoreBump, 10))
	}
	if err != nil {
		writeError(w, err)
		return
	}
	if r.ContentLength > a.opts.MaxSnapshotBytes {
		writeErrorDetail(w, http.StatusRequestEntityTooLarge, api.ErrorDetail{Code: api.CodeTooLarge,
			Message: "snapshot too large: the limit is " + strconv.FormatInt(a.opts.MaxSnapshotBytes, 10) + " bytes (-max-snapshot-bytes)"})
		return
	}
	// The upload may be large and slow, but not endless.
	lift := bodyDeadline(w, RestoreTimeout)
	if !a.node.IsLeader() {
		a.forwardBody(w, r, r.Body, RestoreTimeout)
		return
	}
	backup, err := fsm.ReadState(http.MaxBytesReader(w, r.Body, a.opts.MaxSnapshotBytes))
	if err == nil {
		lift()
	}
	if err != nil {
		var mbe *http.MaxBytesError
		var ne net.Error
		switch {
		case errors.As(err, &mbe):
			writeErrorDetail(w, http.StatusRequestEntityTooLarge, api.ErrorDetail{Code: api.CodeTooLarge,
				Message: "snapshot too large: the limit is " + strconv.FormatInt(mbe.Limit, 10) + " bytes (-max-snapshot-bytes)"})
			return
		case errors.As(err, &ne) && ne.Timeout():
			writeError(w, bodyReadError(err, RestoreTimeout))
			return
		}
		writeErrorDetail(w, http.StatusBadRequest, api.ErrorDetail{Code: api.CodeInvalidSnapshot,
			Message: "the body is not a sound coordd snapshot; nothing was changed: " + err.Error()})
		return
	}
	res, err := a.node.Restore(r.Context(), backup, RestoreOptions{Bump: bump, ExplicitBump: explicit})
	if err != nil {
		writeError(w, err)
		return
	}
	res.TookMS = res.Took.Milliseconds()
	w.Header().Set(api.HeaderIndex, strconv.FormatUint(res.Index, 10))
	writeJSON(w, http.StatusOK, res)
}
