// Package snapshot defines the framing of coordd snapshot files: a header
// (magic, format version, Raft index and term, and from version 2 the number
// of records of each type), a stream of typed records, and a trailer with the
// record count and a CRC-32C checksum over everything before it. Files of
// every earlier version stay readable.
//
// The layout, fixed-size integers big-endian:
//
//	file:      header | record* | trailer
//	header v1: magic "COORDSNP" | version u16 | index u64 | term u64
//	header v2: the v1 fields | n u8 | n × (type u8, count u64)
//	           (types 1..255, strictly ascending)
//	record:    type u8 (1..255) | length uvarint | data
//	trailer:   0 u8 | record count u64 | CRC-32C (Castagnoli) u32
//
// The checksum covers every byte before it, the trailer's tag and count
// included. Nothing may follow the trailer.
//
// The package knows nothing about what the records mean; fsm/ decides that.
// A Reader verifies the trailer only when the whole stream has been read, so
// callers must build new state on the side and swap it in only after Next has
// returned io.EOF: a truncated or corrupted file then changes nothing.
package snapshot
