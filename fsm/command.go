package fsm

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// CommandType says what a command does. The zero value is reserved so that
// an uninitialised command is never mistaken for a real one.
type CommandType uint8

// Command types. Values are part of the log format: never renumber them.
const (
	CmdUnknown      CommandType = 0
	CmdKVPut        CommandType = 1
	CmdKVDelete     CommandType = 2
	CmdMemberSet    CommandType = 3
	CmdMemberRemove CommandType = 4
)

func (t CommandType) String() string {
	switch t {
	case CmdKVPut:
		return "kv-put"
	case CmdKVDelete:
		return "kv-delete"
	case CmdMemberSet:
		return "member-set"
	case CmdMemberRemove:
		return "member-remove"
	default:
		if n, ok := commandNames[t]; ok {
			return n
		}
		return fmt.Sprintf("unknown(%d)", uint8(t))
	}
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
	// Payload is the type-specific body, encoded by the Encode* helpers.
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

// PutMode selects the condition of a KV put.
type PutMode uint8

// Put modes. Values are part of the log format.
const (
	// PutAlways writes the key whatever its state.
	PutAlways PutMode = 0
	// PutCreate writes only if the key does not exist.
	PutCreate PutMode = 1
	// PutCAS writes only if the key's ModifyIndex equals CASIndex.
	PutCAS PutMode = 2
)

// KVPut is the payload of CmdKVPut.
type KVPut struct {
	Key      string
	Value    []byte
	Mode     PutMode
	CASIndex uint64
	// Lease, when non-zero, attaches the key to a lease: the key is deleted
	// when the lease expires or is revoked.
	Lease uint64
}

// KVDelete is the payload of CmdKVDelete. With Prefix set, every key that
// starts with Key is deleted (CAS does not apply then).
type KVDelete struct {
	Key      string
	Prefix   bool
	CAS      bool
	CASIndex uint64
}

// Member is what the cluster knows about one node besides Raft's own
// configuration: the address its HTTP API is reachable at, so that followers
// can forward requests to the leader.
type Member struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr"`
}

// MemberRemove is the payload of CmdMemberRemove.
type MemberRemove struct {
	ID string
}

const payloadV1 = 1

// NewKVPut builds a CmdKVPut command.
func NewKVPut(p KVPut) Command {
	e := enc{}
	e.str(p.Key)
	e.bytes(p.Value)
	e.uvarint(uint64(p.Mode))
	e.uvarint(p.CASIndex)
	if p.Lease != 0 {
		// Optional trailing field: puts without a lease keep the original
		// layout.
		e.uvarint(p.Lease)
	}
	return Command{Type: CmdKVPut, Version: payloadV1, Payload: e.b}
}

// NewKVDelete builds a CmdKVDelete command.
func NewKVDelete(p KVDelete) Command {
	e := enc{}
	e.str(p.Key)
	e.bool(p.Prefix)
	e.bool(p.CAS)
	e.uvarint(p.CASIndex)
	return Command{Type: CmdKVDelete, Version: payloadV1, Payload: e.b}
}

// NewMemberSet builds a CmdMemberSet command.
func NewMemberSet(m Member) Command {
	e := enc{}
	e.str(m.ID)
	e.str(m.RaftAddr)
	e.str(m.HTTPAddr)
	return Command{Type: CmdMemberSet, Version: payloadV1, Payload: e.b}
}

// NewMemberRemove builds a CmdMemberRemove command.
func NewMemberRemove(id string) Command {
	e := enc{}
	e.str(id)
	return Command{Type: CmdMemberRemove, Version: payloadV1, Payload: e.b}
}

func checkVersion(c Command) error {
	if c.Version != payloadV1 {
		return fmt.Errorf("fsm: %s payload version %d not supported: %w", c.Type, c.Version, ErrBadCommand)
	}
	return nil
}

func decodeKVPut(c Command) (KVPut, error) {
	if err := checkVersion(c); err != nil {
		return KVPut{}, err
	}
	d := dec{b: c.Payload}
	p := KVPut{Key: d.str(), Value: d.bytes()}
	mode := d.uvarint()
	p.CASIndex = d.uvarint()
	if d.err == nil && len(d.b) > 0 {
		if p.Lease = d.uvarint(); d.err == nil && p.Lease == 0 {
			d.fail(fmt.Errorf("explicit zero lease"))
		}
	}
	if err := d.done(); err != nil {
		return KVPut{}, fmt.Errorf("fsm: decode kv-put: %v: %w", err, ErrBadCommand)
	}
	if mode > uint64(PutCAS) {
		return KVPut{}, fmt.Errorf("fsm: decode kv-put: mode %d: %w", mode, ErrBadCommand)
	}
	p.Mode = PutMode(mode)
	return p, nil
}

func decodeKVDelete(c Command) (KVDelete, error) {
	if err := checkVersion(c); err != nil {
		return KVDelete{}, err
	}
	d := dec{b: c.Payload}
	p := KVDelete{Key: d.str(), Prefix: d.bool(), CAS: d.bool(), CASIndex: d.uvarint()}
	if err := d.done(); err != nil {
		return KVDelete{}, fmt.Errorf("fsm: decode kv-delete: %v: %w", err, ErrBadCommand)
	}
	return p, nil
}

func decodeMemberSet(c Command) (Member, error) {
	if err := checkVersion(c); err != nil {
		return Member{}, err
	}
	d := dec{b: c.Payload}
	m := Member{ID: d.str(), RaftAddr: d.str(), HTTPAddr: d.str()}
	if err := d.done(); err != nil {
		return Member{}, fmt.Errorf("fsm: decode member-set: %v: %w", err, ErrBadCommand)
	}
	return m, nil
}

func decodeMemberRemove(c Command) (MemberRemove, error) {
	if err := checkVersion(c); err != nil {
		return MemberRemove{}, err
	}
	d := dec{b: c.Payload}
	m := MemberRemove{ID: d.str()}
	if err := d.done(); err != nil {
		return MemberRemove{}, fmt.Errorf("fsm: decode member-remove: %v: %w", err, ErrBadCommand)
	}
	return m, nil
}
