package check

import (
	"testing"

	h "github.com/coordd/coordd/test/jepsen/history"
)

func kvState(kv map[string]h.KV) h.FinalState { return h.FinalState{KV: kv} }

func Test_Durability_KV(t *testing.T) {
	w1 := ok(1, h.KindPut, "k", 0, 10, in{Value: "v1"}, out{Index: 5})
	w2 := ok(1, h.KindPut, "k", 20, 30, in{Value: "v2"}, out{Index: 7})
	for _, tc := range []struct {
		name  string
		ops   []h.Op
		final map[string]h.KV
		n     int // anomalies; 0: valid
		subs  []string
	}{
		{"last acknowledged write visible", []h.Op{w1, w2}, map[string]h.KV{"k": {Value: "v2", Index: 7}}, 0, nil},
		{"unknown write applied", []h.Op{w1, unknown(2, h.KindPut, "k", 40, in{Value: "v3"})}, map[string]h.KV{"k": {Value: "v3", Index: 9}}, 0, nil},
		{"unknown write not applied", []h.Op{w1, unknown(2, h.KindPut, "k", 40, in{Value: "v3"})}, map[string]h.KV{"k": {Value: "v1", Index: 5}}, 0, nil},
		{"concurrent writes, either order", []h.Op{w1, ok(2, h.KindPut, "k", 5, 15, in{Value: "c"}, out{Index: 4})},
			map[string]h.KV{"k": {Value: "v1", Index: 5}}, 0, nil},
		{"concurrent writes, index order broken", []h.Op{w1, ok(2, h.KindPut, "k", 5, 15, in{Value: "c"}, out{Index: 6})},
			map[string]h.KV{"k": {Value: "v1", Index: 5}}, 1, []string{"got modify index 6, above"}},
		{"failed write ignored", []h.Op{w1, fail(2, h.KindPut, "k", 40, 50, "no_leader", in{Value: "v3"}, out{})}, map[string]h.KV{"k": {Value: "v1"}}, 0, nil},
		{"deleted", []h.Op{w1, ok(2, h.KindDelete, "k", 40, 50, in{}, out{})}, map[string]h.KV{}, 0, nil},
		{"maybe deleted", []h.Op{w1, unknown(2, h.KindDelete, "k", 40, in{})}, map[string]h.KV{}, 0, nil},
		{"never written, absent", []h.Op{fail(2, h.KindPut, "k", 40, 50, "no_leader", in{Value: "v3"}, out{})}, map[string]h.KV{}, 0, nil},

		{"lost acknowledged write", []h.Op{w1, w2}, map[string]h.KV{"k": {Value: "v1", Index: 5}}, 2,
			[]string{`key "k": acknowledged write lost: the final state is "v1" (modify index 5), from #0`, "the last acknowledged ops are #1",
				"#1 p1 put \"k\" {value=\"v2\"} -> ok {index=7} [20.000ms..30.000ms] got modify index 7, above"}},
		{"lost write, indexes not known", []h.Op{w1, w2}, map[string]h.KV{"k": {Value: "v1"}}, 1, []string{"acknowledged write lost"}},
		{"key gone without a delete", []h.Op{w1}, map[string]h.KV{}, 1, []string{`the final state is absent; the last acknowledged ops are #0`}},
		{"delete superseded", []h.Op{ok(2, h.KindDelete, "k", 0, 5, in{}, out{}), w2}, map[string]h.KV{}, 1, []string{"from #0"}},
		{"value never written", []h.Op{w1}, map[string]h.KV{"k": {Value: "zz", Index: 5}}, 2, []string{"a value no op in the history wrote", "the final state at that index"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Durability(number(tc.ops...), kvState(tc.final))
			if tc.n == 0 {
				wantValid(t, r)
			} else {
				wantAnomalies(t, r, tc.n, tc.subs...)
			}
		})
	}
}

func Test_Durability_Leases(t *testing.T) {
	ops := number(
		ok(1, h.KindLeaseGrant, "", 0, 10, in{}, out{Lease: 5}),
		ok(1, h.KindLeaseGrant, "", 0, 10, in{}, out{Lease: 6}),
		ok(1, h.KindLeaseGrant, "", 0, 10, in{}, out{Lease: 7}),
		unknown(1, h.KindLeaseRevoke, "", 20, in{Lease: 7}),
		unknown(1, h.KindLeaseGrant, "", 30, in{}),
	)
	wantValid(t, Durability(ops, h.FinalState{Leases: []uint64{5, 6}}))
	wantAnomalies(t, Durability(ops, h.FinalState{Leases: []uint64{6, 99}}), 1, "lease 5 granted by #0")
}

func Test_Durability_Leaderships(t *testing.T) {
	won := campaign(1, 0, 10, 1, "c1", 10)
	lock := ok(3, h.KindAcquire, "l", 0, 10, in{Lease: 3}, out{Token: 11})
	holders := func(m map[string]h.Holder) h.FinalState { return h.FinalState{Elections: m} }
	both := map[string]h.Holder{"e": {Lease: 1, Value: "c1", Token: 10}, "l": {Lease: 3, Token: 11}}

	wantValid(t, Durability(number(won, lock), holders(both)))
	// Handed over after a resign (even of unknown outcome), released, revoked.
	wantValid(t, Durability(number(won, unknown(1, h.KindResign, "e", 20, in{Lease: 1, Token: 10}), lock,
		ok(3, h.KindRelease, "l", 20, 30, in{Lease: 3, Token: 11}, out{})),
		holders(map[string]h.Holder{"e": {Lease: 2, Token: 14}})))
	wantValid(t, Durability(number(won, lock, ok(3, h.KindLeaseRevoke, "", 20, 30, in{Lease: 3}, out{})),
		holders(map[string]h.Holder{"e": {Lease: 1, Value: "c1", Token: 10}})))
	// A queued candidate is not a leader.
	wantValid(t, Durability(number(ok(2, h.KindCampaign, "e", 0, 10, in{Lease: 2}, out{Token: 0})), holders(map[string]h.Holder{})))

	wantAnomalies(t, Durability(number(won, lock), holders(map[string]h.Holder{"l": {Lease: 3, Token: 11}})), 1,
		`"e": leadership lost: #0`, "the final state has no holder")
	wantAnomalies(t, Durability(number(won, lock), holders(map[string]h.Holder{"e": {Lease: 1, Token: 10}, "l": {Lease: 4, Token: 12}})), 1,
		`"l": leadership lost`, "is held by lease 4 with token 12")
	wantAnomalies(t, Durability(number(won, unknown(1, h.KindResign, "e", 20, in{Lease: 1, Token: 10})),
		holders(map[string]h.Holder{"e": {Lease: 9, Token: 8}})), 1, "the final holder's token 8 is below token 10 of #0")
	wantAnomalies(t, Durability(number(won), holders(map[string]h.Holder{"e": {Lease: 9, Token: 10}})), 1,
		"the final holder of token 10 is lease 9")
}

func Test_Durability_WithoutAFinalState_ChecksNothing_AndSaysSo(t *testing.T) {
	ops := number(
		ok(1, h.KindPut, "k", 0, 10, in{Value: "v1"}, out{Index: 5}),
		ok(1, h.KindLeaseGrant, "", 0, 10, in{}, out{Lease: 5}),
		campaign(1, 0, 10, 1, "c1", 10),
	)
	r := Durability(ops, h.FinalState{})
	wantValid(t, r)
	if len(r.Notes) != 3 {
		t.Errorf("notes %q, want three", r.Notes)
	}
}
