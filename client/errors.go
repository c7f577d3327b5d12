package client

import (
	"errors"
	"fmt"
)

// Sentinel errors. An *Error from the server matches the sentinel of its
// code with errors.Is, and carries the server's JSON error for errors.As.
var (
	// ErrNotLeader: the node answering is not the leader (retried
	// automatically; returned only when retries run out).
	ErrNotLeader = errors.New("coordd: not the leader")
	// ErrNoLeader: the cluster has no leader or no quorum right now.
	ErrNoLeader = errors.New("coordd: no leader (no quorum)")
	// ErrUnavailable: no node could be reached, or every breaker is open.
	ErrUnavailable = errors.New("coordd: no node reachable")
	// ErrOutcomeUnknown: the write may or may not have been applied and the
	// retries ran out.
	ErrOutcomeUnknown = errors.New("coordd: outcome unknown")
	// ErrKeyNotFound: no such key.
	ErrKeyNotFound = errors.New("coordd: key not found")
	// ErrCASConflict: a compare-and-swap did not hold; Error.CurrentIndex
	// is the key's modify index now.
	ErrCASConflict = errors.New("coordd: compare-and-swap conflict")
	// ErrLeaseNotFound: the lease does not exist (expired or revoked).
	ErrLeaseNotFound = errors.New("coordd: lease not found")
	// ErrLeaseLost: a session's lease expired, was revoked, or can no longer
	// be trusted.
	ErrLeaseLost = errors.New("coordd: lease lost")
	// ErrNotHolder: the lease does not hold the election or lock.
	ErrNotHolder = errors.New("coordd: not the holder")
	// ErrStaleToken: the token is not the holder's current one;
	// Error.CurrentToken says which is.
	ErrStaleToken = errors.New("coordd: stale token")
	// ErrLocked: TryLock found the lock held.
	ErrLocked = errors.New("coordd: lock held by another session")
	// ErrBadRequest: the server refused the input (4xx other than the above).
	ErrBadRequest = errors.New("coordd: bad request")
	// ErrUnknownMember: no cluster member has that id.
	ErrUnknownMember = errors.New("coordd: unknown member")
	// ErrConflict: the name is used differently (a lock used as an
	// election, another semaphore limit) or an Idempotency-Key was reused
	// for another request.
	ErrConflict = errors.New("coordd: conflicting use")
	// ErrSessionClosed: the session was closed by its owner.
	ErrSessionClosed = errors.New("coordd: session closed")
	// ErrUnauthenticated: the cluster requires an access token and the
	// call had none, or one it does not know (401).
	ErrUnauthenticated = errors.New("coordd: unauthenticated")
	// ErrPermissionDenied: the token's rules do not allow the call (403).
	ErrPermissionDenied = errors.New("coordd: permission denied")
	// ErrLimitExceeded: a limit refused the call (429): too many leases
	// for the token, candidates for the name, requests per second (retried
	// automatically), or watchers on the node.
	ErrLimitExceeded = errors.New("coordd: limit exceeded")
)

var codeSentinels = map[string]error{
	"not_leader":               ErrNotLeader,
	"no_leader":                ErrNoLeader,
	"leader_not_ready":         ErrNoLeader,
	"catching_up":              ErrNoLeader,
	"shutting_down":            ErrUnavailable,
	"forward_failed":           ErrUnavailable,
	"outcome_unknown":          ErrOutcomeUnknown,
	"key_not_found":            ErrKeyNotFound,
	"cas_conflict":             ErrCASConflict,
	"lease_not_found":          ErrLeaseNotFound,
	"lease_lost":               ErrLeaseLost,
	"not_holder":               ErrNotHolder,
	"election_not_found":       ErrNotHolder,
	"stale_token":              ErrStaleToken,
	"bad_request":              ErrBadRequest,
	"bad_ttl":                  ErrBadRequest,
	"too_large":                ErrBadRequest,
	"kind_mismatch":            ErrConflict,
	"limit_mismatch":           ErrConflict,
	"idempotency_key_reused":   ErrConflict,
	"restore_in_progress":      ErrConflict,
	"invalid_snapshot":         ErrBadRequest,
	"method_not_allowed":       ErrBadRequest,
	"not_found":                ErrBadRequest,
	"unknown_member":           ErrUnknownMember,
	"unauthenticated":          ErrUnauthenticated,
	"invalid_token":            ErrUnauthenticated,
	"permission_denied":        ErrPermissionDenied,
	"too_many_leases":          ErrLimitExceeded,
	"too_many_candidates":      ErrLimitExceeded,
	"rate_limited":             ErrLimitExceeded,
	"too_many_watchers":        ErrLimitExceeded,
	"token_not_found":          ErrBadRequest,
	"token_exists":             ErrConflict,
	"acl_already_bootstrapped": ErrConflict,
}

// Error is an error answer of a coordd node.
type Error struct {
	Status       int    `json:"-"`
	Code         string `json:"code"`
	Message      string `json:"message"`
	CurrentIndex uint64 `json:"current_index,omitempty"`
	CurrentToken uint64 `json:"current_token,omitempty"`
	Leader       string `json:"leader,omitempty"`
	// Node is the node that answered.
	Node string `json:"-"`
	// Index is the X-Coordd-Index of the answer (for a blocking read of a
	// missing key, the index to block on next).
	Index uint64 `json:"-"`
}

func (e *Error) Error() string {
	return fmt.Sprintf("coordd: %s (%d %s)", e.Message, e.Status, e.Code)
}

// Is matches the sentinel of the error's code.
func (e *Error) Is(target error) bool {
	s, ok := codeSentinels[e.Code]
	return ok && s == target
}

// retryable reports whether the answer says nothing was done, so that the
// call can be retried whatever it was.
func (e *Error) retryable() bool {
	switch e.Code {
	case "not_leader", "no_leader", "leader_not_ready", "catching_up", "shutting_down", "rate_limited":
		return true
	}
	return false
}

// ambiguous reports whether the call may have been applied.
func (e *Error) ambiguous() bool {
	return e.Code == "outcome_unknown" || e.Code == "forward_failed"
}
