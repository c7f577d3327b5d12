package snapshot_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"testing"
	"testing/iotest"

	"github.com/coordd/coordd/snapshot"
)

func TestWriterOutputFollowsTheDocumentedLayout(t *testing.T) {
	t.Parallel()
	h := snapshot.Header{Index: 0x0102030405060708, Term: 0x1112131415161718}
	recs := []rec{{1, []byte("a")}, {2, nil}, {255, bytes.Repeat([]byte{0xAB}, 300)}}
	got := encode(t, h, recs)
	want := specStream{version: 1, index: h.Index, term: h.Term, recs: recs}.bytes()
	if !bytes.Equal(got, want) {
		t.Fatalf("Writer output differs from the documented layout\n got %x\nwant %x", got, want)
	}
	// Spot-check a few fixed positions so that the layout itself, not only
	// the agreement of two encoders, is pinned.
	if string(got[:8]) != "COORDSNP" {
		t.Errorf("magic = %q", got[:8])
	}
	if v := binary.BigEndian.Uint16(got[8:]); v != 1 {
		t.Errorf("version = %d, want 1", v)
	}
	if got[26] != 1 || got[27] != 1 || got[28] != 'a' {
		t.Errorf("first record = % x, want 01 01 61", got[26:29])
	}
	tr := got[len(got)-trailerLen:]
	if tr[0] != 0 || binary.BigEndian.Uint64(tr[1:]) != 3 {
		t.Errorf("trailer = % x, want tag 0 and count 3", tr)
	}
}

