package snapshot_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"testing"

	"github.com/coordd/coordd/snapshot"
)

// rec is one record as the tests see it.
type rec struct {
	typ  byte
	data []byte
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// headerLen is magic(8) + version(2) + index(8) + term(8).
const headerLen = len(snapshot.Magic) + 2 + 8 + 8

// trailerLen is tag(1) + count(8) + crc(4).
const trailerLen = 1 + 8 + 4

// specStream builds a snapshot stream by hand from the documented layout,
// independently of Writer, so that tests can forge files with a valid
// checksum but an unusual version, count or record encoding.
type specStream struct {
	magic   string
	version uint16
	index   uint64
	term    uint64
	recs    []rec
	// count, if non-nil, replaces the real record count in the trailer.
	count *uint64
}

func (s specStream) body() []byte {
	magic := s.magic
	if magic == "" {
		magic = snapshot.Magic
	}
	b := []byte(magic)
	b = binary.BigEndian.AppendUint16(b, s.version)
	b = binary.BigEndian.AppendUint64(b, s.index)
	b = binary.BigEndian.AppendUint64(b, s.term)
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

// encode writes h and recs with the package's Writer.
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

func u64(v uint64) *uint64 { return &v }
