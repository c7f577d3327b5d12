package snapshot_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"testing"

	"github.com/coordd/coordd/snapshot"
)

// parseHeader parses a version 1 or version 2 header from the documented
// layout, independently of Reader; next is where the records start. A
// version 2 header must declare its types in strictly ascending order and
// never the reserved type 0.
func parseHeader(b []byte) (h snapshot.Header, next int, ok bool) {
	if len(b) < v1HeaderLen || string(b[:8]) != snapshot.Magic {
		return h, 0, false
	}
	h.Version = binary.BigEndian.Uint16(b[8:])
	if h.Version == 0 || h.Version > snapshot.FormatVersion {
		return h, 0, false
	}
	h.Index = binary.BigEndian.Uint64(b[10:])
	h.Term = binary.BigEndian.Uint64(b[18:])
	if h.Version == 1 {
		return h, v1HeaderLen, true
	}
	if len(b) < v1HeaderLen+1 {
		return h, 0, false
	}
	n := int(b[v1HeaderLen])
	if len(b) < v2HeaderLen(n) {
		return h, 0, false
	}
	h.Counts = make(map[byte]uint64, n)
	prev := 0
	for k := range n {
		e := b[v1HeaderLen+1+k*countEntryLen:]
		if int(e[0]) <= prev { // type 0, a duplicate, or out of order
			return h, 0, false
		}
		prev = int(e[0])
		h.Counts[e[0]] = binary.BigEndian.Uint64(e[1:])
	}
	return h, v2HeaderLen(n), true
}

// parseRecords walks records from offset i, independently of Reader. It
// stops at a trailer tag (stop "tag"), at the end of b ("end"), or at a
// record that is cut short or too large ("bad"); next is where it stopped.
// canonical reports whether every length was a minimal varint.
func parseRecords(b []byte, i int) (recs []rec, next int, canonical bool, stop string) {
	canonical = true
	for {
		if i >= len(b) {
			return recs, i, canonical, "end"
		}
		if b[i] == 0 {
			return recs, i, canonical, "tag"
		}
		v, n := binary.Uvarint(b[i+1:])
		if n <= 0 || v > snapshot.MaxRecordSize || uint64(len(b)-(i+1+n)) < v {
			return recs, i, canonical, "bad"
		}
		if n != len(binary.AppendUvarint(nil, v)) {
			canonical = false
		}
		start := i + 1 + n
		recs = append(recs, rec{b[i], b[start : start+int(v)]})
		i = start + int(v)
	}
}

// countsMatch reports whether recs are exactly what counts declares (a type
// declared with count 0 and a type not declared both mean no records).
func countsMatch(counts map[byte]uint64, recs []rec) bool {
	got := countsOf(recs)
	for typ := range 256 {
		if got[byte(typ)] != counts[byte(typ)] {
			return false
		}
	}
	return true
}

// oracle decides, independently of Reader, whether b is exactly one valid
// snapshot, and what it holds.
func oracle(b []byte) (h snapshot.Header, recs []rec, canonical, ok bool) {
	h, i, ok := parseHeader(b)
	if !ok {
		return h, nil, false, false
	}
	recs, i, canonical, stop := parseRecords(b, i)
	if stop != "tag" || len(b)-i != trailerLen { // nothing may follow the trailer
		return h, nil, false, false
	}
	count := binary.BigEndian.Uint64(b[i+1:])
	sum := binary.BigEndian.Uint32(b[i+9:])
	if count != uint64(len(recs)) || sum != crc32.Checksum(b[:i+9], castagnoli) {
		return h, nil, false, false
	}
	if h.Counts != nil && !countsMatch(h.Counts, recs) {
		return h, nil, false, false
	}
	return h, recs, canonical, true
}

// specOf is the documented encoding of h and recs in the given version,
// with h's count section as it is (zero counts included).
func specOf(version uint16, h snapshot.Header, recs []rec) []byte {
	return specStream{
		version: version, index: h.Index, term: h.Term, recs: recs,
		counts: entriesOf(h.Counts), forgeCounts: true,
	}.bytes()
}

