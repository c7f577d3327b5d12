package check

import (
	"strings"
	"testing"

	h "github.com/coordd/coordd/test/jepsen/history"
)

func acquire(p int, call, ret int64, lease, token uint64) h.Op {
	return ok(p, h.KindAcquire, "r", call, ret, in{Lease: lease}, out{Token: token})
}

func rread(p int, call, ret int64, token, seq uint64, values ...string) h.Op {
	return ok(p, h.KindResourceRead, "r", call, ret, in{Token: token}, out{Seq: seq, Values: values})
}

func rwrite(p int, call, ret int64, token, seq uint64, elem string) h.Op {
	return ok(p, h.KindResourceWrite, "r", call, ret, in{Token: token, Value: elem}, out{Seq: seq})
}

func refused(p int, call, ret int64, token uint64, elem string) h.Op {
	return fail(p, h.KindResourceWrite, "r", call, ret, "stale_token", in{Token: token, Value: elem}, out{})
}

func resources(elems ...string) h.FinalState {
	return h.FinalState{Resources: map[string][]string{"r": elems}}
}

func Test_FencedLock_FencedRunWithAPausedHolder_IsValid(t *testing.T) {
	ops := number(
		acquire(1, 0, 10, 1, 10),
		rread(1, 11, 12, 10, 1),
		rwrite(1, 50, 51, 10, 2, "a"),
		ok(1, h.KindRelease, "r", 52, 55, in{Lease: 1, Token: 10}, out{}),
		acquire(2, 60, 70, 2, 12),
		rread(2, 71, 72, 12, 3, "a"),
		rwrite(2, 80, 81, 12, 4, "b"),
		// p3 pauses past its lease; p4 takes over and reads first, so
		// p3's late write is refused.
		acquire(3, 100, 110, 3, 14),
		rread(3, 111, 112, 14, 5, "a", "b"),
		acquire(4, 200, 210, 4, 16),
		rread(4, 211, 212, 16, 6, "a", "b"),
		refused(3, 300, 301, 14, "c"),
		rwrite(4, 310, 311, 16, 7, "d"),
		// p5 pauses too, but wakes before p6 touches the resource: its
		// write is accepted and p6 reads it. Sections do not overlap.
		acquire(5, 400, 410, 5, 18),
		rread(5, 411, 412, 18, 8, "a", "b", "d"),
		acquire(6, 500, 510, 6, 20),
		rwrite(5, 520, 521, 18, 9, "e"),
		rread(6, 530, 531, 20, 10, "a", "b", "d", "e"),
		rwrite(6, 540, 541, 20, 11, "f"),
		// An acquire that failed, one of unknown outcome.
		fail(7, h.KindAcquire, "r", 600, 610, "no_leader", in{Lease: 7}, out{}),
		unknown(7, h.KindAcquire, "r", 620, in{Lease: 7}),
	)
	wantValid(t, FencedLock(ops, resources("a", "b", "d", "e", "f")))
}

// The unfenced variant: the resource accepts every write. Both holders
// read before either wrote; the second write overwrites the first.
func Test_FencedLock_UnfencedLostUpdate_IsCaught(t *testing.T) {
	ops := number(
		acquire(1, 0, 10, 1, 10),
		rread(1, 11, 12, 10, 1),
		acquire(2, 100, 110, 2, 12), // p1's lease expired meanwhile
		rread(2, 111, 112, 12, 2),
		rwrite(1, 200, 201, 10, 3, "a"), // p1 wakes up: accepted
		rwrite(2, 210, 211, 12, 4, "b"), // based on the empty read: "a" is lost
	)
	r := FencedLock(ops, resources("b"))
	wantAnomalies(t, r, 3,
		"critical sections of accepted writes overlap: token 10", "and token 12",
		`accepted write lost: element "a" of #4`,
		"accepted token 10 (#4",
	)
}

func Test_FencedLock_OverlappingSectionsWithoutLoss_AreCaught(t *testing.T) {
	// Two clients with overlapping write sections, both elements kept (a
	// resource that merges): still a mutual exclusion violation.
	ops := number(
		acquire(1, 0, 10, 1, 10),
		rread(1, 11, 12, 10, 1),
		acquire(2, 20, 30, 2, 12),
		rread(2, 31, 32, 12, 2),
		rwrite(2, 40, 41, 12, 3, "b"),
		rwrite(1, 50, 51, 10, 4, "a"),
	)
	wantAnomalies(t, FencedLock(ops, resources("b", "a")), 2, "overlap", "accepted token 10")
}

func Test_FencedLock_DuplicateToken_IsCaught(t *testing.T) {
	ops := number(
		acquire(1, 0, 10, 1, 10),
		acquire(2, 5, 15, 2, 10),
		acquire(1, 20, 30, 1, 10), // the same lease again: a retry
	)
	wantAnomalies(t, FencedLock(ops, h.FinalState{}), 1, "token 10 given to two holders: #0", "and #1")
}

func Test_FencedLock_TokenDecreaseInRealTime_IsCaught(t *testing.T) {
	ops := number(
		acquire(1, 0, 10, 1, 12),
		acquire(2, 20, 30, 2, 11),
		acquire(3, 5, 35, 3, 9), // concurrent with the first: any order
	)
	wantAnomalies(t, FencedLock(ops, h.FinalState{}), 1, "token 11 of #1", "token 12 of #0")
}

func Test_FencedLock_ResourceAcceptingALowerToken_IsCaught(t *testing.T) {
	ops := number(
		rwrite(2, 0, 1, 12, 1, "b"),
		rwrite(1, 2, 3, 11, 2, "a"),
		rwrite(3, 4, 5, 12, 3, "c"), // equal to the highest: fine
	)
	r := FencedLock(ops, resources("b", "a", "c"))
	wantAnomalies(t, r, 1, "accepted token 11 (#1", "after token 12 (#0")
	// Without Seq the order comes from return times, with a note.
	for i := range ops {
		ops[i].Out.Seq = 0
	}
	r = FencedLock(ops, resources("b", "a", "c"))
	wantAnomalies(t, r, 1, "accepted token 11 (#1")
	if len(r.Notes) != 2 || !strings.Contains(r.Notes[0], "no Seq") || !strings.Contains(r.Notes[1], "3 accepted writes have no read or acquire") {
		t.Errorf("notes %q, want one about the missing Seq, one about the missing reads", r.Notes)
	}
}

func Test_FencedLock_ForeignAndDuplicateElements_AreCaught(t *testing.T) {
	ops := number(
		acquire(1, 0, 10, 1, 10),
		rread(1, 11, 12, 10, 1),
		rwrite(1, 13, 14, 10, 2, "a"),
		refused(2, 15, 16, 9, "z"),
		unknown(3, h.KindResourceWrite, "r", 17, in{Token: 10, Value: "u"}),
	)
	wantAnomalies(t, FencedLock(ops, resources("a", "z", "q", "a", "u")), 3,
		`element "a" is in the final state 2 times`,
		`element "z" is in the final state, but its write was not accepted: #3`,
		`element "q" is in the final state, but no write`)
}
