package fsm

// EncodeV1 returns c in envelope version 1 (no checksum), as builds before
// the checksum wrote it: old logs hold such entries.
func (c Command) EncodeV1() []byte { return c.encode(envelopeV1, 0) }
