package fsm_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/coordd/coordd/fsm"
)

func equalCommands(a, b fsm.Command) bool {
	return a.Type == b.Type && a.Version == b.Version && a.IdempotencyKey == b.IdempotencyKey &&
		a.Stamp == b.Stamp && bytes.Equal(a.Payload, b.Payload)
}

func TestEncodeFollowsTheDocumentedEnvelopeLayout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cmd  fsm.Command
		want []byte
	}{
		{
			"small fields",
			fsm.Command{Type: fsm.CmdKVPut, Version: 1, IdempotencyKey: "k", Stamp: -1, Payload: []byte("pq")},
			[]byte{0xC0, 0x02, 0x01, 0x01, 0x01, 0x01, 'k', 0x02, 'p', 'q'},
		},
		{
			"zero command",
			fsm.Command{},
			[]byte{0xC0, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00},
		},
		{
			"multi-byte varints",
			fsm.Command{Type: 200, Version: 255, Stamp: 300},
			[]byte{0xC0, 0x02, 0xC8, 0x01, 0xFF, 0x01, 0xD8, 0x04, 0x00, 0x00},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			want := withCRC(tt.want)
			if got := tt.cmd.Encode(); !bytes.Equal(got, want) {
				t.Fatalf("Encode = % x, want % x", got, want)
			}
			got, err := fsm.DecodeCommand(want)
			if err != nil || !equalCommands(got, tt.cmd) {
				t.Fatalf("DecodeCommand = %+v, %v; want %+v", got, err, tt.cmd)
			}
			// The same command as a version 1 entry (no checksum), as
			// logs written before version 2 hold it, still decodes.
			v1 := cat([]byte{0xC0, 0x01}, tt.want[2:])
			if got := tt.cmd.EncodeV1(); !bytes.Equal(got, v1) {
				t.Fatalf("EncodeV1 = % x, want % x", got, v1)
			}
			got, err = fsm.DecodeCommand(v1)
			if err != nil || !equalCommands(got, tt.cmd) {
				t.Fatalf("DecodeCommand(v1) = %+v, %v; want %+v", got, err, tt.cmd)
			}
		})
	}
}

