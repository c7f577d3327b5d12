package fsm

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// errShort is returned by the decoder when the input ends early.
var errShort = errors.New("fsm: input too short")

// enc appends compact, self-delimiting fields to a byte slice.
type enc struct{ b []byte }

func (e *enc) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) varint(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *enc) bytes(p []byte)   { e.uvarint(uint64(len(p))); e.b = append(e.b, p...) }
func (e *enc) str(s string)     { e.uvarint(uint64(len(s))); e.b = append(e.b, s...) }
func (e *enc) bool(v bool) {
	if v {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
}

// dec reads what enc wrote. The first error sticks; callers check err once
// at the end.
type dec struct {
	b   []byte
	err error
}

func (d *dec) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

func (d *dec) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(errShort)
		return 0
	}
	if n != uvarintLen(v) {
		d.fail(errOverlong)
		return 0
	}
	d.b = d.b[n:]
	return v
}

// errOverlong is returned for a varint written with more bytes than it
// needs (0x80 0x00 for 0): the encoder never writes one, and accepting it
// would give a command two encodings (and two request digests).
var errOverlong = errors.New("fsm: overlong varint")

// uvarintLen is the length of v's shortest (the encoder's) encoding.
func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

func (d *dec) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(errShort)
		return 0
	}
	if ux := uint64(v) << 1; n != uvarintLen(ux^uint64(v>>63)) {
		d.fail(errOverlong)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail(errShort)
		return nil
	}
	p := make([]byte, n)
	copy(p, d.b[:n])
	d.b = d.b[n:]
	return p
}

func (d *dec) str() string { return string(d.bytes()) }

func (d *dec) bool() bool {
	if d.err != nil {
		return false
	}
	if len(d.b) == 0 {
		d.fail(errShort)
		return false
	}
	v := d.b[0]
	d.b = d.b[1:]
	if v > 1 {
		d.fail(fmt.Errorf("fsm: bad bool byte %d", v))
	}
	return v == 1
}

// done reports the sticky error, or an error if bytes are left over.
func (d *dec) done() error {
	if d.err != nil {
		return d.err
	}
	if len(d.b) != 0 {
		return fmt.Errorf("fsm: %d trailing bytes", len(d.b))
	}
	return nil
}

// more reports whether bytes are left (for optional trailing fields).
func (d *dec) more() bool { return d.err == nil && len(d.b) > 0 }

// optional reads an optional trailing uvarint field: 0 when absent. A
// field that is present must not be 0 (the encoder leaves a zero out), so
// that every value has exactly one encoding.
func (d *dec) optional(what string) uint64 {
	if !d.more() {
		return 0
	}
	v := d.uvarint()
	if d.err == nil && v == 0 {
		d.fail(fmt.Errorf("explicit zero %s", what))
	}
	return v
}

// u8 reads a uvarint that must fit a byte (enums); validate checks its
// range.
func (d *dec) u8() uint8 {
	v := d.uvarint()
	if d.err == nil && v > 255 {
		d.fail(fmt.Errorf("value %d does not fit a byte", v))
		return 0
	}
	return uint8(v)
}

// count reads a non-negative count or limit stored as a uvarint, refusing
// what does not fit an int (or exceeds max) before it is converted.
func (d *dec) count(max uint64) int {
	v := d.uvarint()
	if d.err == nil && v > max {
		d.fail(fmt.Errorf("count %d above %d", v, max))
		return 0
	}
	return int(v)
}

// batchLen reads the length of a batch of items of at least itemMin bytes
// each, refusing one that cannot fit the rest of the input before anything
// is allocated for it.
func batchLen(d *dec, itemMin int) int {
	n := d.uvarint()
	if d.err == nil && (n > maxBatch || n*uint64(itemMin) > uint64(len(d.b))) {
		d.fail(fmt.Errorf("batch of %d does not fit", n))
		return 0
	}
	return int(n)
}

// maxBatch bounds the length prefix of batches before allocating.
const maxBatch = 1 << 20