// Modes of FuzzReader's input.
const (
	modeRaw       = iota // the input is the file
	modeSealedV1         // index, term and records of a version 1 file
	modeSealedV2         // index, term, count section and records of a version 2 file
	modeCountedV2        // index, term and records of a version 2 file whose header declares them
	modes
)

// sealedInput turns data into a file with a correct checksum and record
// count, cut before its first malformed record, according to mode.
func sealedInput(data []byte, mode int) []byte {
	version := uint16(1)
	if mode != modeSealedV1 {
		version = 2
	}
	body := []byte(snapshot.Magic)
	body = binary.BigEndian.AppendUint16(body, version)
	body = append(body, data...)
	start := v1HeaderLen
	if mode == modeSealedV2 {
		if len(body) < v1HeaderLen+1 {
			body = append(body, make([]byte, v1HeaderLen+1-len(body))...)
		}
		start = v2HeaderLen(int(body[v1HeaderLen]))
	}
	if len(body) < start {
		body = append(body, make([]byte, start-len(body))...)
	}
	recs, next, _, _ := parseRecords(body, start)
	if mode == modeCountedV2 {
		// Insert a count section that declares the records found.
		hdr := specStream{version: 2, recs: recs}.header()
		body = append(append(body[:v1HeaderLen:v1HeaderLen], hdr[v1HeaderLen:]...), body[v1HeaderLen:next]...)
		next = len(body)
	}
	return seal(body[:next], uint64(len(recs)))
}

func addReaderSeeds(f *testing.F) {
	recs := []rec{{1, []byte("hello")}, {2, nil}, {3, []byte("world")}, {1, []byte("again")}}
	v2 := encodeCounted(f, snapshot.Header{Index: 1234, Term: 7}, recs)
	v1 := specStream{version: 1, index: 1234, term: 7, recs: recs}.bytes()
	for _, full := range [][]byte{v1, v2} {
		f.Add(full, uint8(modeRaw))
		f.Add(full[:len(full)-1], uint8(modeRaw))
		f.Add(append(bytes.Clone(full), 0), uint8(modeRaw))
	}
	f.Add(v1[v1HeaderLen-16:len(v1)-trailerLen], uint8(modeSealedV1))
	f.Add(v1[v1HeaderLen-16:len(v1)-trailerLen], uint8(modeCountedV2))
	f.Add(v2[v1HeaderLen-16:len(v2)-trailerLen], uint8(modeSealedV2))
	f.Add(encodeCounted(f, snapshot.Header{}, nil), uint8(modeRaw))
	f.Add(encodeCounted(f, snapshot.Header{Index: 1}, []rec{{255, bytes.Repeat([]byte{0xFF}, 200)}}), uint8(modeRaw))
	f.Add(specStream{version: 1}.bytes(), uint8(modeRaw))
	f.Add(specStream{version: 3}.bytes(), uint8(modeRaw))
	// Count sections that a Reader must refuse: a type declared twice, out
	// of order, the reserved type 0, one record too many or too few.
	forged := func(es ...countEntry) []byte {
		return specStream{version: 2, recs: recs, counts: es, forgeCounts: true}.bytes()
	}
	f.Add(forged(countEntry{1, 2}, countEntry{1, 0}, countEntry{2, 1}, countEntry{3, 1}), uint8(modeRaw))
	f.Add(forged(countEntry{2, 1}, countEntry{1, 2}, countEntry{3, 1}), uint8(modeRaw))
	f.Add(forged(countEntry{0, 0}, countEntry{1, 2}, countEntry{2, 1}, countEntry{3, 1}), uint8(modeRaw))
	f.Add(forged(countEntry{1, 1}, countEntry{2, 1}, countEntry{3, 1}), uint8(modeRaw))
	f.Add(forged(countEntry{1, 3}, countEntry{2, 1}, countEntry{3, 1}), uint8(modeRaw))
	f.Add(forged(countEntry{1, 2}, countEntry{2, 1}, countEntry{3, 1}, countEntry{9, 0}), uint8(modeRaw))
	// Every record type, and the largest header: 255 types declared.
	var every []rec
	for typ := 1; typ <= 255; typ++ {
		every = append(every, rec{byte(typ), []byte{byte(typ)}})
	}
	full := encodeCounted(f, snapshot.Header{Index: 9, Term: 9}, every)
	f.Add(full, uint8(modeRaw))
	f.Add(full[v1HeaderLen-16:len(full)-trailerLen], uint8(modeSealedV2))
	body := specStream{version: 1, index: 9, term: 9, recs: every}.body()
	f.Add(body[v1HeaderLen-16:], uint8(modeCountedV2))
	f.Add(body[v1HeaderLen-16:], uint8(modeSealedV1))
	f.Add([]byte{}, uint8(modeRaw))
	for mode := range modes {
		f.Add([]byte{}, uint8(mode))
	}
	f.Add(append(make([]byte, 16), 1, 0x80, 0x00, 2, 0x01, 'x'), uint8(modeSealedV1))
	f.Add(append(make([]byte, 16), 1, 0x80, 0x00, 2, 0x01, 'x'), uint8(modeCountedV2))
	f.Add(append(make([]byte, 16), 2, 1, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0x80, 0x00, 2, 0x01, 'x'), uint8(modeSealedV2))
	f.Add(append(make([]byte, 16), 1, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01), uint8(modeSealedV1))
}

