// Package snapshot defines the framing of coordd snapshot files: a header
// (magic, format version, Raft index and term), a stream of typed records, and
// a trailer with the record count and a CRC-32C checksum over everything
// before it.
//
// The package knows nothing about what the records mean; fsm/ decides that.
// A Reader verifies the trailer only when the whole stream has been read, so
// callers must build new state on the side and swap it in only after Next has
// returned io.EOF: a truncated or corrupted file then changes nothing.
package snapshot