func TestEmptySnapshotIsHeaderPlusTrailer(t *testing.T) {
	t.Parallel()
	got := encode(t, snapshot.Header{Index: 7, Term: 3}, nil)
	if len(got) != headerLen+trailerLen {
		t.Fatalf("len = %d, want %d", len(got), headerLen+trailerLen)
	}
	h, recs, err := readAll(bytes.NewReader(got))
	if err != nil || len(recs) != 0 || h.Index != 7 || h.Term != 3 {
		t.Fatalf("readAll = %+v, %d records, %v", h, len(recs), err)
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
		{"lengths around the one-byte varint limit", snapshot.Header{Index: 9}, []rec{{1, sized(127)}, {1, sized(128)}, {1, sized(129)}}},
		{"lengths around the two-byte varint limit", snapshot.Header{Index: 9}, []rec{{1, sized(16383)}, {1, sized(16384)}}},
		{"lengths around the 64 KiB buffer size", snapshot.Header{Index: 9}, []rec{{1, sized(64<<10 - 1)}, {2, sized(64 << 10)}, {3, sized(64<<10 + 1)}}},
		{"a one megabyte record", snapshot.Header{Index: 10, Term: 4}, []rec{{7, sized(1 << 20)}}},
		{"every record type", snapshot.Header{Index: 11, Term: 4}, allTypes},
		{"ten thousand small records", snapshot.Header{Index: 12, Term: 5}, many},
		{"data full of zero bytes that look like trailer tags", snapshot.Header{Index: 13}, []rec{{1, make([]byte, 64)}, {1, make([]byte, 13)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := encode(t, tt.header, tt.recs)
			h, recs, err := readAll(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("readAll: %v", err)
			}
			want := tt.header
			want.Version = snapshot.FormatVersion
			if h != want {
				t.Errorf("header = %+v, want %+v", h, want)
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
	b := encode(t, snapshot.Header{Index: 1}, []rec{{1, data}})
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
	b := encode(t, snapshot.Header{Version: 42, Index: 3, Term: 1}, nil)
	h, _, err := readAll(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if h.Version != snapshot.FormatVersion {
		t.Fatalf("Version = %d, want FormatVersion %d", h.Version, snapshot.FormatVersion)
	}
}

func TestWriterRejectsTheReservedRecordTypeZeroAndStaysUsable(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	w, err := snapshot.NewWriter(&buf, snapshot.Header{Index: 1, Term: 1})
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
	want := []rec{{1, []byte("before")}, {2, []byte("after")}}
	if !equalRecs(recs, want) {
		t.Fatalf("records = %v, want %v", recs, want)
	}
}

func TestWriterRejectsARecordAboveMaxRecordSize(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	w, err := snapshot.NewWriter(&buf, snapshot.Header{Index: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Record(1, make([]byte, snapshot.MaxRecordSize+1)); !errors.Is(err, snapshot.ErrRecordTooLarge) {
		t.Fatalf("Record(MaxRecordSize+1) = %v, want ErrRecordTooLarge", err)
	}
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
		w, err := snapshot.NewWriter(&failingWriter{limit: 10, err: boom}, snapshot.Header{})
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
		w, err := snapshot.NewWriter(&failingWriter{limit: 100, err: boom}, snapshot.Header{})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Record(1, make([]byte, 200<<10)); !errors.Is(err, boom) {
			t.Fatalf("Record = %v, want %v", err, boom)
		}
		if err := w.Record(1, []byte("x")); !errors.Is(err, boom) {
			t.Fatalf("Record after a failure = %v, want the sticky %v", err, boom)
		}
		if err := w.Close(); !errors.Is(err, boom) {
			t.Fatalf("Close = %v, want %v", err, boom)
		}
	})
}

// smallFile is a short snapshot with several records, used by the exhaustive
// corruption tests. Its data bytes are all below 0x80, so that no single bit
// flip can turn a length into a varint longer than the file.
func smallFile(t testing.TB) ([]byte, []rec) {
	recs := []rec{{1, []byte("hello")}, {2, nil}, {3, []byte("a somewhat longer record body")}, {200, []byte{0, 0, 0}}}
	return encode(t, snapshot.Header{Index: 1234, Term: 7}, recs), recs
}

func TestReaderReportsTruncationAtEveryOffset(t *testing.T) {
	t.Parallel()
	full, _ := smallFile(t)
	for n := 0; n < len(full); n++ {
		_, _, err := readAll(bytes.NewReader(full[:n]))
		if err == nil {
			t.Fatalf("file cut to %d of %d bytes was accepted", n, len(full))
		}
		if errors.Is(err, io.EOF) {
			t.Fatalf("file cut to %d bytes: error %v matches io.EOF, the success marker", n, err)
		}
		if !errors.Is(err, snapshot.ErrTruncated) {
			t.Errorf("file cut to %d bytes: %v, want ErrTruncated", n, err)
		}
	}
	if _, _, err := readAll(bytes.NewReader(full)); err != nil {
		t.Fatalf("the whole file: %v", err)
	}
}

// region names the part of smallFile that a byte offset lies in.
func regions(full []byte, recs []rec) []string {
	r := make([]string, len(full))
	i := 0
	set := func(n int, name string) {
		for k := 0; k < n; k++ {
			r[i] = name
			i++
		}
	}
	set(8, "magic")
	set(2, "version")
	set(16, "index/term")
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

func TestReaderDetectsEverySingleBitFlip(t *testing.T) {
	t.Parallel()
	full, recs := smallFile(t)
	region := regions(full, recs)
	want := map[string][]error{
		"magic":            {snapshot.ErrBadMagic},
		"version":          {snapshot.ErrUnsupportedVersion},
		"index/term":       {snapshot.ErrChecksum},
		"record data":      {snapshot.ErrChecksum},
		"trailer count":    {snapshot.ErrChecksum},
		"trailer checksum": {snapshot.ErrChecksum},
		// Structural bytes change how the rest is parsed.
		"record type":   {snapshot.ErrChecksum, snapshot.ErrTruncated, snapshot.ErrRecordTooLarge},
		"record length": {snapshot.ErrChecksum, snapshot.ErrTruncated, snapshot.ErrRecordTooLarge},
		"trailer tag":   {snapshot.ErrChecksum, snapshot.ErrTruncated, snapshot.ErrRecordTooLarge},
	}
	for off := range full {
		for bit := range 8 {
			b := append([]byte(nil), full...)
			b[off] ^= 1 << bit
			_, _, err := readAll(bytes.NewReader(b))
			if err == nil || errors.Is(err, io.EOF) {
				t.Errorf("flip of bit %d at offset %d (%s) not detected: %v", bit, off, region[off], err)
				continue
			}
			if !isAny(err, want[region[off]]...) {
				t.Errorf("flip of bit %d at offset %d (%s): %v, want one of %v", bit, off, region[off], err, want[region[off]])
			}
		}
	}
}

func TestReaderDetectsSingleBitFlipsInBinaryData(t *testing.T) {
	t.Parallel()
	// Data bytes with the high bit set can make a corrupted length varint
	// run on; the flip must still be refused.
	recs := []rec{{1, bytes.Repeat([]byte{0xFF}, 20)}, {2, []byte{0x80, 0x81, 0xFE, 0x00, 0x7F}}}
	full := encode(t, snapshot.Header{Index: 1, Term: 1}, recs)
	for off := range full {
		for bit := range 8 {
			b := append([]byte(nil), full...)
			b[off] ^= 1 << bit
			if _, _, err := readAll(bytes.NewReader(b)); err == nil || errors.Is(err, io.EOF) {
				t.Errorf("flip of bit %d at offset %d not detected: %v", bit, off, err)
			}
		}
	}
}

func TestReaderDetectsRandomCorruption(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	full, _ := smallFile(t)
	for i := range 5000 {
		b := append([]byte(nil), full...)
		// Overwrite 1..4 random bytes with different values.
		for range 1 + rng.IntN(4) {
			off := rng.IntN(len(b))
			b[off] ^= byte(1 + rng.IntN(255))
		}
		if bytes.Equal(b, full) {
			continue
		}
		if _, _, err := readAll(bytes.NewReader(b)); err == nil {
			t.Fatalf("case %d: corrupted file accepted: %x", i, b)
		}
	}
}

func TestReaderRefusesVersionsItDoesNotKnow(t *testing.T) {
	t.Parallel()
	for _, v := range []uint16{0, snapshot.FormatVersion + 1, 2, 255, 256, math.MaxUint16} {
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
	for v := uint16(1); v <= snapshot.FormatVersion; v++ {
		b := specStream{version: v, index: 4, term: 2, recs: []rec{{1, []byte("x")}}}.bytes()
		h, _, err := readAll(bytes.NewReader(b))
		if err != nil || h.Version != v {
			t.Fatalf("version %d: header %+v, %v", v, h, err)
		}
	}
}

func TestReaderRefusesABadMagic(t *testing.T) {
	t.Parallel()
	for _, magic := range []string{"COORDSNQ", "coordsnp", "\x00\x00\x00\x00\x00\x00\x00\x00", "RAFTSNAP"} {
		b := specStream{magic: magic, version: 1}.bytes()
		if _, err := snapshot.NewReader(bytes.NewReader(b)); !errors.Is(err, snapshot.ErrBadMagic) {
			t.Errorf("magic %q: %v, want ErrBadMagic", magic, err)
		}
	}
}

func TestReaderRefusesAnEmptyOrShortStreamAsTruncated(t *testing.T) {
	t.Parallel()
	for _, b := range [][]byte{nil, []byte("C"), []byte(snapshot.Magic), []byte(snapshot.Magic + "\x00\x01")} {
		if _, err := snapshot.NewReader(bytes.NewReader(b)); !errors.Is(err, snapshot.ErrTruncated) {
			t.Errorf("%q: %v, want ErrTruncated", b, err)
		}
	}
}

func TestReaderRefusesADeclaredLengthAboveMaxRecordSize(t *testing.T) {
	t.Parallel()
	for _, n := range []uint64{snapshot.MaxRecordSize + 1, 1 << 40, math.MaxUint64} {
		b := specStream{version: 1}.body()
		b = append(b, 1)
		b = binary.AppendUvarint(b, n)
		b = append(b, "some data"...)
		_, _, err := readAll(bytes.NewReader(b))
		if !errors.Is(err, snapshot.ErrRecordTooLarge) {
			t.Errorf("declared length %d: %v, want ErrRecordTooLarge", n, err)
		}
	}
}

func TestReaderRefusesATruncatedLengthVarint(t *testing.T) {
	t.Parallel()
	b := specStream{version: 1}.body()
	b = append(b, 1, 0x80, 0x80)
	if _, _, err := readAll(bytes.NewReader(b)); !errors.Is(err, snapshot.ErrTruncated) {
		t.Fatalf("%v, want ErrTruncated", err)
	}
}

func TestReaderRefusesAWrongRecordCountEvenWithAValidChecksum(t *testing.T) {
	t.Parallel()
	recs := []rec{{1, []byte("a")}, {1, []byte("b")}}
	for _, count := range []uint64{0, 1, 3, math.MaxUint64} {
		b := specStream{version: 1, recs: recs, count: u64(count)}.bytes()
		if _, _, err := readAll(bytes.NewReader(b)); !errors.Is(err, snapshot.ErrChecksum) {
			t.Errorf("count %d for 2 records: %v, want ErrChecksum", count, err)
		}
	}
}

func TestReaderRefusesAFileThatEndsWithoutATrailer(t *testing.T) {
	t.Parallel()
	b := specStream{version: 1, recs: []rec{{1, []byte("a")}}}.body()
	_, recs, err := readAll(bytes.NewReader(b))
	if !errors.Is(err, snapshot.ErrTruncated) {
		t.Fatalf("%v, want ErrTruncated", err)
	}
	if len(recs) != 1 {
		t.Fatalf("records before the missing trailer = %d, want 1 (returned, but not yet verified)", len(recs))
	}
}

func TestNextKeepsReturningEOFAfterTheTrailer(t *testing.T) {
	t.Parallel()
	full, _ := smallFile(t)
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
			t.Fatalf("Next after the end = %d, %v, %v; want 0, nil, io.EOF", typ, data, err)
		}
	}
}

func TestRecordsReturnedByNextAreNotOverwrittenByLaterCalls(t *testing.T) {
	t.Parallel()
	recs := []rec{{1, []byte("first")}, {2, []byte("second")}, {3, []byte("third")}}
	full := encode(t, snapshot.Header{}, recs)
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
	full, _ := smallFile(t)
	boom := errors.New("i/o error")
	checksumAt := len(full) - 4
	for n := 0; n < len(full); n++ {
		r := io.MultiReader(bytes.NewReader(full[:n]), iotest.ErrReader(boom))
		_, _, err := readAll(r)
		if err == nil || errors.Is(err, io.EOF) {
			t.Fatalf("read error after %d bytes ignored: %v", n, err)
		}
		if n < checksumAt && !errors.Is(err, boom) {
			t.Errorf("read error after %d bytes: %v, want it to wrap %v", n, err, boom)
		}
	}
}

func TestReaderIsNotFooledByShortReadsOrEarlyEOF(t *testing.T) {
	t.Parallel()
	full, recs := smallFile(t)
	readers := map[string]func() io.Reader{
		"one byte at a time":      func() io.Reader { return iotest.OneByteReader(bytes.NewReader(full)) },
		"half of each request":    func() io.Reader { return iotest.HalfReader(bytes.NewReader(full)) },
		"EOF with the last bytes": func() io.Reader { return iotest.DataErrReader(bytes.NewReader(full)) },
	}
	for name, mk := range readers {
		t.Run(name, func(t *testing.T) {
			_, got, err := readAll(mk())
			if err != nil || !equalRecs(got, recs) {
				t.Fatalf("readAll = %d records, %v", len(got), err)
			}
		})
	}
}

func TestErrorsFromTheReaderNeverMatchTwoSentinels(t *testing.T) {
	t.Parallel()
	full, _ := smallFile(t)
	for n := 0; n < len(full); n++ {
		_, _, err := readAll(bytes.NewReader(full[:n]))
		matched := 0
		for _, s := range sentinels {
			if errors.Is(err, s) {
				matched++
			}
		}
		if matched != 1 {
			t.Fatalf("cut at %d: %v matches %d sentinels, want 1", n, err, matched)
		}
	}
}
