package snapshot

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
)

// Magic opens every coordd snapshot file.
const Magic = "COORDSNP"

// FormatVersion is the version written by this build. Readers accept every
// version from 1 up to FormatVersion.
const FormatVersion uint16 = 1

// MaxRecordSize bounds one record so that a corrupted length cannot make a
// reader allocate without limit.
const MaxRecordSize = 64 << 20

// Errors returned by Reader. Every one of them means the file must not be
// restored.
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
)

// recordTrailer is the record type reserved for the trailer.
const recordTrailer = 0

// Header is the fixed part at the start of a snapshot file.
type Header struct {
	Version uint16 // format version the file was written with
	Index   uint64 // Raft index of the last entry included
	Term    uint64 // Raft term of that entry
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Writer writes a snapshot stream. It is not safe for concurrent use.
type Writer struct {
	w     *bufio.Writer
	crc   hash.Hash32
	count uint64
	buf   [binary.MaxVarintLen64 + 1]byte
	err   error
}

// NewWriter writes the header to w and returns a Writer for the records.
func NewWriter(w io.Writer, h Header) (*Writer, error) {
	sw := &Writer{w: bufio.NewWriterSize(w, 64<<10), crc: crc32.New(castagnoli)}
	var hdr [len(Magic) + 2 + 16]byte
	copy(hdr[:], Magic)
	binary.BigEndian.PutUint16(hdr[len(Magic):], FormatVersion)
	binary.BigEndian.PutUint64(hdr[len(Magic)+2:], h.Index)
	binary.BigEndian.PutUint64(hdr[len(Magic)+10:], h.Term)
	sw.write(hdr[:])
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

// Record writes one record of the given type (1..255).
func (sw *Writer) Record(typ byte, data []byte) error {
	if typ == recordTrailer {
		return fmt.Errorf("snapshot: record type 0 is reserved")
	}
	if len(data) > MaxRecordSize {
		return ErrRecordTooLarge
	}
	sw.buf[0] = typ
	n := binary.PutUvarint(sw.buf[1:], uint64(len(data)))
	sw.write(sw.buf[:n+1])
	sw.write(data)
	sw.count++
	if sw.err != nil {
		return fmt.Errorf("snapshot: write record: %w", sw.err)
	}
	return nil
}

// Close writes the trailer (record count and checksum) and flushes. It does
// not close the underlying writer.
func (sw *Writer) Close() error {
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
	done   bool
}

// NewReader reads and checks the header.
func NewReader(r io.Reader) (*Reader, error) {
	sr := &Reader{r: bufio.NewReaderSize(r, 64<<10), crc: crc32.New(castagnoli)}
	var hdr [len(Magic) + 2 + 16]byte
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
	return sr, nil
}

// Header returns the header read by NewReader.
func (sr *Reader) Header() Header { return sr.header }

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
	if n > MaxRecordSize {
		return 0, nil, fmt.Errorf("snapshot: record %d: %w (%d bytes)", sr.count, ErrRecordTooLarge, n)
	}
	// Grow the buffer as data arrives instead of trusting the declared
	// length: a corrupt 30-byte file must not cost a 64 MiB allocation.
	var buf bytes.Buffer
	buf.Grow(int(min(n, 1<<20)))
	if _, err := io.CopyN(&buf, sr.r, int64(n)); err != nil {
		if errors.Is(err, io.EOF) {
			err = ErrTruncated
		}
		return 0, nil, fmt.Errorf("snapshot: record %d: %w", sr.count, err)
	}
	data = buf.Bytes()
	sr.crc.Write(data)
	sr.count++
	return t[0], data, nil
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