// withCRC appends the CRC-32C trailer of envelope version 2.
func withCRC(b []byte) []byte {
	return binary.LittleEndian.AppendUint32(bytes.Clone(b), crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
}

// TestDecodeCommandDetectsEveryFlippedBit: a bit flipped anywhere in a
// version 2 entry (envelope, payload or checksum) is refused as corrupt, even
// where the entry would still parse, and every burst of up to 32 bits too
// (CRC-32C detects all of them).
func TestDecodeCommandDetectsEveryFlippedBit(t *testing.T) {
	t.Parallel()
	cmds := []fsm.Command{
		cmdOf(fsm.KVPut{Key: "config/color", Value: []byte("blue"), Mode: fsm.PutCAS, CASIndex: 7}),
		cmdOf(fsm.MemberSet{fsm.Member{ID: "n1", RaftAddr: "10.0.0.1:7201", HTTPAddr: "10.0.0.1:7101"}}),
		{Type: fsm.CmdKVPut, Version: 1, IdempotencyKey: "idem", Stamp: 1 << 60, Payload: bytes.Repeat([]byte{0xAA}, 300)},
	}
	for _, c := range cmds {
		b := c.Encode()
		for i := range b {
			for bit := range 8 {
				bad := bytes.Clone(b)
				bad[i] ^= 1 << bit
				got, err := fsm.DecodeCommand(bad)
				if !errors.Is(err, fsm.ErrBadCommand) {
					t.Fatalf("%s: bit %d of byte %d flipped: decoded %+v, %v; want ErrBadCommand", c.Type, bit, i, got, err)
				}
			}
			// A 32-bit burst starting at byte i.
			bad := bytes.Clone(b)
			for j := i; j < min(i+4, len(b)); j++ {
				bad[j] ^= 0xFF
			}
			if _, err := fsm.DecodeCommand(bad); !errors.Is(err, fsm.ErrBadCommand) {
				t.Fatalf("%s: burst at byte %d: %v, want ErrBadCommand", c.Type, i, err)
			}
		}
		// Flipped inside the payload, where only the checksum can tell, the
		// error says so.
		bad := bytes.Clone(b)
		bad[len(b)-8] ^= 0x01
		if _, err := fsm.DecodeCommand(bad); err == nil || !bytes.Contains([]byte(err.Error()), []byte("checksum mismatch")) {
			t.Fatalf("%s: payload flip: %v, want a checksum mismatch", c.Type, err)
		}
	}
}

func TestCommandTypeNamesAreStable(t *testing.T) {
	t.Parallel()
	tests := map[fsm.CommandType]string{
		fsm.CmdUnknown:      "unknown(0)",
		fsm.CmdKVPut:        "kv-put",
		fsm.CmdKVDelete:     "kv-delete",
		fsm.CmdMemberSet:    "member-set",
		fsm.CmdMemberRemove: "member-remove",
		200:                 "unknown(200)",
	}
	for typ, want := range tests {
		if got := typ.String(); got != want {
			t.Errorf("CommandType(%d).String() = %q, want %q", uint8(typ), got, want)
		}
	}
	// The numbers are part of the log format.
	if fsm.CmdKVPut != 1 || fsm.CmdKVDelete != 2 || fsm.CmdMemberSet != 3 || fsm.CmdMemberRemove != 4 {
		t.Fatal("command type numbers changed")
	}
}

func randomBytes(rng *rand.Rand, max int) []byte {
	if rng.IntN(8) == 0 {
		return nil
	}
	b := make([]byte, rng.IntN(max+1))
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func randomStamp(rng *rand.Rand) int64 {
	switch rng.IntN(6) {
	case 0:
		return 0
	case 1:
		return math.MinInt64
	case 2:
		return math.MaxInt64
	case 3:
		return -rng.Int64N(1 << 20)
	default:
		return rng.Int64()
	}
}

// randomCommand returns a command of any type; typed payloads come from the
// builders so that they are valid.
func randomCommand(rng *rand.Rand) fsm.Command {
	var c fsm.Command
	switch rng.IntN(6) {
	case 0:
		c = cmdOf(fsm.KVPut{Key: string(randomBytes(rng, 20)), Value: randomBytes(rng, 100),
			Mode: fsm.PutMode(rng.IntN(3)), CASIndex: rng.Uint64()})
	case 1:
		c = cmdOf(fsm.KVDelete{Key: string(randomBytes(rng, 20)), Prefix: rng.IntN(2) == 0,
			CAS: rng.IntN(2) == 0, CASIndex: rng.Uint64()})
	case 2:
		c = cmdOf(fsm.MemberSet{fsm.Member{ID: string(randomBytes(rng, 10)), RaftAddr: string(randomBytes(rng, 10)),
			HTTPAddr: string(randomBytes(rng, 10))}})
	case 3:
		c = cmdOf(fsm.MemberRemove{ID: string(randomBytes(rng, 10))})
	case 4:
		c = fsm.Command{Type: fsm.CommandType(rng.IntN(256)), Version: uint8(rng.IntN(256)), Payload: randomBytes(rng, 300)}
	default:
		c = fsm.Command{Type: fsm.CmdUnknown}
	}
	c.IdempotencyKey = string(randomBytes(rng, 40))
	c.Stamp = randomStamp(rng)
	return c
}

func TestEveryCommandSurvivesEncodeAndDecode(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 11))
	seen := map[fsm.CommandType]bool{}
	for i := range 20000 {
		c := randomCommand(rng)
		seen[c.Type] = true
		b := c.Encode()
		got, err := fsm.DecodeCommand(b)
		if err != nil {
			t.Fatalf("case %d: DecodeCommand(%x): %v", i, b, err)
		}
		if !equalCommands(got, c) {
			t.Fatalf("case %d: round trip changed %+v into %+v", i, c, got)
		}
		if again := got.Encode(); !bytes.Equal(again, b) {
			t.Fatalf("case %d: re-encoding differs: % x vs % x", i, again, b)
		}
	}
	for _, typ := range []fsm.CommandType{fsm.CmdUnknown, fsm.CmdKVPut, fsm.CmdKVDelete, fsm.CmdMemberSet, fsm.CmdMemberRemove} {
		if !seen[typ] {
			t.Errorf("random commands never had type %s", typ)
		}
	}
}

