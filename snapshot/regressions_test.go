package snapshot_test

// Regressions for findings of the first round of tests and fuzzing.

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"github.com/coordd/coordd/snapshot"
)

func TestReader_RefusesBytesAfterTheTrailer(t *testing.T) {
	full := encode(t, snapshot.Header{Index: 1, Term: 2}, []rec{{1, []byte("x")}})
	if _, _, err := readAll(bytes.NewReader(append(full, "garbage"...))); !errors.Is(err, snapshot.ErrTrailingData) {
		t.Fatalf("a snapshot followed by garbage: %v, want ErrTrailingData", err)
	}
}

func TestReader_OverflowingLengthIsRecordTooLarge(t *testing.T) {
	full := encode(t, snapshot.Header{Index: 1, Term: 2}, []rec{{1, bytes.Repeat([]byte{0xFF}, 16)}})
	full[27] ^= 0x80 // length byte 0x10 -> 0x90: the varint runs on into 0xFF data bytes
	_, _, err := readAll(bytes.NewReader(full))
	if !errors.Is(err, snapshot.ErrRecordTooLarge) {
		t.Fatalf("%v, want ErrRecordTooLarge", err)
	}
}

func TestReader_ReadErrorInTheChecksumIsPassedOn(t *testing.T) {
	full := encode(t, snapshot.Header{Index: 1, Term: 2}, nil)
	boom := errors.New("i/o error")
	_, _, err := readAll(io.MultiReader(bytes.NewReader(full[:len(full)-2]), iotest.ErrReader(boom)))
	if !errors.Is(err, boom) {
		t.Fatalf("%v, want it to wrap %v", err, boom)
	}
}
