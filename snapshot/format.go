package snapshot

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"maps"
	"math"
	"slices"
)

// Magic opens every coordd snapshot file.
const Magic = "COORDSNP"

// FormatVersion is the version written by this build. Readers accept every
// version from 1 up to FormatVersion.
//
// Version history:
//   - 1: header with magic, version, index and term; records; trailer.
//   - 2: the header also declares how many records of each type follow,
//     and the reader checks every count against the records it read.
const FormatVersion uint16 = 2

// maxCountedTypes bounds the per-type counts a version 2 header declares.
const maxCountedTypes = 255

// MaxRecordSize bounds one record so that a corrupted length cannot make a
// reader allocate without limit.
const MaxRecordSize = 64 << 20

// Errors returned by Reader. Every one of them means the file must not be
// restored. A Writer returns ErrRecordTooLarge and ErrCountMismatch too.
var (
	// ErrBadMagic means the stream is not a coordd snapshot.
	ErrBadMagic = errors.New("snapshot: not a coordd snapshot (bad magic)")
	// ErrUnsupportedVersion means the file was written by a newer format.
	ErrUnsupportedVersion = errors.New("snapshot: unsupported format version")
	// ErrTruncated means the stream ended before its trailer.
	ErrTruncated = errors.New("snapshot: truncated")
	// ErrChecksum means the trailer's checksum or record count does not match.
	ErrChecksum = errors.New("snapshot: checksum mismatch")
	// ErrRecordTooLarge means a record declares a length above MaxRecordSize.
	ErrRecordTooLarge = errors.New("snapshot: record too large")
	// ErrTrailingData means bytes follow the trailer.
	ErrTrailingData = errors.New("snapshot: trailing data after the trailer")
	// ErrCountMismatch means the records do not match the counts the
	// header declares, or that the header's counts are malformed (a type
	// declared twice or out of order, the reserved type 0, or more than
	// 2^64-1 records in all).
	ErrCountMismatch = errors.New("snapshot: record counts do not match the header")
)

// recordTrailer is the record type reserved for the trailer.
const recordTrailer = 0

// Header is the part at the start of a snapshot file.
type Header struct {
	Version uint16 // format version the file was written with (set by readers)
	Index   uint64 // Raft index of the last entry included
	Term    uint64 // Raft term of that entry
	// Counts declares how many records of each type follow (version 2 and
	// later; nil when read from a version 1 file). A type not listed has
	// no records: a Writer given nil Counts writes a file without records.
	// The Writer refuses to close a stream that does not match, and the
	// Reader refuses a file that does not.
	//
	// Counts read from a file are only verified as the records are read:
	// do not size allocations by them before Next has returned io.EOF.
	Counts map[byte]uint64
}

