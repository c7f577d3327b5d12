package fsm

// EncodeV1 returns c in envelope version 1 (no checksum), as builds before
// the checksum wrote it: old logs hold such entries.
func (c Command) EncodeV1() []byte { return c.encode(envelopeV1, 0) }

// mustCommand is NewCommand for a payload the test knows is valid.
func mustCommand(p Payload) Command {
	c, err := NewCommand(p)
	if err != nil {
		panic(err)
	}
	return c
}

// SetState replaces f's state (benchmarks that start every run from one
// prepared state).
func (f *FSM) SetState(s *State) { f.state.Store(s) }
