package fsm

import (
	"encoding/binary"
	"errors"
	"math"
	"testing"
)

// FuzzTxnDecode found {0x00, 0x00, 0x80, 0x00} decoding to the empty
// transaction, which encodes as {0x00, 0x00, 0x00}: a varint with a
// needless continuation byte gave a command a second encoding.
func TestDecoder_RefusesOverlongVarints(t *testing.T) {
	for _, v := range []uint64{0, 1, 127, 128, 1 << 20, math.MaxUint64} {
		d := dec{b: binary.AppendUvarint(nil, v)}
		if got := d.uvarint(); got != v || d.done() != nil {
			t.Fatalf("uvarint %d: got %d, %v", v, got, d.done())
		}
	}
	for _, v := range []int64{0, -1, 63, -64, 64, math.MinInt64, math.MaxInt64} {
		d := dec{b: binary.AppendVarint(nil, v)}
		if got := d.varint(); got != v || d.done() != nil {
			t.Fatalf("varint %d: got %d, %v", v, got, d.done())
		}
	}
	for _, b := range [][]byte{{0x80, 0x00}, {0xff, 0x00}, {0x81, 0x80, 0x00}} {
		d := dec{b: b}
		d.uvarint()
		if !errors.Is(d.err, errOverlong) {
			t.Fatalf("uvarint % x: %v, want errOverlong", b, d.err)
		}
		d = dec{b: b}
		d.varint()
		if !errors.Is(d.err, errOverlong) {
			t.Fatalf("varint % x: %v, want errOverlong", b, d.err)
		}
	}
}
