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
)

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
