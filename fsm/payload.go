package fsm

import (
	"errors"
	"fmt"
)

// Payload is the body of one command type. Each payload type lives in the
// file of its domain (kv.go, member.go, lease.go, election.go, acl.go,
// restore.go) with everything about it: its type number, its encoding, its
// decoder, its one validate and its apply.
//
// Invariant (nothing invalid reaches the log): NewCommand validates a
// payload before it encodes it, the decoder validates what it decoded with
// the same validate, and the server decodes every command it proposes with
// the decoder Apply uses (Check) before it hands it to Raft. A committed
// entry can then fail to decode only through corruption, which the
// envelope's checksum catches.
type Payload interface {
	// Type is the command type this payload is the body of.
	Type() CommandType
	// encode appends the payload's fields and returns the payload layout
	// version it wrote.
	encode(e *enc) uint8
	// validate checks every rule the decoder and apply rely on, so that a
	// payload that passes it decodes to itself and applies without panic.
	validate() error
	// apply makes the payload's changes in a.s and reports them in a.res.
	apply(a *applier)
}

// codec is what the envelope needs of a command type: its name, the
// newest payload layout version it reads, and its decoder. A decoder
// reads the fields of the given layout version; the caller checks that
// nothing is left over and validates the payload.
type codec struct {
	name       string
	maxVersion uint8
	decode     func(version uint8, d *dec) Payload
}

// codecs holds every command type this build knows, registered by the
// init function of each domain's file.
var codecs = map[CommandType]codec{}

func register(t CommandType, name string, maxVersion uint8, decode func(version uint8, d *dec) Payload) {
	if _, dup := codecs[t]; dup || t == CmdUnknown {
		panic(fmt.Sprintf("fsm: command type %d registered twice", t))
	}
	codecs[t] = codec{name: name, maxVersion: maxVersion, decode: decode}
}

// Payload layout versions.
const (
	payloadV1 = 1
	payloadV2 = 2
)

// ErrInvalid is wrapped by every refusal of NewCommand: the payload breaks
// a rule of its type, and proposing it would stop every replica.
var ErrInvalid = errors.New("fsm: invalid command")

// NewCommand validates p and returns the command that carries it (no
// idempotency key, no stamp: the proposer sets those). An invalid payload
// is refused with an error that wraps ErrInvalid.
func NewCommand(p Payload) (Command, error) {
	if err := p.validate(); err != nil {
		return Command{}, fmt.Errorf("%w: %s: %w", ErrInvalid, p.Type(), err)
	}
	e := enc{}
	v := p.encode(&e)
	return Command{Type: p.Type(), Version: v, Payload: e.b}, nil
}

// DecodePayload decodes and validates c's payload exactly as Apply does.
// Every failure wraps ErrBadCommand.
func DecodePayload(c Command) (Payload, error) {
	cd, ok := codecs[c.Type]
	if !ok {
		return nil, fmt.Errorf("fsm: command type %s not known to this build: %w", c.Type, ErrBadCommand)
	}
	if c.Version == 0 || c.Version > cd.maxVersion {
		return nil, fmt.Errorf("fsm: %s payload version %d not supported (max %d): %w", c.Type, c.Version, cd.maxVersion, ErrBadCommand)
	}
	d := dec{b: c.Payload}
	p := cd.decode(c.Version, &d)
	if err := d.done(); err != nil {
		return nil, fmt.Errorf("fsm: decode %s: %v: %w", c.Type, err, ErrBadCommand)
	}
	if err := p.validate(); err != nil {
		return nil, fmt.Errorf("fsm: decode %s: %w: %w", c.Type, err, ErrBadCommand)
	}
	return p, nil
}

// Check reports whether c would apply: whether its payload decodes and
// validates with the code Apply runs. The server calls it on every command
// before it proposes it, so that a command that would stop every replica
// is refused instead.
func Check(c Command) error {
	_, err := DecodePayload(c)
	return err
}

// MaxLimit bounds the limits a payload carries (leases per owner,
// candidates per name): far above any real setting, far below overflow.
// The server refuses a configuration above it at startup.
const MaxLimit = 1 << 40

// checkLimit is the rule of a limit field: 0 (none) to MaxLimit.
func checkLimit(what string, v int) error {
	if v < 0 || v > MaxLimit {
		return fmt.Errorf("%s %d out of range 0..%d", what, v, MaxLimit)
	}
	return nil
}
