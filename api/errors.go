package api

// Error codes in {"error":{"code":...}}. Clients branch on these; their
// meaning and HTTP status are part of the contract.
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

	// CodeRateLimited: the client sent more requests than its rate allows
	// (429, with Retry-After).
	CodeRateLimited = "rate_limited"
	// CodeTooManyWatchers: the node already serves as many blocking
	// queries and streams as it allows (429, with Retry-After).
	CodeTooManyWatchers = "too_many_watchers"
	// CodeRequestTimeout: the request body did not arrive in time (408).
	CodeRequestTimeout = "request_timeout"

	// CodeUnauthenticated: ACLs are on and the request carries no token.
	CodeUnauthenticated = "unauthenticated"
	// CodeInvalidToken: the token is not known to the cluster.
	CodeInvalidToken = "invalid_token"
	// CodePermissionDenied: the token has no rule that allows the request.
	CodePermissionDenied = "permission_denied"
	// CodeACLBootstrapped: POST /v1/acl/bootstrap after the first one.
	CodeACLBootstrapped = "acl_already_bootstrapped"
	// CodeTokenNotFound: no token has that accessor id.
	CodeTokenNotFound = "token_not_found"
	// CodeTokenExists: a token with that accessor id or secret exists.
	CodeTokenExists = "token_exists"
	// CodeTooManyLeases: the token holds as many leases as allowed.
	CodeTooManyLeases = "too_many_leases"
	// CodeTooManyCandidates: the name has as many candidates as allowed.
	CodeTooManyCandidates = "too_many_candidates"
	// CodeCrossOrigin: a browser sent a state-changing request from a page
	// of another origin (cross-site request forgery); nothing was done (403).
	CodeCrossOrigin = "cross_origin_refused"
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
