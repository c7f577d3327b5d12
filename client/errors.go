package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/coordd/coordd/api"
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
	// ErrAlreadyLocked: Lock or TryLock on a Mutex that holds the lock, or
	// while another acquisition of the same Mutex runs.
	ErrAlreadyLocked = errors.New("coordd: mutex already locked (or being locked) by this Mutex")
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
	api.CodeNotLeader:         ErrNotLeader,
	api.CodeNoLeader:          ErrNoLeader,
	api.CodeLeaderNotReady:    ErrNoLeader,
	api.CodeCatchingUp:        ErrNoLeader,
	api.CodeShuttingDown:      ErrUnavailable,
	api.CodeStateCorrupt:      ErrUnavailable,
	api.CodeShadowMember:      ErrUnavailable,
	api.CodeForwardFailed:     ErrUnavailable,
	api.CodeOutcomeUnknown:    ErrOutcomeUnknown,
	api.CodeKeyNotFound:       ErrKeyNotFound,
	api.CodeCASConflict:       ErrCASConflict,
	api.CodeLeaseNotFound:     ErrLeaseNotFound,
	api.CodeLeaseLost:         ErrLeaseLost,
	api.CodeNotHolder:         ErrNotHolder,
	api.CodeElectionNotFound:  ErrNotHolder,
	api.CodeStaleToken:        ErrStaleToken,
	api.CodeBadRequest:        ErrBadRequest,
	api.CodeBadTTL:            ErrBadRequest,
	api.CodeTooLarge:          ErrBadRequest,
	api.CodeKindMismatch:      ErrConflict,
	api.CodeLimitMismatch:     ErrConflict,
	api.CodeIdempotencyReused: ErrConflict,
	api.CodeRestoreInProgress: ErrConflict,
	api.CodeInvalidSnapshot:   ErrBadRequest,
	api.CodeMethod:            ErrBadRequest,
	api.CodeNotFound:          ErrBadRequest,
	api.CodeUnknownMember:     ErrUnknownMember,
	api.CodeUnauthenticated:   ErrUnauthenticated,
	api.CodeInvalidToken:      ErrUnauthenticated,
	api.CodePermissionDenied:  ErrPermissionDenied,
	api.CodeTooManyLeases:     ErrLimitExceeded,
	api.CodeTooManyCandidates: ErrLimitExceeded,
	api.CodeRateLimited:       ErrLimitExceeded,
	api.CodeTooManyWatchers:   ErrLimitExceeded,
	api.CodeTokenNotFound:     ErrBadRequest,
	api.CodeTokenExists:       ErrConflict,
	api.CodeACLBootstrapped:   ErrConflict,
}

// Error is an error answer of a coordd node: its api.ErrorDetail, with
// the HTTP status and the node that answered.
type Error struct {
	Status  int
	Code    string
	Message string
	// CurrentIndex is the key's modify index on a CAS conflict (0: the
	// key does not exist); CurrentToken the holder's token on a stale
	// token.
	CurrentIndex uint64
	CurrentToken uint64
	// Leader is the leader's id, when the node knew it.
	Leader string
	// Node is the node that answered.
	Node string
	// Index is the X-Coordd-Index of the answer (for a blocking read of a
	// missing key, the index to block on next).
	Index uint64
}

// errorOf makes the *Error of a non-2xx answer whose body is b: its JSON
// api.ErrorBody, or for anything else (a proxy's page) the code
// "http_<status>" and the body as the message.
func errorOf(resp *http.Response, b []byte) *Error {
	var eb api.ErrorBody
	e := &Error{Status: resp.StatusCode, Node: resp.Header.Get(api.HeaderServedBy)}
	e.Index, _ = strconv.ParseUint(resp.Header.Get(api.HeaderIndex), 10, 64)
	if json.Unmarshal(b, &eb) != nil || eb.Error.Code == "" {
		e.Code, e.Message = "http_"+strconv.Itoa(resp.StatusCode), strings.TrimSpace(string(b))
		return e
	}
	d := eb.Error
	e.Code, e.Message, e.Leader = d.Code, d.Message, d.Leader
	if d.CurrentIndex != nil {
		e.CurrentIndex = *d.CurrentIndex
	}
	if d.CurrentToken != nil {
		e.CurrentToken = *d.CurrentToken
	}
	return e
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
	case api.CodeNotLeader, api.CodeNoLeader, api.CodeLeaderNotReady, api.CodeCatchingUp, api.CodeShuttingDown, api.CodeRateLimited:
		return true
	case api.CodeStateCorrupt, api.CodeShadowMember:
		// This node serves nothing (its state is alarmed, or it is a
		// shadow): another endpoint will.
		return true
	}
	return false
}

// ambiguous reports whether the call may have been applied.
func (e *Error) ambiguous() bool {
	return e.Code == api.CodeOutcomeUnknown || e.Code == api.CodeForwardFailed
}
