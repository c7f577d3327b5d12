package fsm_test

import (
	"bytes"
	"errors"
	"reflect"
	"testing"

	"github.com/coordd/coordd/fsm"
)

// resultSamples applies a few commands and returns their results: a
// grant, a campaign that leads and one that waits, a put, a CAS conflict,
// a stale token, a missing lease, a delete with its previous value, a
// replayed put.
func resultSamples(t testing.TB) []*fsm.Result {
	t.Helper()
	s := fsm.New().State()
	var out []*fsm.Result
	idx := uint64(0)
	run := func(p fsm.Payload, key string) *fsm.Result {
		c, err := fsm.NewCommand(p)
		if err != nil {
			t.Fatal(err)
		}
		c.IdempotencyKey = key
		c.Stamp = 1_000_000_000 * int64(idx+1)
		idx++
		var res *fsm.Result
		s, res = fsm.ApplyCommand(s, idx, 1, c)
		out = append(out, res)
		return res
	}
	run(fsm.LeaseGrant{TTL: 10_000}, "")                                                            // lease 1
	run(fsm.LeaseGrant{TTL: 10_000}, "")                                                            // lease 2
	run(fsm.Campaign{Kind: fsm.KindLock, Name: "l", Lease: 1, Value: []byte("v")}, "")              // holds
	run(fsm.Campaign{Kind: fsm.KindLock, Name: "l", Lease: 2}, "")                                  // waits
	run(fsm.Campaign{Kind: fsm.KindElection, Name: "e", NewLeaseTTL: 5000, Value: []byte("x")}, "") // grants and leads
	run(fsm.KVPut{Key: "k", Value: []byte("one")}, "put-1")
	run(fsm.KVPut{Key: "k", Value: []byte("two"), Mode: fsm.PutCAS, CASIndex: 1}, "")
	run(fsm.Proclaim{Name: "l", Lease: 1, Token: 99, Value: []byte("w")}, "")
	run(fsm.Resign{Name: "l", Lease: 77}, "")
	run(fsm.KVPut{Key: "k2", Value: []byte("z"), Lease: 123}, "")
	run(fsm.KVDelete{Key: "k"}, "")
	run(fsm.KVPut{Key: "k", Value: []byte("one")}, "put-1")   // replayed
	run(fsm.KVPut{Key: "k", Value: []byte("other")}, "put-1") // key reused
	run(fsm.Resign{Name: "l", Lease: 1, Token: 3}, "")
	return out
}

func TestResultRoundTrip(t *testing.T) {
	samples := resultSamples(t)
	var sawErr, sawDup, sawElection bool
	for i, r := range samples {
		b := fsm.EncodeResult(r)
		got, err := fsm.DecodeResult(b)
		if err != nil {
			t.Fatalf("sample %d: %v", i, err)
		}
		sawErr = sawErr || r.Err != nil
		sawDup = sawDup || r.Duplicate
		sawElection = sawElection || r.Election != nil
		if (r.Err == nil) != (got.Err == nil) || r.Err != nil && r.Err.Error() != got.Err.Error() {
			t.Fatalf("sample %d: error %v, decoded %v", i, r.Err, got.Err)
		}
		if r.Err != nil {
			for _, s := range []error{fsm.ErrCASConflict, fsm.ErrStaleToken, fsm.ErrLeaseNotFound, fsm.ErrNotHolder, fsm.ErrIdempotencyKeyReused} {
				if errors.Is(r.Err, s) != errors.Is(got.Err, s) {
					t.Fatalf("sample %d: errors.Is(%v, %v) differs after decoding", i, r.Err, s)
				}
			}
			var c1, c2 *fsm.CASConflictError
			if errors.As(r.Err, &c1) != errors.As(got.Err, &c2) || c1 != nil && *c1 != *c2 {
				t.Fatalf("sample %d: CAS conflict %+v, decoded %+v", i, c1, c2)
			}
			var s1, s2 *fsm.StaleTokenError
			if errors.As(r.Err, &s1) != errors.As(got.Err, &s2) || s1 != nil && *s1 != *s2 {
				t.Fatalf("sample %d: stale token %+v, decoded %+v", i, s1, s2)
			}
		}
		want := *r
		want.Err, got.Err = nil, nil
		want.Expired, want.Checkpointed, want.Renewed, want.Promoted, want.Token, want.Reset = nil, nil, nil, 0, nil, false
		if !reflect.DeepEqual(normalizeResult(&want), normalizeResult(got)) {
			t.Fatalf("sample %d:\n got %+v\nwant %+v", i, got, &want)
		}
	}
	if !sawErr || !sawDup || !sawElection {
		t.Fatalf("samples lack an error (%t), a duplicate (%t) or an election (%t)", sawErr, sawDup, sawElection)
	}
}

// normalizeResult makes empty slices nil, as the decoder returns them.
func normalizeResult(r *fsm.Result) *fsm.Result {
	c := *r
	fix := func(e *fsm.KVEntry) *fsm.KVEntry {
		if e == nil {
			return nil
		}
		x := *e
		if len(x.Value) == 0 {
			x.Value = nil
		}
		return &x
	}
	c.Entry, c.Prev = fix(c.Entry), fix(c.Prev)
	if c.Election != nil {
		el := *c.Election
		for _, cs := range []*[]fsm.Candidate{&el.Holders, &el.Waiting} {
			if len(*cs) == 0 {
				*cs = nil
				continue
			}
			*cs = append([]fsm.Candidate(nil), *cs...)
			for i := range *cs {
				if len((*cs)[i].Value) == 0 {
					(*cs)[i].Value = nil
				}
			}
		}
		c.Election = &el
	}
	return &c
}

func TestDecodeResultRefuses(t *testing.T) {
	b := fsm.EncodeResult(resultSamples(t)[2])
	for name, in := range map[string][]byte{
		"empty":       nil,
		"version":     append([]byte{9}, b[1:]...),
		"truncated":   b[:len(b)-1],
		"trailing":    append(append([]byte(nil), b...), 0),
		"bad bool":    {1, 0, 0, 2},
		"only header": {1},
	} {
		if _, err := fsm.DecodeResult(in); !errors.Is(err, fsm.ErrBadResult) {
			t.Errorf("%s: err = %v, want ErrBadResult", name, err)
		}
	}
}

// FuzzDecodeResult: the decoder never panics, and what it accepts
// re-encodes to bytes it decodes to the same result.
func FuzzDecodeResult(f *testing.F) {
	for _, r := range resultSamples(f) {
		f.Add(fsm.EncodeResult(r))
	}
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := fsm.DecodeResult(b)
		if err != nil {
			if !errors.Is(err, fsm.ErrBadResult) {
				t.Fatalf("error %v does not wrap ErrBadResult", err)
			}
			return
		}
		enc := fsm.EncodeResult(r)
		r2, err := fsm.DecodeResult(enc)
		if err != nil {
			t.Fatalf("re-encoded result refused: %v", err)
		}
		if enc2 := fsm.EncodeResult(r2); !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not stable:\n%x\n%x", enc, enc2)
		}
	})
}
