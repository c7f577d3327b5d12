package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/coordd/coordd/fsm"
)

// Error codes in {"error":{"code":...}}. Clients branch on these.
const (
	CodeBadRequest        = "bad_request"
	CodeNotFound          = "not_found"
	CodeKeyNotFound       = "key_not_found"
	CodeUnknownMember     = "unknown_member"
	CodeCASConflict       = "cas_conflict"
	CodeTooLarge          = "too_large"
	CodeMethod            = "method_not_allowed"
	CodeNotLeader         = "not_leader"
	CodeNoLeader          = "no_leader"
	CodeLeaderNotReady    = "leader_not_ready"
	CodeCatchingUp        = "catching_up"
	CodeOutcomeUnknown    = "outcome_unknown"
	CodeShuttingDown      = "shutting_down"
	CodeForwardFailed     = "forward_failed"
	CodeInternal          = "internal"
	CodeLeaseNotFound     = "lease_not_found"
	CodeLeaseLost         = "lease_lost"
	CodeBadTTL            = "bad_ttl"
	CodeElectionNotFound  = "election_not_found"
	CodeNotHolder         = "not_holder"
	CodeStaleToken        = "stale_token"
	CodeKindMismatch      = "kind_mismatch"
	CodeLimitMismatch     = "limit_mismatch"
	CodeIdempotencyReused = "idempotency_key_reused"
	CodeInvalidSnapshot   = "invalid_snapshot"
	CodeRestoreInProgress = "restore_in_progress"
	CodeClusterMismatch   = "cluster_mismatch"
	headerRetryAfter      = "Retry-After"
	retryAfterSeconds     = "1"
	contentTypeJSON       = "application/json"
	contentTypeBytes      = "application/octet-stream"
	headerContentType     = "Content-Type"
	headerIndex           = "X-Coordd-Index"
	headerConsistency     = "X-Coordd-Consistency"
	headerKnownLeader     = "X-Coordd-Known-Leader"
	headerLastContact     = "X-Coordd-Last-Contact"
	headerAppliedIndex    = "X-Coordd-Applied-Index"
	headerForwardedBy     = "X-Coordd-Forwarded-By"
	headerServedBy        = "X-Coordd-Served-By"
	headerIdempotencyID   = "Idempotency-Key"
	headerReplayed        = "Idempotent-Replayed"
	headerClusterID       = "X-Coordd-Cluster-Id"
)

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail describes one error.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// CurrentIndex is the key's modify index on a CAS conflict (0: absent).
	CurrentIndex *uint64 `json:"current_index,omitempty"`
	// Leader is the id of the leader, when known, on not_leader.
	Leader string `json:"leader,omitempty"`
	// CurrentToken is the holder's token on stale_token.
	CurrentToken *uint64 `json:"current_token,omitempty"`
}

// apiError is an error with its HTTP status and code decided.
type apiError struct {
	status int
	detail ErrorDetail
}

func (e *apiError) Error() string { return e.detail.Message }

func badRequest(msg string) error {
	return &apiError{status: http.StatusBadRequest, detail: ErrorDetail{Code: CodeBadRequest, Message: msg}}
}

