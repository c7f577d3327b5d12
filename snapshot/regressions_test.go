package snapshot_test

// Regressions for findings of earlier rounds of tests and fuzzing.

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	"github.com/coordd/coordd/snapshot"
)

func TestReader_RefusesBytesAfterTheTrailer(t *testing.T) {
	full := encodeCounted(t, snapshot.Header{Index: 1, Term: 2}, []rec{{1, []byte("x")}})
	if _, _, err := readAll(bytes.NewReader(append(full, "garbage"...))); !errors.Is(err, snapshot.ErrTrailingData) {
		t.Fatalf("a snapshot followed by garbage: %v, want ErrTrailingData", err)
	}
	v1 := specStream{version: 1, index: 1, term: 2, recs: []rec{{1, []byte("x")}}}.bytes()
	if _, _, err := readAll(bytes.NewReader(append(v1, 0))); !errors.Is(err, snapshot.ErrTrailingData) {
		t.Fatalf("a version 1 snapshot followed by a zero byte: %v, want ErrTrailingData", err)
	}
}

func TestReader_OverflowingLengthIsRecordTooLarge(t *testing.T) {
	full := encodeCounted(t, snapshot.Header{Index: 1, Term: 2}, []rec{{1, bytes.Repeat([]byte{0xFF}, 16)}})
	full[v2HeaderLen(1)+1] ^= 0x80 // length byte 0x10 -> 0x90: the varint runs on into 0xFF data bytes
	_, _, err := readAll(bytes.NewReader(full))
	if !errors.Is(err, snapshot.ErrRecordTooLarge) {
		t.Fatalf("%v, want ErrRecordTooLarge", err)
	}
}

func TestReader_ReadErrorInTheChecksumIsPassedOn(t *testing.T) {
	full := encodeCounted(t, snapshot.Header{Index: 1, Term: 2}, nil)
	boom := errors.New("i/o error")
	_, _, err := readAll(io.MultiReader(bytes.NewReader(full[:len(full)-2]), iotest.ErrReader(boom)))
	if !errors.Is(err, boom) {
		t.Fatalf("%v, want it to wrap %v", err, boom)
	}
}

// Found in review of version 2: the Writer kept the caller's Counts map and
// checked records against whatever it held later, not against the header
// it had written.
func TestWriter_CountsAreTakenWhenTheHeaderIsWritten(t *testing.T) {
	counts := map[byte]uint64{1: 1}
	var buf bytes.Buffer
	w, err := snapshot.NewWriter(&buf, snapshot.Header{Counts: counts})
	if err != nil {
		t.Fatal(err)
	}
	counts[1] = 2 // after the header has been written
	counts[2] = 1
	if err := w.Record(1, []byte("a")); err != nil {
		t.Fatal(err)
	}
	if err := w.Record(1, []byte("b")); !errors.Is(err, snapshot.ErrCountMismatch) {
		t.Fatalf("second record of type 1, header declares 1: %v, want ErrCountMismatch", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, recs, err := readAll(&buf); err != nil || !equalRecs(recs, []rec{{1, []byte("a")}}) {
		t.Fatalf("readAll = %v %v", recs, err)
	}
}

// Found in review of version 2: Header returned the map the Reader checked
// records against, so a caller writing to it changed what was verified.
func TestReader_HeaderCountsAreTheCallersCopy(t *testing.T) {
	b := encodeCounted(t, snapshot.Header{}, []rec{{1, []byte("a")}})
	sr, err := snapshot.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	h := sr.Header()
	h.Counts[1] = 0
	h.Counts[5] = 1
	if got := sr.Header().Counts; len(got) != 1 || got[1] != 1 {
		t.Fatalf("Header().Counts = %v after the caller changed its copy, want map[1:1]", got)
	}
	for {
		_, _, err := sr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("the file as written is refused: %v", err)
		}
	}
}

// Found by FuzzReader's seeds: a version 2 header with its types out of
// order was accepted, so two different files read as the same header and a
// corrupted type byte in the count section went unnoticed until the trailer.
func TestReader_CountSectionMustBeInAscendingTypeOrder(t *testing.T) {
	recs := []rec{{1, []byte("a")}, {2, []byte("b")}}
	b := specStream{version: 2, recs: recs, counts: []countEntry{{2, 1}, {1, 1}}, forgeCounts: true}.bytes()
	if _, err := snapshot.NewReader(bytes.NewReader(b)); !errors.Is(err, snapshot.ErrCountMismatch) {
		t.Fatalf("NewReader = %v, want ErrCountMismatch", err)
	}
}
