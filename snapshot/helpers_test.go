package snapshot_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"maps"
	"slices"
	"testing"

	"github.com/coordd/coordd/snapshot"
)

// rec is one record as the tests see it.
type rec struct {
	typ  byte
	data []byte
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// v1HeaderLen is magic(8) + version(2) + index(8) + term(8): the whole
// header of a version 1 file, and the fixed part of every later one.
const v1HeaderLen = len(snapshot.Magic) + 2 + 8 + 8

// countEntryLen is type(1) + count(8), one entry of a version 2 header.
const countEntryLen = 1 + 8

// v2HeaderLen is the length of a version 2 header declaring n types: the
// fixed part, the entry count n(1), and n entries.
func v2HeaderLen(n int) int { return v1HeaderLen + 1 + n*countEntryLen }

// trailerLen is tag(1) + count(8) + crc(4).
const trailerLen = 1 + 8 + 4

// countEntry is one (type, count) entry of a version 2 header.
type countEntry struct {
	typ   byte
	count uint64
}

// specStream builds a snapshot stream by hand from the documented layout,
// independently of Writer, so that tests can forge files with a valid
// checksum but an unusual version, header, count or record encoding.
//
//	version 1: magic(8) | version u16 | index u64 | term u64 | records | trailer
//	version 2: magic(8) | version u16 | index u64 | term u64 |
//	           n u8 | n × (type u8, count u64), ascending type | records | trailer
//	record:    type u8 (1..255) | length uvarint | data
//	trailer:   0 u8 | record count u64 | CRC-32C u32 of everything before it
//
// All integers are big-endian.
type specStream struct {
	magic   string // "" means snapshot.Magic
	version uint16 // 2 and above write a count section
	index   uint64
	term    uint64
	recs    []rec
	// counts, when forgeCounts is set, is written as the count section
	// verbatim (in this order, duplicates and type 0 included). Otherwise
	// the section declares exactly recs, in ascending type order.
	counts      []countEntry
	forgeCounts bool
	// count, if non-nil, replaces the real record count in the trailer.
	count *uint64
}

// entries returns the count section s writes.
func (s specStream) entries() []countEntry {
	if s.forgeCounts {
		return s.counts
	}
	return entriesOf(countsOf(s.recs))
}

// header returns the header bytes of s.
func (s specStream) header() []byte {
	magic := s.magic
	if magic == "" {
		magic = snapshot.Magic
	}
	b := []byte(magic)
	b = binary.BigEndian.AppendUint16(b, s.version)
	b = binary.BigEndian.AppendUint64(b, s.index)
	b = binary.BigEndian.AppendUint64(b, s.term)
	if s.version >= 2 {
		es := s.entries()
		b = append(b, byte(len(es)))
		for _, e := range es {
			b = append(b, e.typ)
			b = binary.BigEndian.AppendUint64(b, e.count)
		}
	}
	return b
}

// body returns the header and records of s, without a trailer.
func (s specStream) body() []byte {
	b := s.header()
	for _, r := range s.recs {
		b = append(b, r.typ)
		b = binary.AppendUvarint(b, uint64(len(r.data)))
		b = append(b, r.data...)
	}
	return b
}

func (s specStream) bytes() []byte {
	count := uint64(len(s.recs))
	if s.count != nil {
		count = *s.count
	}
	return seal(s.body(), count)
}

// seal appends a trailer with the given record count and a correct checksum.
func seal(body []byte, count uint64) []byte {
	b := append([]byte(nil), body...)
	b = append(b, 0)
	b = binary.BigEndian.AppendUint64(b, count)
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// countsOf counts the records of each type. It never returns nil, so that a
// header built from it is a version 2 header even without records.
func countsOf(recs []rec) map[byte]uint64 {
	m := make(map[byte]uint64)
	for _, r := range recs {
		m[r.typ]++
	}
	return m
}

// entriesOf lists counts in ascending type order, as a header stores them.
func entriesOf(counts map[byte]uint64) []countEntry {
	es := make([]countEntry, 0, len(counts))
	for _, typ := range slices.Sorted(maps.Keys(counts)) {
		es = append(es, countEntry{typ, counts[typ]})
	}
	return es
}

// withCounts returns h declaring exactly the records recs.
func withCounts(h snapshot.Header, recs []rec) snapshot.Header {
	h.Counts = countsOf(recs)
	return h
}

// encode writes h and recs with the package's Writer, h.Counts as given.
func encode(t testing.TB, h snapshot.Header, recs []rec) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := snapshot.NewWriter(&buf, h)
	if err != nil {
		t.Fatalf("NewWriter: %v", err)
	}
	for i, r := range recs {
		if err := w.Record(r.typ, r.data); err != nil {
			t.Fatalf("Record %d: %v", i, err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return buf.Bytes()
}

// encodeCounted writes h and recs with a header that declares recs.
func encodeCounted(t testing.TB, h snapshot.Header, recs []rec) []byte {
	t.Helper()
	return encode(t, withCounts(h, recs), recs)
}

// readAll reads a whole stream. It returns the records read so far and the
// first error other than the io.EOF that marks a verified end.
func readAll(r io.Reader) (snapshot.Header, []rec, error) {
	sr, err := snapshot.NewReader(r)
	if err != nil {
		return snapshot.Header{}, nil, err
	}
	var recs []rec
	for {
		typ, data, err := sr.Next()
		if errors.Is(err, io.EOF) {
			return sr.Header(), recs, nil
		}
		if err != nil {
			return sr.Header(), recs, err
		}
		recs = append(recs, rec{typ, data})
	}
}

// sameHeader compares headers field by field; a nil Counts (version 1)
// differs from an empty one (version 2 without records).
func sameHeader(a, b snapshot.Header) bool {
	return a.Version == b.Version && a.Index == b.Index && a.Term == b.Term &&
		(a.Counts == nil) == (b.Counts == nil) && maps.Equal(a.Counts, b.Counts)
}

func equalRecs(a, b []rec) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].typ != b[i].typ || !bytes.Equal(a[i].data, b[i].data) {
			return false
		}
	}
	return true
}

// sentinels are the errors a Reader documents.
var sentinels = []error{
	snapshot.ErrBadMagic,
	snapshot.ErrUnsupportedVersion,
	snapshot.ErrTruncated,
	snapshot.ErrChecksum,
	snapshot.ErrRecordTooLarge,
	snapshot.ErrTrailingData,
	snapshot.ErrCountMismatch,
}

// isAny reports whether err matches one of targets.
func isAny(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

// sentinelsMatched counts the sentinels err matches.
func sentinelsMatched(err error) int {
	n := 0
	for _, s := range sentinels {
		if errors.Is(err, s) {
			n++
		}
	}
	return n
}

func u64(v uint64) *uint64 { return &v }
