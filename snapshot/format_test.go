package snapshot_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"testing"
	"testing/iotest"

	"github.com/coordd/coordd/snapshot"
)

func TestWriterOutputFollowsTheDocumentedLayout(t *testing.T) {
	t.Parallel()
	h := snapshot.Header{Index: 0x0102030405060708, Term: 0x1112131415161718}
	recs := []rec{{1, []byte("a")}, {2, nil}, {255, bytes.Repeat([]byte{0xAB}, 300)}, {1, []byte("b")}}
	got := encodeCounted(t, h, recs)
	want := specStream{version: 2, index: h.Index, term: h.Term, recs: recs}.bytes()
	if !bytes.Equal(got, want) {
		t.Fatalf("Writer output differs from the documented layout\n got %x\nwant %x", got, want)
	}
	// Check every byte of the header and a few fixed positions after it, so
	// that the layout itself, not only the agreement of two encoders, is
	// pinned.
	wantHeader := []byte("COORDSNP" +
		"\x00\x02" + // version
		"\x01\x02\x03\x04\x05\x06\x07\x08" + // index
		"\x11\x12\x13\x14\x15\x16\x17\x18" + // term
		"\x03" + // three types declared, ascending:
		"\x01\x00\x00\x00\x00\x00\x00\x00\x02" + // type 1: 2 records
		"\x02\x00\x00\x00\x00\x00\x00\x00\x01" + // type 2: 1 record
		"\xff\x00\x00\x00\x00\x00\x00\x00\x01") // type 255: 1 record
	if len(wantHeader) != v2HeaderLen(3) {
		t.Fatalf("test bug: header of %d bytes, want %d", len(wantHeader), v2HeaderLen(3))
	}
	if !bytes.Equal(got[:len(wantHeader)], wantHeader) {
		t.Errorf("header = % x\n   want % x", got[:len(wantHeader)], wantHeader)
	}
	if r := got[len(wantHeader):]; r[0] != 1 || r[1] != 1 || r[2] != 'a' || r[3] != 2 || r[4] != 0 {
		t.Errorf("first records = % x, want 01 01 61 02 00", r[:5])
	}
	tr := got[len(got)-trailerLen:]
	if tr[0] != 0 || binary.BigEndian.Uint64(tr[1:]) != 4 {
		t.Errorf("trailer = % x, want tag 0 and count 4", tr)
	}
}

func TestVersion1LayoutStaysReadable(t *testing.T) {
	t.Parallel()
	// The Writer no longer writes version 1: pin the layout through the
	// spec encoder, byte for byte, and read it back.
	recs := []rec{{1, []byte("a")}, {2, nil}, {255, bytes.Repeat([]byte{0xAB}, 300)}}
	b := specStream{version: 1, index: 0x0102030405060708, term: 0x1112131415161718, recs: recs}.bytes()
	wantHeader := []byte("COORDSNP\x00\x01\x01\x02\x03\x04\x05\x06\x07\x08\x11\x12\x13\x14\x15\x16\x17\x18")
	if !bytes.Equal(b[:v1HeaderLen], wantHeader) {
		t.Fatalf("test bug: spec encoder's version 1 header = % x", b[:v1HeaderLen])
	}
	if b[26] != 1 || b[27] != 1 || b[28] != 'a' || b[29] != 2 || b[30] != 0 || b[31] != 255 || b[32] != 0xAC || b[33] != 0x02 {
		t.Fatalf("test bug: spec encoder's version 1 records = % x", b[26:34])
	}
	h, got, err := readAll(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("readAll: %v", err)
	}
	want := snapshot.Header{Version: 1, Index: 0x0102030405060708, Term: 0x1112131415161718}
	if !sameHeader(h, want) {
		t.Errorf("header = %+v, want %+v (no counts)", h, want)
	}
	if h.Total() != 0 {
		t.Errorf("Total() of a version 1 header = %d, want 0", h.Total())
	}
	if !equalRecs(got, recs) {
		t.Errorf("records = %v, want %v", got, recs)
	}
}

func TestEmptySnapshotIsHeaderPlusTrailer(t *testing.T) {
	t.Parallel()
	for _, counts := range []map[byte]uint64{nil, {}} {
		got := encode(t, snapshot.Header{Index: 7, Term: 3, Counts: counts}, nil)
		if len(got) != v2HeaderLen(0)+trailerLen {
			t.Fatalf("Counts %#v: len = %d, want %d", counts, len(got), v2HeaderLen(0)+trailerLen)
		}
		if got[v1HeaderLen] != 0 {
			t.Fatalf("Counts %#v: %d types declared, want 0", counts, got[v1HeaderLen])
		}
		h, recs, err := readAll(bytes.NewReader(got))
		want := snapshot.Header{Version: 2, Index: 7, Term: 3, Counts: map[byte]uint64{}}
		if err != nil || len(recs) != 0 || !sameHeader(h, want) {
			t.Fatalf("Counts %#v: readAll = %+v, %d records, %v", counts, h, len(recs), err)
		}
	}
}

