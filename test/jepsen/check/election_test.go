package check

import (
	"testing"
	"time"

	h "github.com/coordd/coordd/test/jepsen/history"
)

func campaign(p int, call, ret int64, lease uint64, value string, token uint64) h.Op {
	return ok(p, h.KindCampaign, "e", call, ret, in{Lease: lease, Value: value}, out{Leader: true, Token: token})
}

func resign(p int, call, ret int64, lease, token uint64) h.Op {
	return ok(p, h.KindResign, "e", call, ret, in{Lease: lease, Token: token}, out{})
}

func observe(p int, call, ret int64, lease uint64, value string, token uint64) h.Op {
	return ok(p, h.KindObserve, "e", call, ret, in{}, out{Leader: true, Lease: lease, Value: value, Token: token})
}

func observeNone(p int, call, ret int64) h.Op {
	return ok(p, h.KindObserve, "e", call, ret, in{}, out{})
}

func leader(lease uint64, value string, token uint64) h.FinalState {
	return h.FinalState{Elections: map[string]h.Holder{"e": {Lease: lease, Value: value, Token: token}}}
}

const slack = 100 * time.Millisecond

// goodElection: c1 leads, resigns; c2 (queued) leads, proclaims; two
// observers (p10, p11) follow.
func goodElection() []h.Op {
	return []h.Op{
		observeNone(10, 0, 1),
		observeNone(11, 0, 2),
		campaign(1, 0, 10, 1, "c1", 10),
		observe(10, 1, 12, 1, "c1", 10),
		observe(11, 2, 14, 1, "c1", 10),
		ok(2, h.KindCampaign, "e", 5, 15, in{Lease: 2, Value: "c2"}, out{Leader: false}), // queued
		resign(1, 20, 30, 1, 10),
		observe(10, 12, 31, 2, "c2", 12),
		observe(11, 14, 33, 2, "c2", 12),
		ok(2, h.KindProclaim, "e", 60, 70, in{Lease: 2, Token: 12, Value: "c2'"}, out{}),
		observe(10, 31, 71, 2, "c2'", 12),
		// A lagging follower: p11 hears of the proclaim late, and saw
		// c1 once more within the slack after c1 resigned.
		observe(11, 33, 90, 2, "c2", 12),
		observe(11, 90, 95, 2, "c2'", 12),
		ok(12, h.KindObserve, "e", 0, 3, in{}, out{}),
		observe(12, 100, 110, 1, "c1", 10), // began 70 ms after c1's resign returned: within the slack
		observe(12, 110, 120, 2, "c2'", 12),
		fail(13, h.KindObserve, "e", 0, 200, "timeout", in{}, out{}),
	}
}

func Test_Election_GoodHistory_IsValid(t *testing.T) {
	wantValid(t, Election(number(goodElection()...), leader(2, "c2'", 12), slack))
}

func Test_Election_DuplicateTokenForTwoHolders_IsCaught(t *testing.T) {
	ops := append(goodElection(), observe(13, 40, 50, 3, "c3", 12))
	wantAnomalies(t, Election(number(ops...), leader(2, "c2'", 12), slack), 2,
		"token 12 has two holders: lease 2", "lease 3 (#17",
		"observer p13's last observation")
	// Same lease, another value, and no proclaim of it.
	ops = append(goodElection(), observe(13, 40, 50, 2, "c9", 12), observe(13, 130, 140, 2, "c2'", 12))
	wantAnomalies(t, Election(number(ops...), leader(2, "c2'", 12), slack), 1,
		`token 12 has two holders: value "c2"`, `value "c9"`)
}

func Test_Election_TokenDecrease_IsCaught(t *testing.T) {
	ops := number(
		campaign(1, 0, 10, 1, "c1", 12),
		resign(1, 11, 12, 1, 12),
		campaign(2, 20, 30, 2, "c2", 11),
		campaign(2, 40, 50, 2, "c2", 11), // the leader campaigns again: same token, below #0's too
	)
	wantAnomalies(t, Election(ops, h.FinalState{}, slack), 2, "token 11 of #2", "token 11 of #3", "token 12 of #0")
	// Without the first campaign, the same-lease repeat is fine.
	wantValid(t, Election(number(ops[2:]...), h.FinalState{}, slack))
}

func Test_Election_ObserverGoingBack_IsCaught(t *testing.T) {
	ops := number(
		observe(10, 0, 10, 2, "c2", 12),
		observe(10, 10, 20, 1, "c1", 10),
		observe(10, 20, 30, 2, "c2", 12),
	)
	// The second observation is not stale beyond the slack: the first one
	// proves token 10 over by 10 ms only, and the second began at 10 ms.
	wantAnomalies(t, Election(ops, leader(2, "c2", 12), slack), 1, "observer p10 went back from token 12 (#0", "to token 10 (#1")
}

func Test_Election_ObserverStuckOnAnOldLeader_IsCaught(t *testing.T) {
	ops := append(goodElection(), observe(13, 0, 12, 1, "c1", 10))
	wantAnomalies(t, Election(number(ops...), leader(2, "c2'", 12), time.Hour), 1,
		`observer p13's last observation #17`, `is not the final leader (lease 2, value "c2'", token 12)`)
	// An observer that last saw no leader, when there is one.
	ops = append(goodElection(), observeNone(13, 0, 12))
	wantAnomalies(t, Election(number(ops...), leader(2, "c2'", 12), time.Hour), 1, "observer p13's last observation")
	// And observers that still see a leader after the last one resigned.
	ops = append(goodElection(), resign(2, 200, 210, 2, 12))
	wantAnomalies(t, Election(number(ops...), h.FinalState{Elections: map[string]h.Holder{}}, time.Hour), 3, "(no leader)")
}

func Test_Election_LateStaleObservationBeyondSlack_IsCaught(t *testing.T) {
	// Evidence by resign: c1's resign returned at 30 ms; p12 asked at
	// 500 ms and was told c1 leads.
	ops := append(goodElection(), observe(12, 500, 510, 1, "c1", 10), observe(12, 510, 520, 2, "c2'", 12))
	wantAnomalies(t, Election(number(ops...), leader(2, "c2'", 12), slack), 2,
		"observer p12 reported leader token 10 (lease 1) in #17", "after that leadership was over (by 30.000ms: #6",
		// The same observation also goes back from token 12.
		"went back")
	// Within a larger slack it is allowed (and still goes back).
	wantAnomalies(t, Election(number(ops...), leader(2, "c2'", 12), time.Second), 1, "went back")

	// Evidence by a higher token's witness (no resign, no revoke in the
	// history): p10 saw token 12 by 31 ms.
	ops = number(
		campaign(1, 0, 10, 1, "c1", 10),
		observe(10, 0, 31, 2, "c2", 12),
		observe(11, 400, 410, 1, "c1", 10),
		observe(11, 410, 420, 2, "c2", 12),
	)
	wantAnomalies(t, Election(ops, leader(2, "c2", 12), slack), 1, "by 31.000ms: #1")
	// Evidence by a revoke of the leader's lease.
	ops = number(
		campaign(1, 0, 10, 1, "c1", 10),
		ok(1, h.KindLeaseRevoke, "", 20, 25, in{Lease: 1}, out{}),
		observe(11, 400, 410, 1, "c1", 10),
		observeNone(11, 410, 420),
	)
	wantAnomalies(t, Election(ops, h.FinalState{Elections: map[string]h.Holder{}}, slack), 1, "by 25.000ms: #1")
}
