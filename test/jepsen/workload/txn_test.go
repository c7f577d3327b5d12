package workload

import (
	"strings"
	"testing"

	"github.com/coordd/coordd/test/jepsen/history"
)

func txnOp(i, p int, call, ret int64, status history.Status, in, out history.Values) history.Op {
	return history.Op{Index: i, Process: p, Kind: KindTxn, Key: "g", Call: call, Return: ret, Status: status, In: in, Out: out}
}

func TestCheckTxn_AtomicHistoryPasses_TornReadIsCaught(t *testing.T) {
	ok := history.StatusOK
	valid := []history.Op{
		txnOp(0, 1, 0, 10, ok, history.Values{Value: "w1", Values: []string{"0", "2"}}, history.Values{}),
		txnOp(1, 2, 5, 20, ok, history.Values{}, history.Values{Values: []string{"w1", "", "w1"}}),
		txnOp(2, 1, 21, 30, ok, history.Values{Value: "c1", Values: []string{"w1"}}, history.Values{Found: true}),
		txnOp(3, 2, 31, 40, ok, history.Values{Value: "c2", Values: []string{"w1"}}, history.Values{Value: "c1"}),
		// Of unknown outcome: it may or may not have happened.
		txnOp(4, 3, 41, 45, history.StatusUnknown, history.Values{Value: "w3", Values: []string{"1"}}, history.Values{}),
		txnOp(5, 2, 50, 60, ok, history.Values{}, history.Values{Values: []string{"c1", "w3", "c1"}}),
		txnOp(6, 1, 61, 62, history.StatusFail, history.Values{Value: "w9", Values: []string{"0"}}, history.Values{}),
		txnOp(7, 1, 63, 70, ok, history.Values{}, history.Values{Values: []string{"c1", "w3", "c1"}}),
	}
	if r := CheckTxn(valid, history.FinalState{}, ""); !r.Valid {
		t.Fatalf("valid history refused:\n%s", r)
	}
	// A read that sees one key of a write and not the other.
	torn := append(valid[:2:2], txnOp(2, 3, 25, 30, ok, history.Values{}, history.Values{Values: []string{"w1", "", ""}}))
	if r := CheckTxn(torn, history.FinalState{}, ""); r.Valid || !strings.Contains(r.String(), "not linearizable") {
		t.Fatalf("torn read not caught:\n%s", r)
	}
	// A cas whose then branch ran although its compare could not hold.
	badCAS := append(valid[:2:2], txnOp(2, 1, 21, 30, ok, history.Values{Value: "c1", Values: []string{"x"}}, history.Values{Found: true}))
	if r := CheckTxn(badCAS, history.FinalState{}, ""); r.Valid {
		t.Fatalf("impossible cas not caught:\n%s", r)
	}
	// A failed write that took effect.
	ghost := append(valid[:1:1], txnOp(1, 2, 11, 12, history.StatusFail, history.Values{Value: "w2", Values: []string{"1"}}, history.Values{}),
		txnOp(2, 2, 13, 20, ok, history.Values{}, history.Values{Values: []string{"w1", "w2", "w1"}}))
	if r := CheckTxn(ghost, history.FinalState{}, ""); r.Valid {
		t.Fatalf("effect of a failed write not caught:\n%s", r)
	}
}
