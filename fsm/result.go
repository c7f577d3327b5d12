package fsm

import (
	"errors"
	"fmt"
)

// resultVersion is the first byte of EncodeResult's output.
const resultVersion = 1

// ErrBadResult is wrapped by every refusal of DecodeResult.
var ErrBadResult = errors.New("fsm: malformed result")

// EncodeResult encodes the parts of r that a client's answer is rendered
// from, so that a node can apply a command for another (the leader, for a
// follower that forwarded the command) and send the outcome back: Index,
// Type, Entry, Prev, Deleted, Lease, Campaign, Election, Txn, Duplicate
// and Err. Err keeps its message and, for the domain errors of this
// package, what errors.Is and errors.As find (a CASConflictError or a
// StaleTokenError with its fields, a sentinel otherwise). Expired,
// Checkpointed, Renewed, Promoted, Token and Reset are not encoded: they concern
// the leader's own duties, not a client's answer.
//
// The layout is a version byte, then the idempotency record's result
// (encodeResult), the type, the duplicate flag, and the optional election
// and transaction result. It is a wire format between nodes of one
// cluster, never stored: a node that reads another version refuses it.
func EncodeResult(r *Result) []byte {
	e := enc{b: make([]byte, 0, 64)}
	e.b = append(e.b, resultVersion)
	encodeResult(&e, r)
	e.uvarint(uint64(r.Type))
	e.bool(r.Duplicate)
	e.bool(r.Election != nil)
	if r.Election != nil {
		encodeElection(&e, r.Election)
	}
	e.bool(r.Txn != nil)
	if r.Txn != nil {
		encodeTxnResult(&e, r.Txn)
	}
	return e.b
}

// DecodeResult decodes EncodeResult's output, refusing another version,
// truncated or trailing bytes, and any field out of its range. Every
// failure wraps ErrBadResult.
func DecodeResult(b []byte) (*Result, error) {
	if len(b) == 0 || b[0] != resultVersion {
		return nil, fmt.Errorf("fsm: decode result: unknown version: %w", ErrBadResult)
	}
	d := dec{b: b[1:]}
	r := decodeResult(&d)
	r.Type = CommandType(d.u8())
	r.Duplicate = d.bool()
	if d.bool() {
		r.Election = decodeElection(&d)
		if d.err == nil && !r.Election.Kind.valid() {
			d.fail(fmt.Errorf("election kind %d", r.Election.Kind))
		}
	}
	if d.bool() {
		r.Txn = decodeTxnResult(&d)
	}
	if err := d.done(); err != nil {
		return nil, fmt.Errorf("fsm: decode result: %v: %w", err, ErrBadResult)
	}
	return r, nil
}