func TestWriterOutputDoesNotDependOnTheOrderOfTheCountsMap(t *testing.T) {
	t.Parallel()
	var recs []rec
	for typ := 1; typ <= 255; typ += 7 {
		for range typ % 4 {
			recs = append(recs, rec{byte(typ), []byte{byte(typ)}})
		}
	}
	h := snapshot.Header{Index: 3, Term: 1}
	want := specStream{version: 2, index: 3, term: 1, recs: recs}.bytes()
	for i := range 50 {
		// Build the map in a different insertion order every time; Go
		// also randomises the iteration order of each map.
		counts := make(map[byte]uint64)
		keys := []byte{}
		for typ := range countsOf(recs) {
			keys = append(keys, typ)
		}
		rand.New(rand.NewPCG(uint64(i), 9)).Shuffle(len(keys), func(a, b int) { keys[a], keys[b] = keys[b], keys[a] })
		for _, typ := range keys {
			counts[typ] = countsOf(recs)[typ]
		}
		h.Counts = counts
		if got := encode(t, h, recs); !bytes.Equal(got, want) {
			t.Fatalf("round %d: output differs\n got %x\nwant %x", i, got, want)
		}
	}
}

func TestHeaderTotal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		counts map[byte]uint64
		want   uint64
	}{
		{nil, 0},
		{map[byte]uint64{}, 0},
		{map[byte]uint64{1: 0}, 0},
		{map[byte]uint64{1: 2, 5: 3, 255: 1}, 6},
		{map[byte]uint64{1: math.MaxUint64}, math.MaxUint64},
		// A sum beyond uint64 saturates instead of wrapping to a small
		// number.
		{map[byte]uint64{1: math.MaxUint64, 2: 1}, math.MaxUint64},
		{map[byte]uint64{1: math.MaxUint64, 2: math.MaxUint64, 3: 5}, math.MaxUint64},
	}
	for _, tt := range tests {
		if got := (snapshot.Header{Counts: tt.counts}).Total(); got != tt.want {
			t.Errorf("Total() of %v = %d, want %d", tt.counts, got, tt.want)
		}
	}
	recs := []rec{{1, nil}, {1, nil}, {9, nil}}
	h, _, err := readAll(bytes.NewReader(encodeCounted(t, snapshot.Header{}, recs)))
	if err != nil || h.Total() != 3 {
		t.Fatalf("Total() read back = %d, %v; want 3", h.Total(), err)
	}
}

func TestRoundTripPreservesHeaderAndRecords(t *testing.T) {
	t.Parallel()
	sized := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*7 + 3)
		}
		return b
	}
	allTypes := make([]rec, 0, 255)
	for typ := 1; typ <= 255; typ++ {
		allTypes = append(allTypes, rec{byte(typ), []byte{byte(typ)}})
	}
	many := make([]rec, 10000)
	for i := range many {
		many[i] = rec{byte(1 + i%3), sized(i % 40)}
	}
	tests := []struct {
		name   string
		header snapshot.Header
		recs   []rec
	}{
		{"no records", snapshot.Header{Index: 1, Term: 1}, nil},
		{"zero index and term", snapshot.Header{}, []rec{{1, []byte("x")}}},
		{"maximal index and term", snapshot.Header{Index: math.MaxUint64, Term: math.MaxUint64}, []rec{{1, []byte("x")}}},
		{"one empty record", snapshot.Header{Index: 5, Term: 2}, []rec{{9, nil}}},
		{"several empty records", snapshot.Header{Index: 5, Term: 2}, []rec{{1, nil}, {2, []byte{}}, {3, nil}}},
		{"types interleaved", snapshot.Header{Index: 5, Term: 2}, []rec{{3, nil}, {1, []byte("a")}, {3, []byte("b")}, {2, nil}, {1, nil}}},
		{"lengths around the one-byte varint limit", snapshot.Header{Index: 9}, []rec{{1, sized(127)}, {1, sized(128)}, {1, sized(129)}}},
		{"lengths around the two-byte varint limit", snapshot.Header{Index: 9}, []rec{{1, sized(16383)}, {1, sized(16384)}}},
		{"lengths around the 64 KiB buffer size", snapshot.Header{Index: 9}, []rec{{1, sized(64<<10 - 1)}, {2, sized(64 << 10)}, {3, sized(64<<10 + 1)}}},
		{"a one megabyte record", snapshot.Header{Index: 10, Term: 4}, []rec{{7, sized(1 << 20)}}},
		{"every record type (the largest header)", snapshot.Header{Index: 11, Term: 4}, allTypes},
		{"ten thousand small records", snapshot.Header{Index: 12, Term: 5}, many},
		{"data full of zero bytes that look like trailer tags", snapshot.Header{Index: 13}, []rec{{1, make([]byte, 64)}, {1, make([]byte, 13)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := encodeCounted(t, tt.header, tt.recs)
			h, recs, err := readAll(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("readAll: %v", err)
			}
			want := withCounts(tt.header, tt.recs)
			want.Version = snapshot.FormatVersion
			if !sameHeader(h, want) {
				t.Errorf("header = %+v, want %+v", h, want)
			}
			if h.Total() != uint64(len(tt.recs)) {
				t.Errorf("Total() = %d, want %d", h.Total(), len(tt.recs))
			}
			if !equalRecs(recs, tt.recs) {
				t.Errorf("records differ: got %d, want %d", len(recs), len(tt.recs))
			}
			// Reading one byte at a time exercises every buffer boundary.
			if _, recs, err := readAll(iotest.OneByteReader(bytes.NewReader(b))); err != nil || !equalRecs(recs, tt.recs) {
				t.Errorf("one-byte reads: %d records, %v", len(recs), err)
			}
		})
	}
}

