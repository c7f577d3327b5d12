package httpapi

import (
	"bytes"
	"slices"
	"testing"

	"github.com/coordd/coordd/fsm"
)

func TestKeepaliveIDs_RoundTrip(t *testing.T) {
	for _, ids := range [][]uint64{{1}, {1, 2, 3}, {5, 1 << 40, 1<<64 - 1}} {
		got, err := decodeKeepaliveIDs(encodeKeepaliveIDs(ids))
		if err != nil || !slices.Equal(got, ids) {
			t.Errorf("%v: got %v, %v", ids, got, err)
		}
	}
	for _, bad := range [][]byte{nil, {}, {2, 1, 1}, {1, 0}, {1, 1}, {1, 1, 0}, {1, 2, 1, 0}, {1, 1, 1, 0}, {1, 0xff}} {
		if ids, err := decodeKeepaliveIDs(bad); err == nil {
			t.Errorf("%x decoded as %v", bad, ids)
		}
	}
	ans := []keepaliveAnswer{{found: true, remaining: 0, ttl: 10}, {}, {found: true, remaining: 9999, ttl: 10000}}
	got, err := decodeKeepaliveAnswer(encodeKeepaliveAnswer(ans), len(ans))
	if err != nil || !slices.Equal(got, ans) {
		t.Errorf("answers: got %v, %v", got, err)
	}
	if _, err := decodeKeepaliveAnswer(encodeKeepaliveAnswer(ans), 2); err == nil {
		t.Error("an answer for 3 leases decoded for 2")
	}
}

// FuzzDecodeKeepaliveIDs: the decoder of a coalesced keepalive never
// panics, returns only what its encoder can produce (1 to the maximum ids,
// strictly increasing, positive), and re-encoding is stable.
func FuzzDecodeKeepaliveIDs(f *testing.F) {
	f.Add(encodeKeepaliveIDs([]uint64{1, 2, 300}))
	f.Add([]byte{1, 1, 0})
	f.Add([]byte{1, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		ids, err := decodeKeepaliveIDs(b)
		if err != nil {
			return
		}
		if len(ids) == 0 || len(ids) > maxPeerKeepaliveIDs {
			t.Fatalf("%d ids", len(ids))
		}
		for i, id := range ids {
			if id == 0 || i > 0 && id <= ids[i-1] {
				t.Fatalf("ids %v", ids)
			}
		}
		again, err := decodeKeepaliveIDs(encodeKeepaliveIDs(ids))
		if err != nil || !slices.Equal(again, ids) {
			t.Fatalf("re-encoded %v: %v, %v", ids, again, err)
		}
	})
}

// FuzzDecodeKeepaliveAnswer: the decoder of the leader's answer never
// panics and re-encoding is stable.
func FuzzDecodeKeepaliveAnswer(f *testing.F) {
	f.Add(encodeKeepaliveAnswer([]keepaliveAnswer{{found: true, remaining: 5, ttl: 10}, {}}), 2)
	f.Add([]byte{1, 1, 0}, 1)
	f.Fuzz(func(t *testing.T, b []byte, n int) {
		if n < 0 || n > maxPeerKeepaliveIDs {
			return
		}
		ans, err := decodeKeepaliveAnswer(b, n)
		if err != nil {
			return
		}
		if len(ans) != n {
			t.Fatalf("%d answers for %d", len(ans), n)
		}
		again, err := decodeKeepaliveAnswer(encodeKeepaliveAnswer(ans), n)
		if err != nil || !slices.Equal(again, ans) {
			t.Fatalf("re-encoded %v: %v, %v", ans, again, err)
		}
	})
}

// FuzzDecodeApplyAnswer: the decoder of the leader's answer to an encoded
// command never panics, and what it accepts re-encodes stably.
func FuzzDecodeApplyAnswer(f *testing.F) {
	f.Add(encodeApplyAnswer(&fsm.Result{Index: 7, Type: fsm.CmdKVPut, Entry: &fsm.KVEntry{Key: "k", CreateIndex: 7, ModifyIndex: 7, Version: 1}}, 0))
	f.Add(encodeApplyAnswer(&fsm.Result{Index: 9, Type: fsm.CmdCampaign, Campaign: &fsm.CampaignResult{Position: 2},
		Election: &fsm.Election{Name: "l", Kind: fsm.KindLock, Limit: 1, Holders: []fsm.Candidate{{Lease: 1, Token: 3}}}}, 9))
	f.Add(encodeApplyAnswer(&fsm.Result{Index: 3, Err: &fsm.CASConflictError{Key: "k", CurrentIndex: 2}}, 0))
	f.Add([]byte{1, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		res, idx, err := decodeApplyAnswer(b)
		if err != nil {
			return
		}
		enc := encodeApplyAnswer(res, idx)
		res2, idx2, err := decodeApplyAnswer(enc)
		if err != nil || idx2 != idx {
			t.Fatalf("re-encoded answer: %v, index %d vs %d", err, idx2, idx)
		}
		if again := encodeApplyAnswer(res2, idx2); !bytes.Equal(again, enc) {
			t.Fatalf("encoding not stable:\n%x\n%x", enc, again)
		}
	})
}

// FuzzDecodeApplyBatch: the decoders of a batch of encoded commands and
// of its answer never panic, and what they accept re-encodes stably.
func FuzzDecodeApplyBatch(f *testing.F) {
	f.Add(encodeApplyBatch([][]byte{{0xC0, 1}, {0xC0, 2, 3}}), false)
	rec := newBufferedResponse()
	writeError(rec, badRequest("no"))
	f.Add(encodeBatchAnswer([]*bufferedResponse{rec, newBufferedResponse()}), true)
	f.Fuzz(func(t *testing.T, b []byte, answer bool) {
		if !answer {
			cmds, err := decodeApplyBatch(b)
			if err != nil {
				return
			}
			again, err := decodeApplyBatch(encodeApplyBatch(cmds))
			if err != nil || len(again) != len(cmds) {
				t.Fatalf("re-encoded batch: %v", err)
			}
			for i := range cmds {
				if !bytes.Equal(again[i], cmds[i]) {
					t.Fatalf("command %d: %x, re-decoded %x", i, cmds[i], again[i])
				}
			}
			return
		}
		for n := 1; n <= 3; n++ {
			items, err := decodeBatchAnswer(b, n)
			if err != nil {
				continue
			}
			recs := make([]*bufferedResponse, len(items))
			for i, it := range items {
				recs[i] = newBufferedResponse()
				recs[i].status = it.status
				if it.ctype != "" {
					recs[i].header.Set(headerContentType, it.ctype)
				}
				recs[i].body.Write(it.body)
			}
			again, err := decodeBatchAnswer(encodeBatchAnswer(recs), n)
			if err != nil || len(again) != len(items) {
				t.Fatalf("re-encoded answer: %v", err)
			}
		}
	})
}