// FuzzReader feeds arbitrary bytes to a Reader. It must not panic, it must
// accept exactly the streams that the independent oracle accepts, with the
// same header and records, every refusal must match exactly one documented
// error, and what it accepts must be what a Writer writes for that header
// and those records.
//
// In the sealed modes the input is taken as the contents of a version 1 or
// version 2 file, cut before its first malformed record, and given a
// correct trailer, so that the fuzzer also explores files that pass the
// checksum: in particular version 2 files whose counts do not match.
func FuzzReader(f *testing.F) {
	addReaderSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte, mode uint8) {
		m := int(mode % modes)
		if m != modeRaw {
			data = sealedInput(data, m)
		}
		wantH, wantRecs, canonical, wantOK := oracle(data)
		if (m == modeSealedV1 || m == modeCountedV2) && !wantOK {
			t.Fatalf("test bug: sealed input %x is invalid", data)
		}
		h, recs, err := readAll(bytes.NewReader(data))
		if (err == nil) != wantOK {
			t.Fatalf("Reader error %v, oracle says valid=%v for %x", err, wantOK, data)
		}
		if err != nil {
			if n := sentinelsMatched(err); n != 1 {
				t.Fatalf("Reader error %v matches %d documented errors, want 1", err, n)
			}
			return
		}
		if !sameHeader(h, wantH) || !equalRecs(recs, wantRecs) {
			t.Fatalf("Reader read %+v %v, oracle %+v %v", h, recs, wantH, wantRecs)
		}
		if canonical && !bytes.Equal(specOf(h.Version, h, recs), data) {
			t.Fatalf("test bug: canonical input differs from the spec encoding of what it holds")
		}
		// A Writer writes the current version: the same header (a version
		// 1 file's records counted) and records.
		wh := snapshot.Header{Index: h.Index, Term: h.Term, Counts: h.Counts}
		if wh.Counts == nil {
			wh.Counts = countsOf(recs)
		}
		out := encode(t, wh, recs)
		if want := specOf(snapshot.FormatVersion, wh, recs); !bytes.Equal(out, want) {
			t.Fatalf("Writer output differs from the spec:\n got %x\nwant %x", out, want)
		}
		if canonical && h.Version == snapshot.FormatVersion && !bytes.Equal(out, data) {
			t.Fatalf("re-encoding differs:\n got %x\nwant %x", out, data)
		}
		// Whatever the input's version and encoding, a Writer's stream for
		// the same content reads back to the same content.
		h2, recs2, err := readAll(bytes.NewReader(out))
		wh.Version = snapshot.FormatVersion
		if err != nil || !sameHeader(h2, wh) || !equalRecs(recs2, recs) {
			t.Fatalf("re-encoded stream reads back as %+v %v %v", h2, recs2, err)
		}
	})
}

