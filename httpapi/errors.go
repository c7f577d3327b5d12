package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/fsm"
)

// Media types and HTTP headers that are not coordd's own (api has those).
const (
	retryAfterSeconds = "1"
	contentTypeJSON   = "application/json"
	contentTypeBytes  = "application/octet-stream"
	headerContentType = "Content-Type"
)

// apiError is an error with its HTTP status and code decided.
type apiError struct {
	status int
	detail api.ErrorDetail
}

func (e *apiError) Error() string { return e.detail.Message }

func badRequest(msg string) error {
	return &apiError{status: http.StatusBadRequest, detail: api.ErrorDetail{Code: api.CodeBadRequest, Message: msg}}
}

// classify maps an error to its status and JSON detail.
func classify(err error) (int, api.ErrorDetail) {
	var ae *apiError
	var mbe *http.MaxBytesError
	var cas *fsm.CASConflictError
	var stale *fsm.StaleTokenError
	if status, detail, ok := classifyACL(err); ok {
		return status, detail
	}
	switch {
	case errors.As(err, &ae):
		return ae.status, ae.detail
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge, api.ErrorDetail{Code: api.CodeTooLarge, Message: "request body too large: limit is " + strconv.FormatInt(mbe.Limit, 10) + " bytes"}
	case errors.As(err, &cas):
		ci := cas.CurrentIndex
		return http.StatusConflict, api.ErrorDetail{Code: api.CodeCASConflict, Message: err.Error(), CurrentIndex: &ci}
	case errors.As(err, &stale):
		ct := stale.Current
		return http.StatusConflict, api.ErrorDetail{Code: api.CodeStaleToken, Message: err.Error(), CurrentToken: &ct}
	case errors.Is(err, fsm.ErrStaleToken):
		return http.StatusConflict, api.ErrorDetail{Code: api.CodeStaleToken, Message: err.Error()}
	case errors.Is(err, fsm.ErrLeaseNotFound):
		return http.StatusNotFound, api.ErrorDetail{Code: api.CodeLeaseNotFound, Message: err.Error()}
	case errors.Is(err, fsm.ErrBadTTL):
		return http.StatusBadRequest, api.ErrorDetail{Code: api.CodeBadTTL, Message: err.Error()}
	case errors.Is(err, fsm.ErrElectionNotFound):
		return http.StatusNotFound, api.ErrorDetail{Code: api.CodeElectionNotFound, Message: err.Error()}
	case errors.Is(err, fsm.ErrNotHolder):
		return http.StatusConflict, api.ErrorDetail{Code: api.CodeNotHolder, Message: err.Error()}
	case errors.Is(err, fsm.ErrKindMismatch):
		return http.StatusConflict, api.ErrorDetail{Code: api.CodeKindMismatch, Message: err.Error()}
	case errors.Is(err, fsm.ErrLimitMismatch):
		return http.StatusConflict, api.ErrorDetail{Code: api.CodeLimitMismatch, Message: err.Error()}
	case errors.Is(err, fsm.ErrIdempotencyKeyReused):
		return http.StatusUnprocessableEntity, api.ErrorDetail{Code: api.CodeIdempotencyReused, Message: err.Error()}
	case errors.Is(err, fsm.ErrKeyNotFound):
		return http.StatusNotFound, api.ErrorDetail{Code: api.CodeKeyNotFound, Message: err.Error()}
	case errors.Is(err, ErrUnknownMember), errors.Is(err, fsm.ErrMemberNotFound):
		return http.StatusNotFound, api.ErrorDetail{Code: api.CodeUnknownMember, Message: err.Error()}
	case errors.Is(err, ErrBadRequest), errors.Is(err, fsm.ErrInvalid), errors.Is(err, fsm.ErrBadCommand):
		// A command that breaks its type's rules is refused before it is
		// proposed (by NewCommand, or by the node's check before Raft).
		return http.StatusBadRequest, api.ErrorDetail{Code: api.CodeBadRequest, Message: err.Error()}
	case errors.Is(err, ErrNotLeader):
		return http.StatusServiceUnavailable, api.ErrorDetail{Code: api.CodeNotLeader, Message: err.Error()}
	case errors.Is(err, ErrNoLeader):
		return http.StatusServiceUnavailable, api.ErrorDetail{Code: api.CodeNoLeader, Message: err.Error()}
	case errors.Is(err, ErrLeaderNotReady):
		return http.StatusServiceUnavailable, api.ErrorDetail{Code: api.CodeLeaderNotReady, Message: err.Error()}
	case errors.Is(err, ErrCatchingUp):
		return http.StatusServiceUnavailable, api.ErrorDetail{Code: api.CodeCatchingUp, Message: err.Error()}
	case errors.Is(err, ErrOutcomeUnknown):
		return http.StatusServiceUnavailable, api.ErrorDetail{Code: api.CodeOutcomeUnknown,
			Message: err.Error() + " (the write may or may not have been applied: retry with the same Idempotency-Key, or read before retrying)"}
	case errors.Is(err, ErrClusterMismatch):
		return http.StatusConflict, api.ErrorDetail{Code: api.CodeClusterMismatch, Message: err.Error()}
	case errors.Is(err, ErrRestoreInProgress):
		return http.StatusConflict, api.ErrorDetail{Code: api.CodeRestoreInProgress, Message: err.Error()}
	case errors.Is(err, ErrShutdown):
		return http.StatusServiceUnavailable, api.ErrorDetail{Code: api.CodeShuttingDown, Message: err.Error()}
	default:
		return http.StatusInternalServerError, api.ErrorDetail{Code: api.CodeInternal, Message: err.Error()}
	}
}

func writeError(w http.ResponseWriter, err error) {
	status, detail := classify(err)
	writeErrorDetail(w, status, detail)
}

func writeErrorDetail(w http.ResponseWriter, status int, detail api.ErrorDetail) {
	if status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests {
		w.Header().Set(api.HeaderRetryAfter, retryAfterSeconds)
	}
	writeJSON(w, status, api.ErrorBody{Error: detail})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set(headerContentType, contentTypeJSON)
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