// Total is the number of records the header declares. A sum beyond the
// range of uint64 (which neither a Writer nor a Reader accepts) saturates
// at math.MaxUint64.
func (h Header) Total() uint64 {
	var n uint64
	for _, c := range h.Counts {
		if c > math.MaxUint64-n {
			return math.MaxUint64
		}
		n += c
	}
	return n
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Writer writes a snapshot stream. It is not safe for concurrent use.
type Writer struct {
	w        *bufio.Writer
	crc      hash.Hash32
	count    uint64
	declared [256]uint64 // copied from the header: the caller may reuse its map
	written  [256]uint64
	buf      [binary.MaxVarintLen64 + 1]byte
	err      error
}

// headerSize is the size of the fixed part of the header (magic, version,
// index, term), common to every version.
const headerSize = len(Magic) + 2 + 16

// NewWriter writes the header (in FormatVersion) to w and returns a Writer
// for the records. h.Version is ignored.
func NewWriter(w io.Writer, h Header) (*Writer, error) {
	if len(h.Counts) > maxCountedTypes {
		return nil, fmt.Errorf("snapshot: new writer: %w: %d record types declared, at most %d",
			ErrCountMismatch, len(h.Counts), maxCountedTypes)
	}
	if _, ok := h.Counts[recordTrailer]; ok {
		return nil, fmt.Errorf("snapshot: new writer: %w: count for the reserved type 0", ErrCountMismatch)
	}
	sw := &Writer{w: bufio.NewWriterSize(w, 64<<10), crc: crc32.New(castagnoli)}
	var total uint64
	for typ, c := range h.Counts {
		if c > math.MaxUint64-total {
			// The trailer could not count them: Close would never succeed.
			return nil, fmt.Errorf("snapshot: new writer: %w: more than %d records in all",
				ErrCountMismatch, uint64(math.MaxUint64))
		}
		total += c
		sw.declared[typ] = c
	}
	var hdr [headerSize + 1]byte
	copy(hdr[:], Magic)
	binary.BigEndian.PutUint16(hdr[len(Magic):], FormatVersion)
	binary.BigEndian.PutUint64(hdr[len(Magic)+2:], h.Index)
	binary.BigEndian.PutUint64(hdr[len(Magic)+10:], h.Term)
	hdr[headerSize] = byte(len(h.Counts))
	sw.write(hdr[:])
	for typ := range 256 { // in type order: the file does not depend on map order
		if c, ok := h.Counts[byte(typ)]; ok {
			var e [9]byte
			e[0] = byte(typ)
			binary.BigEndian.PutUint64(e[1:], c)
			sw.write(e[:])
		}
	}
	if sw.err != nil {
		return nil, fmt.Errorf("snapshot: write header: %w", sw.err)
	}
	return sw, nil
}

func (sw *Writer) write(p []byte) {
	if sw.err != nil {
		return
	}
	sw.crc.Write(p)
	_, sw.err = sw.w.Write(p)
}

// Record writes one record of the given type (1..255). A record beyond the
// count the header declared for its type is refused with ErrCountMismatch
// and not written.
func (sw *Writer) Record(typ byte, data []byte) error {
	if typ == recordTrailer {
		return fmt.Errorf("snapshot: record type 0 is reserved")
	}
	if len(data) > MaxRecordSize {
		return ErrRecordTooLarge
	}
	if sw.err != nil {
		// The stream is already broken: report the cause, not a count.
		return fmt.Errorf("snapshot: write record: %w", sw.err)
	}
	if sw.written[typ] >= sw.declared[typ] {
		return fmt.Errorf("%w: record %d of type %d, header declares %d",
			ErrCountMismatch, sw.written[typ]+1, typ, sw.declared[typ])
	}
	sw.buf[0] = typ
	n := binary.PutUvarint(sw.buf[1:], uint64(len(data)))
	sw.write(sw.buf[:n+1])
	sw.write(data)
	sw.count++
	sw.written[typ]++
	if sw.err != nil {
		return fmt.Errorf("snapshot: write record: %w", sw.err)
	}
	return nil
}

// Close writes the trailer (record count and checksum) and flushes. It does
// not close the underlying writer. It fails, writing no trailer, when the
// records written do not match the counts the header declared: such a file
// could never be read back.
func (sw *Writer) Close() error {
	if sw.err != nil {
		return fmt.Errorf("snapshot: write trailer: %w", sw.err)
	}
	if err := checkCounts(&sw.declared, &sw.written); err != nil {
		return fmt.Errorf("snapshot: close: %w", err)
	}
	var tr [1 + 8 + 4]byte
	tr[0] = recordTrailer
	binary.BigEndian.PutUint64(tr[1:], sw.count)
	sw.write(tr[:9])
	binary.BigEndian.PutUint32(tr[9:], sw.crc.Sum32())
	if sw.err == nil {
		_, sw.err = sw.w.Write(tr[9:])
	}
	if sw.err == nil {
		sw.err = sw.w.Flush()
	}
	if sw.err != nil {
		return fmt.Errorf("snapshot: write trailer: %w", sw.err)
	}
	return nil
}

// Reader reads and verifies a snapshot stream.
type Reader struct {
	r      *bufio.Reader
	crc    hash.Hash32
	header Header
	count  uint64
	// counted is set for version 2 and later headers; declared holds their
	// counts, apart from header.Counts, which Header hands out.
	counted  bool
	declared [256]uint64
	read     [256]uint64
	done     bool
}

// NewReader reads and checks the header.
func NewReader(r io.Reader) (*Reader, error) {
	sr := &Reader{r: bufio.NewReaderSize(r, 64<<10), crc: crc32.New(castagnoli)}
	var hdr [headerSize]byte
	if err := sr.readFull(hdr[:]); err != nil {
		return nil, fmt.Errorf("snapshot: read header: %w", err)
	}
	if string(hdr[:len(Magic)]) != Magic {
		return nil, ErrBadMagic
	}
	sr.header.Version = binary.BigEndian.Uint16(hdr[len(Magic):])
	if sr.header.Version == 0 || sr.header.Version > FormatVersion {
		return nil, fmt.Errorf("%w: file has %d, this build reads 1..%d",
			ErrUnsupportedVersion, sr.header.Version, FormatVersion)
	}
	sr.header.Index = binary.BigEndian.Uint64(hdr[len(Magic)+2:])
	sr.header.Term = binary.BigEndian.Uint64(hdr[len(Magic)+10:])
	if sr.header.Version >= 2 {
		if err := sr.readCounts(); err != nil {
			return nil, err
		}
	}
	return sr, nil
}

// readCounts reads a version 2 header's per-type record counts: n (at most
// 255) entries of type and count, in strictly ascending type order.
func (sr *Reader) readCounts() error {
	var n [1]byte
	if err := sr.readFull(n[:]); err != nil {
		return fmt.Errorf("snapshot: read header counts: %w", err)
	}
	sr.counted = true
	sr.header.Counts = make(map[byte]uint64, n[0])
	var total uint64
	var prev byte // the type declared last; types ascend from above the reserved 0
	for k := range int(n[0]) {
		var e [9]byte
		if err := sr.readFull(e[:]); err != nil {
			return fmt.Errorf("snapshot: read header count %d of %d: %w", k+1, n[0], err)
		}
		typ, c := e[0], binary.BigEndian.Uint64(e[1:])
		switch {
		case typ == recordTrailer:
			return fmt.Errorf("snapshot: header: %w: count for the reserved type 0", ErrCountMismatch)
		case typ == prev:
			return fmt.Errorf("snapshot: header: %w: type %d declared twice", ErrCountMismatch, typ)
		case typ < prev:
			return fmt.Errorf("snapshot: header: %w: type %d declared after type %d, not in ascending order",
				ErrCountMismatch, typ, prev)
		case c > math.MaxUint64-total:
			return fmt.Errorf("snapshot: header: %w: more than %d records in all", ErrCountMismatch, uint64(math.MaxUint64))
		}
		total += c
		prev = typ
		sr.declared[typ] = c
		sr.header.Counts[typ] = c
	}
	return nil
}

// checkCounts compares the records of each type with what a header
// declared.
func checkCounts(declared, got *[256]uint64) error {
	for typ, n := range got {
		if want := declared[typ]; n != want {
			return fmt.Errorf("%w: %d records of type %d, header declares %d", ErrCountMismatch, n, typ, want)
		}
	}
	return nil
}

// Header returns the header read by NewReader. Its Counts map is the
// caller's: changing it does not change what the Reader verifies.
func (sr *Reader) Header() Header {
	h := sr.header
	h.Counts = maps.Clone(h.Counts) // nil stays nil (version 1)
	return h
}

func (sr *Reader) readFull(p []byte) error {
	if _, err := io.ReadFull(sr.r, p); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return ErrTruncated
		}
		return err
	}
	sr.crc.Write(p)
	return nil
}

