package fsm

import (
	"errors"
	"fmt"
)

// Sentinel errors. Domain failures are returned in Result.Err (they are
// normal outcomes of a committed command and identical on every replica);
// ErrBadCommand is a bug that would make replicas diverge, so Apply panics on
// it instead of returning it.
var (
	// ErrKeyNotFound means the key does not exist.
	ErrKeyNotFound = errors.New("fsm: key not found")
	// ErrCASConflict means a conditional write's expectation did not hold.
	ErrCASConflict = errors.New("fsm: compare-and-swap conflict")
	// ErrBadCommand means an entry could not be decoded.
	ErrBadCommand = errors.New("fsm: malformed command")
	// ErrMemberNotFound means no member has that id.
	ErrMemberNotFound = errors.New("fsm: member not found")
	// ErrLeaseNotFound means the lease does not exist (never granted,
	// expired or revoked).
	ErrLeaseNotFound = errors.New("fsm: lease not found")
	// ErrBadTTL means a TTL out of range.
	ErrBadTTL = errors.New("fsm: bad ttl")
	// ErrElectionNotFound means nobody holds or waits for the name.
	ErrElectionNotFound = errors.New("fsm: election not found")
	// ErrNotHolder means the lease does not hold (or wait for) the name.
	ErrNotHolder = errors.New("fsm: not the holder")
	// ErrStaleToken means the token is not the holder's current token.
	ErrStaleToken = errors.New("fsm: stale token")
	// ErrKindMismatch means a lock was used as an election or the reverse.
	ErrKindMismatch = errors.New("fsm: election/lock kind mismatch")
	// ErrLimitMismatch means a campaign named a different holder limit than
	// the name has.
	ErrLimitMismatch = errors.New("fsm: holder limit mismatch")
	// ErrIdempotencyKeyReused means a key was sent again with a different
	// kind of request.
	ErrIdempotencyKeyReused = errors.New("fsm: idempotency key reused for a different request")
	// ErrTooManyLeases means the token (the lease's owner) holds as many
	// leases as the leader's limit allows.
	ErrTooManyLeases = errors.New("fsm: too many leases for this token")
	// ErrTooManyCandidates means the election or lock has as many holders
	// and waiting candidates as the leader's limit allows.
	ErrTooManyCandidates = errors.New("fsm: too many candidates")
)

// domainErrors are the sentinels a recorded result can carry, in a fixed
// order that is part of the snapshot format (index+1 is the code).
var domainErrors = []error{
	ErrKeyNotFound, ErrCASConflict, ErrMemberNotFound, ErrLeaseNotFound, ErrBadTTL,
	ErrElectionNotFound, ErrNotHolder, ErrStaleToken, ErrKindMismatch, ErrLimitMismatch,
	ErrIdempotencyKeyReused, ErrTooManyLeases, ErrTooManyCandidates,
}

// StaleTokenError reports the holder's current token. It matches
// ErrStaleToken.
type StaleTokenError struct {
	Name           string
	Token, Current uint64
}

func (e *StaleTokenError) Error() string {
	return fmt.Sprintf("fsm: stale token %d for %q: the current token is %d", e.Token, e.Name, e.Current)
}

// Is makes errors.Is(err, ErrStaleToken) true.
func (e *StaleTokenError) Is(target error) bool { return target == ErrStaleToken }

// recordedError is a domain error read back from the dedup table: it keeps
// the message and matches its sentinel.
type recordedError struct {
	sentinel error
	msg      string
}

func (e *recordedError) Error() string { return e.msg }
func (e *recordedError) Unwrap() error { return e.sentinel }

// CASConflictError reports the key's current state when a conditional write
// fails. It matches ErrCASConflict with errors.Is.
type CASConflictError struct {
	Key string
	// CurrentIndex is the key's ModifyIndex now, 0 if the key does not exist.
	CurrentIndex uint64
}

func (e *CASConflictError) Error() string {
	if e.CurrentIndex == 0 {
		return fmt.Sprintf("fsm: compare-and-swap conflict on %q: key does not exist", e.Key)
	}
	return fmt.Sprintf("fsm: compare-and-swap conflict on %q: current modify index is %d", e.Key, e.CurrentIndex)
}

// Is makes errors.Is(err, ErrCASConflict) true.
func (e *CASConflictError) Is(target error) bool { return target == ErrCASConflict }
