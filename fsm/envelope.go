package fsm

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// CommandType says what a command does. The zero value is reserved so that
// an uninitialised command is never mistaken for a real one.
type CommandType uint8

// CmdUnknown is the zero CommandType. The other types are declared in the
// file of their domain (kv.go, member.go, lease.go, election.go, acl.go,
// restore.go); their values are part of the log format: never renumber
// them.
const CmdUnknown CommandType = 0

// String is the type's name, "unknown(N)" for a type this build does not
// know.
func (t CommandType) String() string {
	if c, ok := codecs[t]; ok {
		return c.name
	}
	return fmt.Sprintf("unknown(%d)", uint8(t))
}

// envelopeMagic is the first byte of every encoded command. It lets a node
// tell a coordd command from garbage before it trusts the rest.
const envelopeMagic = 0xC0

// EnvelopeVersion is the envelope layout written by this build. Decoders
// accept every version up to it.
//
// Version 2 is version 1 followed by a CRC-32C (Castagnoli, little endian)
// of every byte before it, so that a byte flipped on disk or in transit
// inside an entry that still parses is detected before it is applied.
// Version 1 entries (written before the checksum existed) are still read.
const EnvelopeVersion = 2

// envelopeV1 is the envelope without a checksum.
const envelopeV1 = 1

// checksumSize is the length of the CRC-32C trailer of a version 2 envelope.
const checksumSize = 4

// castagnoli is the CRC-32C table (hardware accelerated on amd64 and arm64).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Command is the envelope of every entry in the replicated log.
//
// Stamp is the proposing leader's wall clock (Unix nanoseconds). It is the
// only notion of time Apply may use: Apply must never read a clock itself,
// or replicas that apply the same entry at different moments would diverge.
type Command struct {
	Type CommandType
	// Version is the payload layout version of this Type.
	Version uint8
	// IdempotencyKey, when set, identifies a client request across retries.
	IdempotencyKey string
	// Stamp is the leader's wall-clock time when it proposed the command.
	Stamp int64
	// Payload is the type-specific body, written by NewCommand.
	Payload []byte
}

// Encode returns the wire form of c (envelope version 2):
//
//	magic(1) envelopeVersion(uvarint) type(uvarint) payloadVersion(uvarint)
//	stamp(varint) idempotencyKey(len+bytes) payload(len+bytes)
//	crc32c(4, little endian, of every byte before it)
func (c Command) Encode() []byte {
	b := c.encode(EnvelopeVersion, checksumSize)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// encode writes the envelope of the given version without a checksum,
// leaving room for extra bytes.
func (c Command) encode(version uint64, extra int) []byte {
	e := enc{b: make([]byte, 0, 16+extra+len(c.IdempotencyKey)+len(c.Payload))}
	e.b = append(e.b, envelopeMagic)
	e.uvarint(version)
	e.uvarint(uint64(c.Type))
	e.uvarint(uint64(c.Version))
	e.varint(c.Stamp)
	e.str(c.IdempotencyKey)
	e.bytes(c.Payload)
	return e.b
}

// DecodeCommand parses the wire form written by Encode (or by a build that
// wrote envelope version 1). A version 2 entry whose checksum does not match
// its bytes is refused: the entry was corrupted after it was encoded. Every
// failure matches ErrBadCommand.
func DecodeCommand(b []byte) (Command, error) {
	if len(b) == 0 || b[0] != envelopeMagic {
		return Command{}, fmt.Errorf("fsm: decode command: no envelope magic byte: %w", ErrBadCommand)
	}
	d := dec{b: b[1:]}
	v := d.uvarint()
	if d.err == nil && (v == 0 || v > EnvelopeVersion) {
		return Command{}, fmt.Errorf("fsm: decode command: envelope version %d not supported (max %d): %w",
			v, EnvelopeVersion, ErrBadCommand)
	}
	if d.err == nil && v >= 2 {
		// Verify before trusting any field: a corrupted length could
		// otherwise hide the damage behind a plausible decode error.
		if err := verifyChecksum(b, len(d.b)); err != nil {
			return Command{}, fmt.Errorf("fsm: decode command: %w", err)
		}
		d.b = d.b[:len(d.b)-checksumSize]
	}
	var c Command
	t := d.uvarint()
	pv := d.uvarint()
	c.Stamp = d.varint()
	c.IdempotencyKey = d.str()
	c.Payload = d.bytes()
	if err := d.done(); err != nil {
		return Command{}, fmt.Errorf("fsm: decode command: %v: %w", err, ErrBadCommand)
	}
	if t > 255 || pv > 255 {
		return Command{}, fmt.Errorf("fsm: decode command: type %d version %d out of range: %w", t, pv, ErrBadCommand)
	}
	c.Type, c.Version = CommandType(t), uint8(pv)
	return c, nil
}

// verifyChecksum checks the CRC-32C trailer of a version 2 envelope b, of
// which rest bytes follow the version.
func verifyChecksum(b []byte, rest int) error {
	if rest < checksumSize {
		return fmt.Errorf("%d bytes, too short for a checksum: %w", len(b), ErrBadCommand)
	}
	body := b[:len(b)-checksumSize]
	stored := binary.LittleEndian.Uint32(b[len(body):])
	if sum := crc32.Checksum(body, castagnoli); sum != stored {
		return fmt.Errorf("checksum mismatch (stored %08x, computed %08x over %d bytes): the entry is corrupt: %w",
			stored, sum, len(body), ErrBadCommand)
	}
	return nil
}

// VerifyChecksum checks an encoded command's checksum without decoding
// it or allocating: cheap enough for every log read. Version 1 envelopes
// have no checksum and pass; anything that is not an envelope fails. It
// does not check the structure (DecodeCommand does).
func VerifyChecksum(b []byte) error {
	if len(b) == 0 || b[0] != envelopeMagic {
		return fmt.Errorf("fsm: no envelope magic byte: %w", ErrBadCommand)
	}
	v, n := binary.Uvarint(b[1:])
	switch {
	case n <= 0:
		return fmt.Errorf("fsm: bad envelope version: %w", ErrBadCommand)
	case v == envelopeV1:
		return nil
	case v > EnvelopeVersion || v == 0:
		return fmt.Errorf("fsm: envelope version %d not supported (max %d): %w", v, EnvelopeVersion, ErrBadCommand)
	}
	if err := verifyChecksum(b, len(b)-1-n); err != nil {
		return fmt.Errorf("fsm: %w", err)
	}
	return nil
}
