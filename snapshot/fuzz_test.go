package snapshot_test

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"testing"

	"github.com/coordd/coordd/snapshot"
)

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

// oracle decides, independently of Reader, whether b starts with a valid
// snapshot, and what it holds. end is the length of that snapshot in b.
func oracle(b []byte) (h snapshot.Header, recs []rec, end int, canonical, ok bool) {
	if len(b) < headerLen || string(b[:8]) != snapshot.Magic {
		return h, nil, 0, false, false
	}
	h.Version = binary.BigEndian.Uint16(b[8:])
	if h.Version == 0 || h.Version > snapshot.FormatVersion {
		return h, nil, 0, false, false
	}
	h.Index = binary.BigEndian.Uint64(b[10:])
	h.Term = binary.BigEndian.Uint64(b[18:])
	recs, i, canonical, stop := parseRecords(b, headerLen)
	if stop != "tag" || len(b)-i < trailerLen {
		return h, nil, 0, false, false
	}
	count := binary.BigEndian.Uint64(b[i+1:])
	sum := binary.BigEndian.Uint32(b[i+9:])
	if count != uint64(len(recs)) || sum != crc32.Checksum(b[:i+9], castagnoli) {
		return h, nil, 0, false, false
	}
	return h, recs, i + trailerLen, canonical, true
}

func addSeeds(f *testing.F) {
	full := encode(f, snapshot.Header{Index: 1234, Term: 7}, []rec{{1, []byte("hello")}, {2, nil}, {3, []byte("world")}})
	f.Add(full, false)
	f.Add(full[:len(full)-1], false)
	f.Add(full[headerLen-16:len(full)-trailerLen], true)
	f.Add(encode(f, snapshot.Header{}, nil), false)
	f.Add(encode(f, snapshot.Header{Index: 1}, []rec{{255, bytes.Repeat([]byte{0xFF}, 200)}}), false)
	f.Add(specStream{version: 2}.bytes(), false)
	f.Add([]byte{}, false)
	f.Add([]byte{}, true)
	f.Add(append(make([]byte, 16), 1, 0x80, 0x00, 2, 0x01, 'x'), true)
	f.Add(append(make([]byte, 16), 1, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01), true)
}

// FuzzReader feeds arbitrary bytes to a Reader. It must not panic, it must
// accept exactly the streams that the independent oracle accepts, with the
// same header and records, and what it accepts must be what a Writer writes
// for that header and those records.
//
// With sealed set, the input is taken as the index, term and records of a
// version-1 file, cut before its first malformed record, and given a correct
// trailer, so that the fuzzer also explores files that pass the checksum.
func FuzzReader(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte, sealed bool) {
		if sealed {
			body := []byte(snapshot.Magic)
			body = binary.BigEndian.AppendUint16(body, 1)
			body = append(body, data...)
			if len(body) < headerLen {
				body = append(body, make([]byte, headerLen-len(body))...)
			}
			recs, next, _, _ := parseRecords(body, headerLen)
			data = seal(body[:next], uint64(len(recs)))
		}
		wantH, wantRecs, end, canonical, wantOK := oracle(data)
		h, recs, err := readAll(bytes.NewReader(data))
		if sealed && !wantOK {
			t.Fatalf("test bug: sealed input %x is invalid", data)
		}
		if (err == nil) != wantOK {
			t.Fatalf("Reader error %v, oracle says valid=%v for %x", err, wantOK, data)
		}
		if err != nil {
			return
		}
		if h != wantH || !equalRecs(recs, wantRecs) {
			t.Fatalf("Reader read %+v %v, oracle %+v %v", h, recs, wantH, wantRecs)
		}
		out := encode(t, snapshot.Header{Index: h.Index, Term: h.Term}, recs)
		if canonical && !bytes.Equal(out, data[:end]) {
			t.Fatalf("re-encoding differs:\n got %x\nwant %x", out, data[:end])
		}
		// Whatever the input's encoding, a Writer's stream for the same
		// content reads back to the same content.
		h2, recs2, err := readAll(bytes.NewReader(out))
		if err != nil || h2 != h || !equalRecs(recs2, recs) {
			t.Fatalf("re-encoded stream reads back as %+v %v %v", h2, recs2, err)
		}
	})
}

// FuzzWriterRoundTrip writes arbitrary records and reads them back; every
// strict prefix of the file must be refused.
func FuzzWriterRoundTrip(f *testing.F) {
	f.Add(uint64(1), uint64(1), []byte{1, 2, 3}, []byte("hello world"))
	f.Add(uint64(0), uint64(0), []byte{}, []byte{})
	f.Add(uint64(1<<63), uint64(99), []byte{0, 255, 0x80}, bytes.Repeat([]byte{0}, 300))
	f.Fuzz(func(t *testing.T, index, term uint64, types, blob []byte) {
		var buf bytes.Buffer
		w, err := snapshot.NewWriter(&buf, snapshot.Header{Index: index, Term: term})
		if err != nil {
			t.Fatal(err)
		}
		var want []rec
		for k, typ := range types {
			n := min(int(typ)*(k+1)%257, len(blob))
			data := blob[:n]
			blob = blob[n:]
			err := w.Record(typ, data)
			if typ == 0 {
				if err == nil {
					t.Fatal("Record accepted type 0")
				}
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, rec{typ, data})
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		b := buf.Bytes()
		h, got, err := readAll(bytes.NewReader(b))
		if err != nil || h.Index != index || h.Term != term || !equalRecs(got, want) {
			t.Fatalf("read back %+v %v %v, want %d %d %v", h, got, err, index, term, want)
		}
		for _, n := range []int{0, len(b) / 2, len(b) - trailerLen, len(b) - 1} {
			if _, _, err := readAll(bytes.NewReader(b[:n])); err == nil {
				t.Fatalf("prefix of %d of %d bytes accepted", n, len(b))
			}
		}
	})
}