func TestRecordOfExactlyMaxRecordSizeRoundTrips(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 2 x 64 MiB")
	}
	data := make([]byte, snapshot.MaxRecordSize)
	data[0], data[len(data)-1] = 1, 2
	b := encodeCounted(t, snapshot.Header{Index: 1}, []rec{{1, data}})
	_, recs, err := readAll(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("readAll: %v", err)
	}
	if len(recs) != 1 || !bytes.Equal(recs[0].data, data) {
		t.Fatalf("record did not round trip")
	}
}

func TestHeaderVersionIsTheFileFormatNotTheCallersValue(t *testing.T) {
	t.Parallel()
	for _, v := range []uint16{0, 1, 42} {
		b := encode(t, snapshot.Header{Version: v, Index: 3, Term: 1}, nil)
		h, _, err := readAll(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		if h.Version != snapshot.FormatVersion {
			t.Fatalf("Version %d given: read back %d, want FormatVersion %d", v, h.Version, snapshot.FormatVersion)
		}
	}
}

func TestWriterRejectsTheReservedRecordTypeZeroAndStaysUsable(t *testing.T) {
	t.Parallel()
	want := []rec{{1, []byte("before")}, {2, []byte("after")}}
	var buf bytes.Buffer
	w, err := snapshot.NewWriter(&buf, withCounts(snapshot.Header{Index: 1, Term: 1}, want))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Record(1, []byte("before")); err != nil {
		t.Fatal(err)
	}
	if err := w.Record(0, []byte("trailer?")); err == nil {
		t.Fatal("Record(0, ...) succeeded, want an error")
	}
	if err := w.Record(0, nil); err == nil {
		t.Fatal("Record(0, nil) succeeded, want an error")
	}
	if err := w.Record(2, []byte("after")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	_, recs, err := readAll(&buf)
	if err != nil {
		t.Fatalf("stream after a rejected record is unreadable: %v", err)
	}
	if !equalRecs(recs, want) {
		t.Fatalf("records = %v, want %v", recs, want)
	}
}

func TestWriterRejectsARecordAboveMaxRecordSize(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	w, err := snapshot.NewWriter(&buf, snapshot.Header{Index: 1, Counts: map[byte]uint64{1: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Record(1, make([]byte, snapshot.MaxRecordSize+1)); !errors.Is(err, snapshot.ErrRecordTooLarge) {
		t.Fatalf("Record(MaxRecordSize+1) = %v, want ErrRecordTooLarge", err)
	}
	// The refused record does not use up the one record declared.
	if err := w.Record(1, []byte("ok")); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if _, recs, err := readAll(&buf); err != nil || !equalRecs(recs, []rec{{1, []byte("ok")}}) {
		t.Fatalf("readAll = %v, %v; want only the accepted record", recs, err)
	}
}

func TestWriterRefusesARecordBeyondItsDeclaredCountAndStaysUsable(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	w, err := snapshot.NewWriter(&buf, snapshot.Header{Index: 4, Term: 2, Counts: map[byte]uint64{1: 2, 3: 1}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []rec{{1, []byte("a")}, {3, []byte("c")}, {1, []byte("b")}} {
		if err := w.Record(r.typ, r.data); err != nil {
			t.Fatalf("Record(%d, %q): %v", r.typ, r.data, err)
		}
	}
	refused := []rec{
		{1, []byte("third of type 1")}, // 2 declared
		{3, []byte("second of type 3")},
		{2, []byte("type 2 is not declared")},
		{2, nil},
		{255, nil},
	}
	for _, r := range refused {
		err := w.Record(r.typ, r.data)
		if !errors.Is(err, snapshot.ErrCountMismatch) {
			t.Fatalf("Record(%d, %q) = %v, want ErrCountMismatch", r.typ, r.data, err)
		}
		if !bytes.Contains([]byte(err.Error()), fmt.Appendf(nil, "type %d", r.typ)) {
			t.Errorf("error %q does not name type %d", err, r.typ)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close after refused records: %v", err)
	}
	want := []rec{{1, []byte("a")}, {3, []byte("c")}, {1, []byte("b")}}
	h, recs, err := readAll(&buf)
	if err != nil || !equalRecs(recs, want) || h.Total() != 3 {
		t.Fatalf("readAll = %+v %v %v; want only the accepted records", h, recs, err)
	}
}

func TestWriterWithoutCountsWritesNoRecords(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	w, err := snapshot.NewWriter(&buf, snapshot.Header{Index: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Record(1, []byte("x")); !errors.Is(err, snapshot.ErrCountMismatch) {
		t.Fatalf("Record with nil Counts = %v, want ErrCountMismatch", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if h, recs, err := readAll(&buf); err != nil || len(recs) != 0 || h.Counts == nil || len(h.Counts) != 0 {
		t.Fatalf("readAll = %+v %v %v; want an empty version 2 file", h, recs, err)
	}
}

func TestWriterCloseRefusesWhenRecordsAreMissing(t *testing.T) {
	t.Parallel()
	big := bytes.Repeat([]byte("z"), 100<<10) // more than the Writer's buffer: part of the stream is out
	tests := []struct {
		name   string
		counts map[byte]uint64
		recs   []rec
	}{
		{"one record short", map[byte]uint64{1: 3}, []rec{{1, nil}, {1, big}}},
		{"a declared type never written", map[byte]uint64{1: 1, 7: 2}, []rec{{1, big}}},
		{"nothing written", map[byte]uint64{200: 1}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			w, err := snapshot.NewWriter(&buf, snapshot.Header{Index: 1, Counts: tt.counts})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range tt.recs {
				if err := w.Record(r.typ, r.data); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); !errors.Is(err, snapshot.ErrCountMismatch) {
				t.Fatalf("Close = %v, want ErrCountMismatch", err)
			}
			// No trailer was written: whatever reached the underlying
			// writer is a truncated file.
			if _, _, err := readAll(bytes.NewReader(buf.Bytes())); !errors.Is(err, snapshot.ErrTruncated) {
				t.Fatalf("what was written reads as %v, want ErrTruncated", err)
			}
		})
	}
}

func TestNewWriterRefusesInvalidCounts(t *testing.T) {
	t.Parallel()
	all := make(map[byte]uint64)
	for typ := range 256 {
		all[byte(typ)] = 1
	}
	tests := map[string]map[byte]uint64{
		"a count for the reserved type 0":      {0: 0, 1: 1},
		"a count of 1 for the reserved type 0": {0: 1},
		"all 256 types":                        all,
		"more than 2^64-1 records in all":      {1: math.MaxUint64, 2: 1},
	}
	for name, counts := range tests {
		var buf bytes.Buffer
		w, err := snapshot.NewWriter(&buf, snapshot.Header{Counts: counts})
		if !errors.Is(err, snapshot.ErrCountMismatch) || w != nil {
			t.Errorf("%s: NewWriter = %v, %v; want ErrCountMismatch and no Writer", name, w, err)
		}
		if buf.Len() != 0 {
			t.Errorf("%s: %d bytes written", name, buf.Len())
		}
	}
}

func TestWriterDeclaringZeroRecordsOfATypeKeepsTheEntry(t *testing.T) {
	t.Parallel()
	counts := map[byte]uint64{1: 1, 5: 0}
	b := encode(t, snapshot.Header{Counts: counts}, []rec{{1, []byte("x")}})
	if b[v1HeaderLen] != 2 {
		t.Fatalf("%d types declared, want 2", b[v1HeaderLen])
	}
	h, _, err := readAll(bytes.NewReader(b))
	if err != nil || !maps.Equal(h.Counts, counts) {
		t.Fatalf("read back %v, %v; want %v", h.Counts, err, counts)
	}
}

// failingWriter accepts limit bytes, then fails every write.
type failingWriter struct {
	limit int
	n     int
	err   error
}

func (w *failingWriter) Write(p []byte) (int, error) {
	if w.n+len(p) > w.limit {
		k := w.limit - w.n
		w.n = w.limit
		return k, w.err
	}
	w.n += len(p)
	return len(p), nil
}

func TestWriterReportsErrorsOfTheUnderlyingWriter(t *testing.T) {
	t.Parallel()
	boom := errors.New("disk full")
	t.Run("on Close of a small snapshot", func(t *testing.T) {
		t.Parallel()
		w, err := snapshot.NewWriter(&failingWriter{limit: 10, err: boom}, snapshot.Header{Counts: map[byte]uint64{1: 1}})
		if err != nil {
			t.Fatalf("NewWriter is buffered and should not fail yet: %v", err)
		}
		if err := w.Record(1, []byte("x")); err != nil {
			t.Fatalf("Record is buffered and should not fail yet: %v", err)
		}
		if err := w.Close(); !errors.Is(err, boom) {
			t.Fatalf("Close = %v, want %v", err, boom)
		}
	})
	t.Run("on a record larger than the buffer and on every call after", func(t *testing.T) {
		t.Parallel()
		// Type 1 declares one record more than is written: the write
		// error, the cause, is what Record and Close report.
		w, err := snapshot.NewWriter(&failingWriter{limit: 100, err: boom}, snapshot.Header{Counts: map[byte]uint64{1: 2}})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Record(1, make([]byte, 200<<10)); !errors.Is(err, boom) {
			t.Fatalf("Record = %v, want %v", err, boom)
		}
		if err := w.Record(1, []byte("x")); !errors.Is(err, boom) {
			t.Fatalf("Record after a failure = %v, want the sticky %v", err, boom)
		}
		if err := w.Record(1, []byte("x")); !errors.Is(err, boom) {
			t.Fatalf("Record beyond the count after a failure = %v, want the sticky %v", err, boom)
		}
		if err := w.Close(); !errors.Is(err, boom) {
			t.Fatalf("Close = %v, want %v", err, boom)
		}
	})
}

// smallRecs are the records of the files used by the exhaustive corruption
// tests. Their data bytes are all below 0x80, so that no single bit flip
// can turn a length into a varint longer than the file.
var smallRecs = []rec{{1, []byte("hello")}, {2, nil}, {3, []byte("a somewhat longer record body")}, {200, []byte{0, 0, 0}}, {1, []byte("again")}}

// smallFiles are a version 1 and a version 2 file of smallRecs.
func smallFiles(t testing.TB) map[string][]byte {
	return map[string][]byte{
		"v1": specStream{version: 1, index: 1234, term: 7, recs: smallRecs}.bytes(),
		"v2": encodeCounted(t, snapshot.Header{Index: 1234, Term: 7}, smallRecs),
	}
}

// regions names the part of a file of smallRecs that a byte offset lies in.
func regions(full []byte, version uint16, recs []rec) []string {
	r := make([]string, len(full))
	i := 0
	set := func(n int, name string) {
		for range n {
			r[i] = name
			i++
		}
	}
	set(8, "magic")
	set(2, "version")
	set(16, "index/term")
	if version >= 2 {
		set(1, "count entries")
		for range countsOf(recs) {
			set(1, "count type")
			set(8, "count value")
		}
	}
	for _, rc := range recs {
		set(1, "record type")
		set(len(binary.AppendUvarint(nil, uint64(len(rc.data)))), "record length")
		set(len(rc.data), "record data")
	}
	set(1, "trailer tag")
	set(8, "trailer count")
	set(4, "trailer checksum")
	return r
}

func TestReaderReportsTruncationAtEveryOffset(t *testing.T) {
	t.Parallel()
	for name, full := range smallFiles(t) {
		for n := 0; n < len(full); n++ {
			_, _, err := readAll(bytes.NewReader(full[:n]))
			if err == nil {
				t.Fatalf("%s: file cut to %d of %d bytes was accepted", name, n, len(full))
			}
			if errors.Is(err, io.EOF) {
				t.Fatalf("%s: file cut to %d bytes: error %v matches io.EOF, the success marker", name, n, err)
			}
			if !errors.Is(err, snapshot.ErrTruncated) {
				t.Errorf("%s: file cut to %d bytes: %v, want ErrTruncated", name, n, err)
			}
		}
		if _, recs, err := readAll(bytes.NewReader(full)); err != nil || !equalRecs(recs, smallRecs) {
			t.Fatalf("%s: the whole file: %v %v", name, recs, err)
		}
	}
}

func TestReaderDetectsEverySingleBitFlip(t *testing.T) {
	t.Parallel()
	structural := []error{snapshot.ErrChecksum, snapshot.ErrTruncated, snapshot.ErrRecordTooLarge}
	want := map[string]map[string][]error{
		"v1": {
			"magic":            {snapshot.ErrBadMagic},
			"version":          {snapshot.ErrUnsupportedVersion},
			"index/term":       {snapshot.ErrChecksum},
			"record data":      {snapshot.ErrChecksum},
			"trailer count":    {snapshot.ErrChecksum},
			"trailer checksum": {snapshot.ErrChecksum},
			// Structural bytes change how the rest is parsed.
			"record type":   structural,
			"record length": structural,
			"trailer tag":   structural,
		},
		"v2": {
			"magic":            {snapshot.ErrBadMagic},
			"version":          {snapshot.ErrUnsupportedVersion},
			"index/term":       {snapshot.ErrChecksum},
			"record data":      {snapshot.ErrChecksum},
			"trailer count":    {snapshot.ErrChecksum},
			"trailer checksum": {snapshot.ErrChecksum},
			// A record of another type, or a count lowered, is refused
			// as soon as it is read; a count raised at the trailer,
			// where the checksum is checked first.
			"count type":  {snapshot.ErrCountMismatch, snapshot.ErrChecksum},
			"count value": {snapshot.ErrCountMismatch, snapshot.ErrChecksum},
			// Structural bytes change how the rest is parsed, and what
			// is then read as a record has rarely the declared type.
			"count entries": append(structural, snapshot.ErrCountMismatch),
			"record type":   append(structural, snapshot.ErrCountMismatch),
			"record length": append(structural, snapshot.ErrCountMismatch),
			"trailer tag":   append(structural, snapshot.ErrCountMismatch),
		},
	}
	for name, full := range smallFiles(t) {
		region := regions(full, map[string]uint16{"v1": 1, "v2": 2}[name], smallRecs)
		for off := range full {
			for bit := range 8 {
				b := bytes.Clone(full)
				b[off] ^= 1 << bit
				_, _, err := readAll(bytes.NewReader(b))
				if err == nil || errors.Is(err, io.EOF) {
					t.Errorf("%s: flip of bit %d at offset %d (%s) not detected: %v", name, bit, off, region[off], err)
					continue
				}
				if !isAny(err, want[name][region[off]]...) {
					t.Errorf("%s: flip of bit %d at offset %d (%s): %v, want one of %v", name, bit, off, region[off], err, want[name][region[off]])
				}
				if n := sentinelsMatched(err); n != 1 {
					t.Errorf("%s: flip of bit %d at offset %d: %v matches %d documented errors, want 1", name, bit, off, err, n)
				}
			}
		}
	}
}

func TestReaderDetectsSingleBitFlipsInBinaryData(t *testing.T) {
	t.Parallel()
	// Data bytes with the high bit set can make a corrupted length varint
	// run on; the flip must still be refused.
	recs := []rec{{1, bytes.Repeat([]byte{0xFF}, 20)}, {2, []byte{0x80, 0x81, 0xFE, 0x00, 0x7F}}}
	files := map[string][]byte{
		"v1": specStream{version: 1, index: 1, term: 1, recs: recs}.bytes(),
		"v2": encodeCounted(t, snapshot.Header{Index: 1, Term: 1}, recs),
	}
	for name, full := range files {
		for off := range full {
			for bit := range 8 {
				b := bytes.Clone(full)
				b[off] ^= 1 << bit
				if _, _, err := readAll(bytes.NewReader(b)); err == nil || errors.Is(err, io.EOF) {
					t.Errorf("%s: flip of bit %d at offset %d not detected: %v", name, bit, off, err)
				}
			}
		}
	}
}

func TestReaderDetectsRandomCorruption(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for name, full := range smallFiles(t) {
		for i := range 5000 {
			b := bytes.Clone(full)
			// Overwrite 1..4 random bytes with different values.
			for range 1 + rng.IntN(4) {
				off := rng.IntN(len(b))
				b[off] ^= byte(1 + rng.IntN(255))
			}
			if bytes.Equal(b, full) {
				continue
			}
			if _, _, err := readAll(bytes.NewReader(b)); err == nil {
				t.Fatalf("%s: case %d: corrupted file accepted: %x", name, i, b)
			}
		}
	}
}

func TestReaderRefusesVersionsItDoesNotKnow(t *testing.T) {
	t.Parallel()
	for _, v := range []uint16{0, snapshot.FormatVersion + 1, 3, 255, 256, math.MaxUint16} {
		t.Run(fmt.Sprint(v), func(t *testing.T) {
			t.Parallel()
			b := specStream{version: v, index: 1, term: 1, recs: []rec{{1, []byte("x")}}}.bytes()
			sr, err := snapshot.NewReader(bytes.NewReader(b))
			if !errors.Is(err, snapshot.ErrUnsupportedVersion) {
				t.Fatalf("NewReader = %v, want ErrUnsupportedVersion", err)
			}
			if sr != nil {
				t.Fatalf("NewReader returned a reader with the error")
			}
		})
	}
}

func TestReaderAcceptsEveryVersionUpToFormatVersion(t *testing.T) {
	t.Parallel()
	recs := []rec{{1, []byte("x")}, {4, nil}, {1, []byte("y")}}
	for v := uint16(1); v <= snapshot.FormatVersion; v++ {
		b := specStream{version: v, index: 4, term: 2, recs: recs}.bytes()
		h, got, err := readAll(bytes.NewReader(b))
		want := snapshot.Header{Version: v, Index: 4, Term: 2}
		if v >= 2 {
			want.Counts = map[byte]uint64{1: 2, 4: 1}
		}
		if err != nil || !sameHeader(h, want) || !equalRecs(got, recs) {
			t.Fatalf("version %d: header %+v, records %v, %v; want %+v", v, h, got, err, want)
		}
	}
}

func TestReaderReadsVersion1FilesOfEveryRecordType(t *testing.T) {
	t.Parallel()
	// A version 1 file declares nothing: any type, any number of records.
	var recs []rec
	for typ := 255; typ >= 1; typ-- {
		for k := range typ % 3 {
			recs = append(recs, rec{byte(typ), []byte{byte(k)}})
		}
	}
	b := specStream{version: 1, index: 8, term: 8, recs: recs}.bytes()
	h, got, err := readAll(iotest.HalfReader(bytes.NewReader(b)))
	if err != nil || h.Counts != nil || !equalRecs(got, recs) {
		t.Fatalf("readAll = %+v, %d records, %v", h, len(got), err)
	}
}

func TestVersion1FileRelabelledAsVersion2IsRefused(t *testing.T) {
	t.Parallel()
	// The version is the only thing that says whether a count section
	// follows: a version 1 file with the version changed and the checksum
	// recomputed must not read back as what it held.
	for _, recs := range [][]rec{nil, {{1, []byte("x")}}, smallRecs} {
		v1 := specStream{version: 1, recs: recs}.body()
		binary.BigEndian.PutUint16(v1[8:], 2)
		b := seal(v1, uint64(len(recs)))
		if _, _, err := readAll(bytes.NewReader(b)); err == nil {
			t.Errorf("%d records: relabelled file accepted", len(recs))
		}
	}
}

func TestReaderRefusesMoreRecordsOfATypeThanDeclaredAsSoonAsRead(t *testing.T) {
	t.Parallel()
	recs := []rec{{1, []byte("a")}, {2, []byte("b")}, {1, []byte("c")}, {2, []byte("d")}}
	tests := []struct {
		name   string
		counts []countEntry
		before int // records returned before the refusal
	}{
		{"one record too many", []countEntry{{1, 1}, {2, 2}}, 2},
		{"a type declared with count 0", []countEntry{{1, 2}, {2, 0}}, 1},
		{"a type not declared", []countEntry{{1, 2}}, 1},
		{"nothing declared", nil, 0},
		{"every type declared but the one read", []countEntry{{1, 2}, {3, 2}}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// A correct trailer: only the counts can refuse this file.
			b := specStream{version: 2, recs: recs, counts: tt.counts, forgeCounts: true}.bytes()
			_, got, err := readAll(bytes.NewReader(b))
			if !errors.Is(err, snapshot.ErrCountMismatch) {
				t.Fatalf("%v, want ErrCountMismatch", err)
			}
			if len(got) != tt.before {
				t.Fatalf("refused after %d records, want %d", len(got), tt.before)
			}
		})
	}
}

func TestReaderRefusesFewerRecordsOfATypeThanDeclaredAtTheTrailer(t *testing.T) {
	t.Parallel()
	recs := []rec{{1, []byte("a")}, {2, []byte("b")}, {1, []byte("c")}}
	tests := map[string][]countEntry{
		"one record short":                {{1, 3}, {2, 1}},
		"a declared type absent":          {{1, 2}, {2, 1}, {9, 1}},
		"the largest total":               {{1, 2}, {2, math.MaxUint64 - 2}},
		"counts that add up to the total": {{1, 1}, {2, 2}},
	}
	for name, counts := range tests {
		b := specStream{version: 2, recs: recs, counts: counts, forgeCounts: true}.bytes()
		sr, err := snapshot.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: NewReader: %v", name, err)
		}
		n := 0
		for {
			_, _, err = sr.Next()
			if err != nil {
				break
			}
			n++
		}
		if name == "counts that add up to the total" {
			// Type 1 has one record too many: refused when its second
			// record, the third, is read.
			if !errors.Is(err, snapshot.ErrCountMismatch) || n != 2 {
				t.Errorf("%s: %v after %d records, want ErrCountMismatch after 2", name, err, n)
			}
			continue
		}
		if !errors.Is(err, snapshot.ErrCountMismatch) || n != len(recs) {
			t.Errorf("%s: %v after %d records, want ErrCountMismatch at the trailer", name, err, n)
		}
		if errors.Is(err, io.EOF) {
			t.Errorf("%s: error %v matches io.EOF, the success marker", name, err)
		}
	}
}

func TestReaderRefusesAMalformedCountSection(t *testing.T) {
	t.Parallel()
	recs := []rec{{1, []byte("a")}, {2, []byte("b")}}
	tests := map[string][]countEntry{
		"a type declared twice":                  {{1, 1}, {1, 0}, {2, 1}},
		"a type declared twice, counts split":    {{1, 1}, {2, 1}, {2, 0}},
		"a count for the reserved type 0":        {{0, 0}, {1, 1}, {2, 1}},
		"a count for type 0 after the others":    {{1, 1}, {2, 1}, {0, 0}},
		"types in descending order":              {{2, 1}, {1, 1}},
		"types out of order, the last misplaced": {{1, 1}, {5, 0}, {2, 1}},
	}
	for name, counts := range tests {
		b := specStream{version: 2, recs: recs, counts: counts, forgeCounts: true}.bytes()
		sr, err := snapshot.NewReader(bytes.NewReader(b))
		if !errors.Is(err, snapshot.ErrCountMismatch) || sr != nil {
			t.Errorf("%s: NewReader = %v, %v; want ErrCountMismatch and no Reader", name, sr, err)
		}
	}
}

func TestReaderRefusesHeaderCountsBeyondUint64InAll(t *testing.T) {
	t.Parallel()
	// No file can hold that many records, and Total could not say it.
	b := specStream{version: 2, counts: []countEntry{{1, math.MaxUint64}, {2, 1}}, forgeCounts: true}.bytes()
	if _, err := snapshot.NewReader(bytes.NewReader(b)); !errors.Is(err, snapshot.ErrCountMismatch) {
		t.Fatalf("NewReader = %v, want ErrCountMismatch", err)
	}
}

func TestReaderRefusesABadMagic(t *testing.T) {
	t.Parallel()
	for _, magic := range []string{"COORDSNQ", "coordsnp", "\x00\x00\x00\x00\x00\x00\x00\x00", "RAFTSNAP"} {
		for _, v := range []uint16{1, 2} {
			b := specStream{magic: magic, version: v}.bytes()
			if _, err := snapshot.NewReader(bytes.NewReader(b)); !errors.Is(err, snapshot.ErrBadMagic) {
				t.Errorf("magic %q, version %d: %v, want ErrBadMagic", magic, v, err)
			}
		}
	}
}

func TestReaderRefusesAnEmptyOrShortStreamAsTruncated(t *testing.T) {
	t.Parallel()
	v2 := specStream{version: 2, recs: []rec{{1, nil}, {2, nil}}}.header()
	for _, b := range [][]byte{
		nil, []byte("C"), []byte(snapshot.Magic), []byte(snapshot.Magic + "\x00\x01"), []byte(snapshot.Magic + "\x00\x02"),
		v2[:v1HeaderLen],                 // no count byte
		v2[:v1HeaderLen+1],               // no entries
		v2[:v1HeaderLen+1+countEntryLen], // one entry of two
		v2[:len(v2)-1],                   // the last count cut
	} {
		if _, err := snapshot.NewReader(bytes.NewReader(b)); !errors.Is(err, snapshot.ErrTruncated) {
			t.Errorf("%q: %v, want ErrTruncated", b, err)
		}
	}
}

// bothVersions returns the body of a version 1 and of a version 2 stream
// that declares one record of type 1, for tests that append a record.
func bothVersions() map[string][]byte {
	return map[string][]byte{
		"v1": specStream{version: 1}.body(),
		"v2": specStream{version: 2, counts: []countEntry{{1, 1}}, forgeCounts: true}.body(),
	}
}

func TestReaderRefusesADeclaredLengthAboveMaxRecordSize(t *testing.T) {
	t.Parallel()
	for name, body := range bothVersions() {
		for _, n := range []uint64{snapshot.MaxRecordSize + 1, 1 << 40, math.MaxUint64} {
			b := append(bytes.Clone(body), 1)
			b = binary.AppendUvarint(b, n)
			b = append(b, "some data"...)
			_, _, err := readAll(bytes.NewReader(b))
			if !errors.Is(err, snapshot.ErrRecordTooLarge) {
				t.Errorf("%s: declared length %d: %v, want ErrRecordTooLarge", name, n, err)
			}
		}
	}
}

func TestReaderRefusesATruncatedLengthVarint(t *testing.T) {
	t.Parallel()
	for name, body := range bothVersions() {
		b := append(bytes.Clone(body), 1, 0x80, 0x80)
		if _, _, err := readAll(bytes.NewReader(b)); !errors.Is(err, snapshot.ErrTruncated) {
			t.Fatalf("%s: %v, want ErrTruncated", name, err)
		}
	}
}

func TestReaderRefusesAWrongRecordCountEvenWithAValidChecksum(t *testing.T) {
	t.Parallel()
	recs := []rec{{1, []byte("a")}, {1, []byte("b")}}
	for _, v := range []uint16{1, 2} {
		for _, count := range []uint64{0, 1, 3, math.MaxUint64} {
			b := specStream{version: v, recs: recs, count: u64(count)}.bytes()
			if _, _, err := readAll(bytes.NewReader(b)); !errors.Is(err, snapshot.ErrChecksum) {
				t.Errorf("version %d, count %d for 2 records: %v, want ErrChecksum", v, count, err)
			}
		}
	}
}

func TestReaderRefusesAFileThatEndsWithoutATrailer(t *testing.T) {
	t.Parallel()
	for _, v := range []uint16{1, 2} {
		b := specStream{version: v, recs: []rec{{1, []byte("a")}}}.body()
		_, recs, err := readAll(bytes.NewReader(b))
		if !errors.Is(err, snapshot.ErrTruncated) {
			t.Fatalf("version %d: %v, want ErrTruncated", v, err)
		}
		if len(recs) != 1 {
			t.Fatalf("version %d: records before the missing trailer = %d, want 1 (returned, but not yet verified)", v, len(recs))
		}
	}
}

func TestNextKeepsReturningEOFAfterTheTrailer(t *testing.T) {
	t.Parallel()
	for name, full := range smallFiles(t) {
		sr, err := snapshot.NewReader(bytes.NewReader(full))
		if err != nil {
			t.Fatal(err)
		}
		for {
			_, _, err := sr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		for range 3 {
			typ, data, err := sr.Next()
			if err != io.EOF || typ != 0 || data != nil {
				t.Fatalf("%s: Next after the end = %d, %v, %v; want 0, nil, io.EOF", name, typ, data, err)
			}
		}
	}
}

func TestRecordsReturnedByNextAreNotOverwrittenByLaterCalls(t *testing.T) {
	t.Parallel()
	recs := []rec{{1, []byte("first")}, {2, []byte("second")}, {3, []byte("third")}}
	full := encodeCounted(t, snapshot.Header{}, recs)
	sr, err := snapshot.NewReader(bytes.NewReader(full))
	if err != nil {
		t.Fatal(err)
	}
	var kept [][]byte
	for {
		_, data, err := sr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		kept = append(kept, data)
	}
	for i, d := range kept {
		if !bytes.Equal(d, recs[i].data) {
			t.Errorf("record %d = %q after reading on, want %q", i, d, recs[i].data)
		}
	}
}

func TestReaderPassesOnErrorsOfTheUnderlyingReader(t *testing.T) {
	t.Parallel()
	boom := errors.New("i/o error")
	for name, full := range smallFiles(t) {
		checksumAt := len(full) - 4
		for n := 0; n < len(full); n++ {
			r := io.MultiReader(bytes.NewReader(full[:n]), iotest.ErrReader(boom))
			_, _, err := readAll(r)
			if err == nil || errors.Is(err, io.EOF) {
				t.Fatalf("%s: read error after %d bytes ignored: %v", name, n, err)
			}
			if n < checksumAt && !errors.Is(err, boom) {
				t.Errorf("%s: read error after %d bytes: %v, want it to wrap %v", name, n, err, boom)
			}
		}
	}
}

func TestReaderIsNotFooledByShortReadsOrEarlyEOF(t *testing.T) {
	t.Parallel()
	for name, full := range smallFiles(t) {
		readers := map[string]func() io.Reader{
			"one byte at a time":      func() io.Reader { return iotest.OneByteReader(bytes.NewReader(full)) },
			"half of each request":    func() io.Reader { return iotest.HalfReader(bytes.NewReader(full)) },
			"EOF with the last bytes": func() io.Reader { return iotest.DataErrReader(bytes.NewReader(full)) },
		}
		for rname, mk := range readers {
			t.Run(name+"/"+rname, func(t *testing.T) {
				_, got, err := readAll(mk())
				if err != nil || !equalRecs(got, smallRecs) {
					t.Fatalf("readAll = %d records, %v", len(got), err)
				}
			})
		}
	}
}

func TestErrorsFromTheReaderNeverMatchTwoSentinels(t *testing.T) {
	t.Parallel()
	for name, full := range smallFiles(t) {
		for n := 0; n < len(full); n++ {
			_, _, err := readAll(bytes.NewReader(full[:n]))
			if m := sentinelsMatched(err); m != 1 {
				t.Fatalf("%s: cut at %d: %v matches %d sentinels, want 1", name, n, err, m)
			}
		}
	}
}