func TestDecodedPayloadDoesNotAliasTheInput(t *testing.T) {
	t.Parallel()
	b := fsm.Command{Type: fsm.CmdKVPut, Version: 1, Payload: []byte("payload")}.Encode()
	c, err := fsm.DecodeCommand(b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = 0
	}
	if string(c.Payload) != "payload" {
		t.Fatalf("payload changed with the input buffer: %q", c.Payload)
	}
}

func uvarint(v uint64) []byte { return binary.AppendUvarint(nil, v) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestDecodeCommandRejectsMalformedInput(t *testing.T) {
	t.Parallel()
	valid := fsm.Command{Type: fsm.CmdKVPut, Version: 1, IdempotencyKey: "id", Stamp: 5, Payload: []byte("xyz")}.Encode()
	v1 := fsm.Command{Type: fsm.CmdKVPut, Version: 1, IdempotencyKey: "id", Stamp: 5, Payload: []byte("xyz")}.EncodeV1()
	overflow := bytes.Repeat([]byte{0xFF}, 10)
	// tail is everything after the type and payload version.
	tail := []byte{0x0A, 0x00, 0x00}
	tests := []struct {
		name string
		in   []byte
	}{
		{"nil input", nil},
		{"empty input", []byte{}},
		{"only the magic", []byte{0xC0}},
		{"a zero magic byte", cat([]byte{0x00}, valid[1:])},
		{"the neighbouring magic byte", cat([]byte{0xC1}, valid[1:])},
		{"a JSON document", []byte(`{"type":"kv-put"}`)},
		{"envelope version 0", cat([]byte{0xC0}, uvarint(0), valid[2:])},
		{"envelope version 3", cat([]byte{0xC0}, uvarint(fsm.EnvelopeVersion+1), valid[2:])},
		{"version 2 without its checksum", valid[:len(valid)-4]},
		{"version 2 with a wrong checksum", cat(valid[:len(valid)-1], []byte{valid[len(valid)-1] ^ 0x80})},
		{"version 2 too short for a checksum", []byte{0xC0, 0x02, 0x00}},
		{"version 2 with a long varint version and no room for a checksum", []byte{0xC0, 0x82, 0x80, 0x80, 0x00, 0x00}},
		{"version 1 with a checksum appended", withCRC(v1)},
		{"a huge envelope version", cat([]byte{0xC0}, uvarint(1<<40), valid[2:])},
		{"an overflowing envelope version", cat([]byte{0xC0}, overflow, valid[2:])},
		{"type 256", cat([]byte{0xC0, 0x01}, uvarint(256), []byte{0x01}, tail)},
		{"type 2^63", cat([]byte{0xC0, 0x01}, uvarint(1<<63), []byte{0x01}, tail)},
		{"payload version 256", cat([]byte{0xC0, 0x01, 0x01}, uvarint(256), tail)},
		{"an overflowing stamp", cat([]byte{0xC0, 0x01, 0x01, 0x01}, overflow, []byte{0x00, 0x00})},
		{"an idempotency key longer than the input", cat([]byte{0xC0, 0x01, 0x01, 0x01, 0x00}, uvarint(5), []byte("ab"))},
		{"a payload longer than the input", cat([]byte{0xC0, 0x01, 0x01, 0x01, 0x00, 0x00}, uvarint(4), []byte("ab"))},
		{"a payload length near 2^64", cat([]byte{0xC0, 0x01, 0x01, 0x01, 0x00, 0x00}, uvarint(math.MaxUint64), []byte("ab"))},
		{"one trailing zero byte", cat(valid, []byte{0x00})},
		{"trailing garbage", cat(valid, []byte("garbage"))},
		{"two commands back to back", cat(valid, valid)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := fsm.DecodeCommand(tt.in)
			if !errors.Is(err, fsm.ErrBadCommand) {
				t.Fatalf("DecodeCommand(% x) = %+v, %v; want ErrBadCommand", tt.in, c, err)
			}
			if !equalCommands(c, fsm.Command{}) || c.Payload != nil {
				t.Fatalf("DecodeCommand returned a partial command %+v with its error", c)
			}
		})
	}
}