// classify maps an error to its status and JSON detail.
func classify(err error) (int, ErrorDetail) {
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
		return http.StatusRequestEntityTooLarge, ErrorDetail{Code: CodeTooLarge, Message: "request body too large: limit is " + strconv.FormatInt(mbe.Limit, 10) + " bytes"}
	case errors.As(err, &cas):
		ci := cas.CurrentIndex
		return http.StatusConflict, ErrorDetail{Code: CodeCASConflict, Message: err.Error(), CurrentIndex: &ci}
	case errors.As(err, &stale):
		ct := stale.Current
		return http.StatusConflict, ErrorDetail{Code: CodeStaleToken, Message: err.Error(), CurrentToken: &ct}
	case errors.Is(err, fsm.ErrStaleToken):
		return http.StatusConflict, ErrorDetail{Code: CodeStaleToken, Message: err.Error()}
	case errors.Is(err, fsm.ErrLeaseNotFound):
		return http.StatusNotFound, ErrorDetail{Code: CodeLeaseNotFound, Message: err.Error()}
	case errors.Is(err, fsm.ErrBadTTL):
		return http.StatusBadRequest, ErrorDetail{Code: CodeBadTTL, Message: err.Error()}
	case errors.Is(err, fsm.ErrElectionNotFound):
		return http.StatusNotFound, ErrorDetail{Code: CodeElectionNotFound, Message: err.Error()}
	case errors.Is(err, fsm.ErrNotHolder):
		return http.StatusConflict, ErrorDetail{Code: CodeNotHolder, Message: err.Error()}
	case errors.Is(err, fsm.ErrKindMismatch):
		return http.StatusConflict, ErrorDetail{Code: CodeKindMismatch, Message: err.Error()}
	case errors.Is(err, fsm.ErrLimitMismatch):
		return http.StatusConflict, ErrorDetail{Code: CodeLimitMismatch, Message: err.Error()}
	case errors.Is(err, fsm.ErrIdempotencyKeyReused):
		return http.StatusUnprocessableEntity, ErrorDetail{Code: CodeIdempotencyReused, Message: err.Error()}
	case errors.Is(err, fsm.ErrKeyNotFound):
		return http.StatusNotFound, ErrorDetail{Code: CodeKeyNotFound, Message: err.Error()}
	case errors.Is(err, ErrUnknownMember), errors.Is(err, fsm.ErrMemberNotFound):
		return http.StatusNotFound, ErrorDetail{Code: CodeUnknownMember, Message: err.Error()}
	case errors.Is(err, ErrBadRequest):
		return http.StatusBadRequest, ErrorDetail{Code: CodeBadRequest, Message: err.Error()}
	case errors.Is(err, ErrNotLeader):
		return http.StatusServiceUnavailable, ErrorDetail{Code: CodeNotLeader, Message: err.Error()}
	case errors.Is(err, ErrNoLeader):
		return http.StatusServiceUnavailable, ErrorDetail{Code: CodeNoLeader, Message: err.Error()}
	case errors.Is(err, ErrLeaderNotReady):
		return http.StatusServiceUnavailable, ErrorDetail{Code: CodeLeaderNotReady, Message: err.Error()}
	case errors.Is(err, ErrCatchingUp):
		return http.StatusServiceUnavailable, ErrorDetail{Code: CodeCatchingUp, Message: err.Error()}
	case errors.Is(err, ErrOutcomeUnknown):
		return http.StatusServiceUnavailable, ErrorDetail{Code: CodeOutcomeUnknown,
			Message: err.Error() + " (the write may or may not have been applied: retry with the same Idempotency-Key, or read before retrying)"}
	case errors.Is(err, ErrClusterMismatch):
		return http.StatusConflict, ErrorDetail{Code: CodeClusterMismatch, Message: err.Error()}
	case errors.Is(err, ErrRestoreInProgress):
		return http.StatusConflict, ErrorDetail{Code: CodeRestoreInProgress, Message: err.Error()}
	case errors.Is(err, ErrShutdown):
		return http.StatusServiceUnavailable, ErrorDetail{Code: CodeShuttingDown, Message: err.Error()}
	default:
		return http.StatusInternalServerError, ErrorDetail{Code: CodeInternal, Message: err.Error()}
	}
}

func writeError(w http.ResponseWriter, err error) {
	status, detail := classify(err)
	writeErrorDetail(w, status, detail)
}

func writeErrorDetail(w http.ResponseWriter, status int, detail ErrorDetail) {
	if status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests {
		w.Header().Set(headerRetryAfter, retryAfterSeconds)
	}
	writeJSON(w, status, ErrorBody{Error: detail})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set(headerContentType, contentTypeJSON)
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