// readErr marks an error from the underlying reader inside ReadUvarint.
type readErr struct{ err error }

func (e readErr) Error() string { return e.err.Error() }
func (e readErr) Unwrap() error { return e.err }

func isReadErr(err error) bool {
	var re readErr
	return errors.As(err, &re)
}

type crcByteReader struct{ sr *Reader }

func (c crcByteReader) ReadByte() (byte, error) {
	b, err := c.sr.r.ReadByte()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return 0, ErrTruncated
		}
		return 0, readErr{err}
	}
	c.sr.crc.Write([]byte{b})
	return b, nil
}

// Next returns the next record. It returns io.EOF after the trailer has been
// read and verified; any other error means the file is unusable.
func (sr *Reader) Next() (typ byte, data []byte, err error) {
	if sr.done {
		return 0, nil, io.EOF
	}
	var t [1]byte
	if err := sr.readFull(t[:]); err != nil {
		return 0, nil, fmt.Errorf("snapshot: record %d: %w", sr.count, err)
	}
	if t[0] == recordTrailer {
		return 0, nil, sr.finish()
	}
	n, err := binary.ReadUvarint(crcByteReader{sr})
	if err != nil {
		if !errors.Is(err, ErrTruncated) && !errors.Is(err, io.EOF) && !isReadErr(err) {
			// The only other failure is a length that overflows 64 bits.
			err = fmt.Errorf("%w: %v", ErrRecordTooLarge, err)
		}
		return 0, nil, fmt.Errorf("snapshot: record %d length: %w", sr.count, err)
	}
	if sr.counted && sr.read[t[0]] >= sr.declared[t[0]] {
		return 0, nil, fmt.Errorf("snapshot: record %d: %w: more records of type %d than the %d declared",
			sr.count, ErrCountMismatch, t[0], sr.declared[t[0]])
	}
	if n > MaxRecordSize {
		return 0, nil, fmt.Errorf("snapshot: record %d: %w (%d bytes)", sr.count, ErrRecordTooLarge, n)
	}
	if data, err = sr.readRecord(n); err != nil {
		return 0, nil, fmt.Errorf("snapshot: record %d: %w", sr.count, err)
	}
	sr.crc.Write(data)
	sr.count++
	sr.read[t[0]]++
	return t[0], data, nil
}