func TestDecodeCommandRejectsEveryTruncation(t *testing.T) {
	t.Parallel()
	cmds := []fsm.Command{
		{},
		{Type: fsm.CmdKVPut, Version: 1, IdempotencyKey: "idem-key", Stamp: math.MinInt64, Payload: bytes.Repeat([]byte("p"), 200)},
		cmdOf(fsm.KVDelete{Key: "a/b", Prefix: true}),
		cmdOf(fsm.MemberSet{fsm.Member{ID: "n1", RaftAddr: "10.0.0.1:7000", HTTPAddr: "10.0.0.1:8000"}}),
	}
	for _, c := range cmds {
		for _, b := range [][]byte{c.Encode(), c.EncodeV1()} {
			for n := range len(b) {
				if _, err := fsm.DecodeCommand(b[:n]); !errors.Is(err, fsm.ErrBadCommand) {
					t.Fatalf("%s cut to %d of %d bytes: %v, want ErrBadCommand", c.Type, n, len(b), err)
				}
			}
		}
	}
}

// FuzzDecodeCommand: DecodeCommand never panics, reports every failure as
// ErrBadCommand, and what it accepts re-encodes to a canonical form that
// decodes to the same command and encodes to the same bytes again.
func FuzzDecodeCommand(f *testing.F) {
	rng := rand.New(rand.NewPCG(1, 1))
	for range 20 {
		c := randomCommand(rng)
		f.Add(c.Encode())
		// Version 1 seeds let the fuzzer mutate fields without having to
		// fix up a checksum.
		f.Add(c.EncodeV1())
	}
	f.Add([]byte{})
	f.Add([]byte{0xC0})
	f.Add([]byte{0xC0, 0x81, 0x00, 0x80, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00})
	f.Add(cat([]byte{0xC0, 0x01}, uvarint(256), []byte{1, 0, 0, 0}))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := fsm.DecodeCommand(data)
		verr := fsm.VerifyChecksum(data)
		if verr != nil && !errors.Is(verr, fsm.ErrBadCommand) {
			t.Fatalf("VerifyChecksum error %v does not match ErrBadCommand", verr)
		}
		if err != nil {
			if !errors.Is(err, fsm.ErrBadCommand) {
				t.Fatalf("error %v does not match ErrBadCommand", err)
			}
			return
		}
		if verr != nil {
			t.Fatalf("DecodeCommand accepts what VerifyChecksum refuses: %v", verr)
		}
		enc := c.Encode()
		// A version 1 input gains the 4-byte checksum.
		if v, _ := binary.Uvarint(data[1:]); len(enc) > len(data)+4 || (v != 1 && len(enc) > len(data)) {
			t.Fatalf("canonical encoding %x is longer than the accepted input %x", enc, data)
		}
		c2, err := fsm.DecodeCommand(enc)
		if err != nil {
			t.Fatalf("re-encoded command does not decode: %v", err)
		}
		if !equalCommands(c, c2) {
			t.Fatalf("decode-encode-decode changed %+v into %+v", c, c2)
		}
		if enc2 := c2.Encode(); !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding is not stable: %x then %x", enc, enc2)
		}
	})
}

func TestVerifyChecksumAgreesWithDecodeCommand(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 5))
	for range 2000 {
		c := randomCommand(rng)
		for _, b := range [][]byte{c.Encode(), c.EncodeV1()} {
			if err := fsm.VerifyChecksum(b); err != nil {
				t.Fatalf("VerifyChecksum(% x) = %v", b, err)
			}
		}
		b := c.Encode()
		b[rng.IntN(len(b))] ^= byte(1 << rng.IntN(8))
		_, derr := fsm.DecodeCommand(b)
		verr := fsm.VerifyChecksum(b)
		if derr == nil || verr == nil && b[0] == 0xC0 && b[1] == 0x02 {
			t.Fatalf("flipped % x: DecodeCommand %v, VerifyChecksum %v", b, derr, verr)
		}
		if verr != nil && !errors.Is(verr, fsm.ErrBadCommand) {
			t.Fatalf("VerifyChecksum error %v does not match ErrBadCommand", verr)
		}
	}
}

func TestVerifyChecksumDoesNotAllocate(t *testing.T) {
	b := put("k", "v").Encode()
	if allocs := testing.AllocsPerRun(100, func() { _ = fsm.VerifyChecksum(b) }); allocs != 0 {
		t.Errorf("VerifyChecksum allocates %v times", allocs)
	}
}