// FuzzWriterRoundTrip writes arbitrary records under arbitrary declared
// counts. A model decides which calls must succeed: a record beyond its
// type's declared count is refused with ErrCountMismatch and the stream
// goes on; Close succeeds exactly when the records match the counts, and
// otherwise writes no trailer. A closed stream must be the documented
// encoding, read back the same, and every strict prefix of it be refused.
//
// adjust is a list of (type, delta) pairs applied to the exact counts of
// the records' types, so that the declared counts are often right and
// sometimes a little off.
func FuzzWriterRoundTrip(f *testing.F) {
	f.Add(uint64(1), uint64(1), []byte{}, []byte{1, 2, 3}, []byte("hello world"))
	f.Add(uint64(0), uint64(0), []byte{}, []byte{}, []byte{})
	f.Add(uint64(1<<63), uint64(99), []byte{}, []byte{0, 255, 0x80}, bytes.Repeat([]byte{0}, 300))
	f.Add(uint64(5), uint64(2), []byte{1, 0xFF}, []byte{1, 1, 2}, []byte("abcdef"))
	f.Add(uint64(5), uint64(2), []byte{2, 1}, []byte{1, 1, 2}, []byte("abcdef"))
	f.Add(uint64(5), uint64(2), []byte{7, 3}, []byte{1, 7}, []byte("abcdef"))
	f.Add(uint64(5), uint64(2), []byte{0, 0}, []byte{1}, []byte("x"))
	f.Fuzz(func(t *testing.T, index, term uint64, adjust, types, blob []byte) {
		declared := make(map[byte]uint64)
		for _, typ := range types {
			if typ != 0 {
				declared[typ]++
			}
		}
		for k := 0; k+1 < len(adjust); k += 2 {
			typ, delta := adjust[k], int64(int8(adjust[k+1]))
			declared[typ] = uint64(max(0, int64(declared[typ])+delta))
		}
		var buf bytes.Buffer
		w, err := snapshot.NewWriter(&buf, snapshot.Header{Index: index, Term: term, Counts: declared})
		if _, reserved := declared[0]; reserved {
			if err == nil {
				t.Fatal("NewWriter accepted a count for the reserved type 0")
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		var want []rec
		written := make(map[byte]uint64)
		for k, typ := range types {
			n := min(int(typ)*(k+1)%257, len(blob))
			data := blob[:n]
			blob = blob[n:]
			err := w.Record(typ, data)
			switch {
			case typ == 0:
				if err == nil {
					t.Fatal("Record accepted type 0")
				}
			case written[typ] >= declared[typ]:
				if !errors.Is(err, snapshot.ErrCountMismatch) {
					t.Fatalf("record %d of type %d, %d declared: %v, want ErrCountMismatch", written[typ]+1, typ, declared[typ], err)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				written[typ]++
				want = append(want, rec{typ, data})
			}
		}
		err = w.Close()
		if !countsMatch(declared, want) {
			if !errors.Is(err, snapshot.ErrCountMismatch) {
				t.Fatalf("Close with %v written, %v declared: %v, want ErrCountMismatch", written, declared, err)
			}
			if _, _, err := readAll(bytes.NewReader(buf.Bytes())); !errors.Is(err, snapshot.ErrTruncated) {
				t.Fatalf("stream of a refused Close reads as %v, want ErrTruncated (no trailer)", err)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		b := buf.Bytes()
		wantH := snapshot.Header{Version: snapshot.FormatVersion, Index: index, Term: term, Counts: declared}
		if spec := specOf(snapshot.FormatVersion, wantH, want); !bytes.Equal(b, spec) {
			t.Fatalf("Writer output differs from the spec:\n got %x\nwant %x", b, spec)
		}
		h, got, err := readAll(bytes.NewReader(b))
		if err != nil || !sameHeader(h, wantH) || !equalRecs(got, want) {
			t.Fatalf("read back %+v %v %v, want %+v %v", h, got, err, wantH, want)
		}
		if h.Total() != uint64(len(want)) {
			t.Fatalf("Total() = %d, want %d", h.Total(), len(want))
		}
		for _, n := range []int{0, v1HeaderLen, len(b) / 2, len(b) - trailerLen, len(b) - 1} {
			if _, _, err := readAll(bytes.NewReader(b[:n])); !errors.Is(err, snapshot.ErrTruncated) {
				t.Fatalf("prefix of %d of %d bytes: %v, want ErrTruncated", n, len(b), err)
			}
		}
	})
}