// recordChunk is the most readRecord allocates ahead of the data read.
const recordChunk = 1 << 20

// readRecord reads a record's n bytes. A record of up to recordChunk bytes
// takes one allocation of exactly n bytes. A larger one grows as its data
// arrives instead of trusting the declared length: a corrupt 30-byte file
// must not cost a 64 MiB allocation. (A bytes.Buffer filled by io.CopyN
// doubled every record's allocation and cleared it: most of the time of a
// restore of 60 MiB of 4 KiB values.)
func (sr *Reader) readRecord(n uint64) ([]byte, error) {
	data := make([]byte, 0, min(n, recordChunk))
	for uint64(len(data)) < n {
		k := int(min(n-uint64(len(data)), recordChunk))
		data = slices.Grow(data, k)
		at := len(data)
		data = data[:at+k]
		if _, err := io.ReadFull(sr.r, data[at:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				err = ErrTruncated
			}
			return nil, err
		}
	}
	return data, nil
}

func (sr *Reader) finish() error {
	var cnt [8]byte
	if err := sr.readFull(cnt[:]); err != nil {
		return fmt.Errorf("snapshot: trailer: %w", err)
	}
	want := sr.crc.Sum32()
	var sum [4]byte
	if _, err := io.ReadFull(sr.r, sum[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = ErrTruncated
		}
		return fmt.Errorf("snapshot: trailer: %w", err)
	}
	if got := binary.BigEndian.Uint64(cnt[:]); got != sr.count {
		return fmt.Errorf("%w: trailer counts %d records, read %d", ErrChecksum, got, sr.count)
	}
	if got := binary.BigEndian.Uint32(sum[:]); got != want {
		return fmt.Errorf("%w: stored %08x, computed %08x", ErrChecksum, got, want)
	}
	if sr.counted {
		if err := checkCounts(&sr.declared, &sr.read); err != nil {
			return fmt.Errorf("snapshot: trailer: %w", err)
		}
	}
	// Nothing may follow the trailer: extra bytes mean the file is not
	// what was written.
	switch _, err := sr.r.ReadByte(); {
	case err == nil:
		return fmt.Errorf("%w: data after the trailer", ErrTrailingData)
	case !errors.Is(err, io.EOF):
		return fmt.Errorf("snapshot: after trailer: %w", err)
	}
	sr.done = true
	return io.EOF
}
