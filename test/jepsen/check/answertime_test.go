package check

import (
	"testing"
	"time"

	"github.com/coordd/coordd/test/jepsen/history"
)

func TestAnswerTime_CountsOnlyHealthyNodesWithAHealthyQuorum(t *testing.T) {
	ms := func(v int64) int64 { return v * int64(time.Millisecond) }
	op := func(i int, node string, call, ret int64, status history.Status, code string) history.Op {
		return history.Op{Index: i, Process: i, Kind: history.KindGet, Key: "k", Node: node, Call: ms(call), Return: ms(ret), Status: status, Error: code}
	}
	// n1 stalled from 1 s to 5 s (ready again at 5 s).
	windows := []Window{{Node: "n1", Start: ms(1000), End: ms(5000)}}
	ops := []history.Op{
		op(0, "n2", 1100, 1400, history.StatusOK, ""),                     // counted, fast
		op(1, "n1", 1100, 3100, history.StatusFail, "timeout"),            // faulted node: not counted
		op(2, "n3", 1200, 1500, history.StatusFail, "no_leader"),          // an answer
		op(3, "n2", 6000, 6050, history.StatusFail, "canceled"),           // cancelled at the end
		op(4, "n1", 900, 950, history.StatusOK, ""),                       // before the fault
		op(5, "n1", 800, 1300, history.StatusOK, ""),                      // overlaps the fault: not counted
		op(6, "n3", 2000, 2200, history.StatusUnknown, "outcome_unknown"), // an answer
	}
	if r := AnswerTime(ops, windows, 3, time.Second, history.KindGet); !r.Valid {
		t.Fatalf("valid history refused: %s", r)
	}
	slow := append(ops, op(7, "n2", 1500, 3500, history.StatusFail, "timeout"), op(8, "n3", 1500, 2800, history.StatusOK, ""))
	r := AnswerTime(slow, windows, 3, time.Second, history.KindGet)
	if r.Valid || len(r.Anomalies) != 2 {
		t.Fatalf("want 2 anomalies (a timeout and a slow answer at healthy nodes), got %s", r)
	}
	// Two nodes down: no quorum, nothing is counted.
	two := append(windows, Window{Node: "n2", Start: ms(1000), End: -1})
	if r := AnswerTime(slow, two, 3, time.Second, history.KindGet); !r.Valid {
		t.Fatalf("without a quorum nothing may be counted: %s", r)
	}
}
