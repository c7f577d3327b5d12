package check

import (
	"strings"
	"testing"

	"github.com/coordd/coordd/test/jepsen/history"
)

// Hand-made histories: times in milliseconds, ops numbered in order.

const ms = int64(1e6)

type in = history.Values
type out = history.Values

func ok(p int, kind history.Kind, key string, call, ret int64, i in, o out) history.Op {
	return history.Op{Process: p, Kind: kind, Key: key, Call: call * ms, Return: ret * ms, Status: history.StatusOK, In: i, Out: o}
}

func fail(p int, kind history.Kind, key string, call, ret int64, code string, i in, o out) history.Op {
	op := ok(p, kind, key, call, ret, i, o)
	op.Status, op.Error = history.StatusFail, code
	return op
}

// unknown is an op whose client gave up 5 ms after calling.
func unknown(p int, kind history.Kind, key string, call int64, i in) history.Op {
	op := ok(p, kind, key, call, call+5, i, out{})
	op.Status, op.Error = history.StatusUnknown, "timeout"
	return op
}

func number(ops ...history.Op) []history.Op {
	for i := range ops {
		ops[i].Index = i
	}
	return ops
}

func wantValid(t *testing.T, r Result) {
	t.Helper()
	if !r.Valid || len(r.Anomalies) > 0 {
		t.Errorf("want valid, got\n%s", r)
	}
}

// wantAnomalies checks that r is invalid with n anomalies (n < 0: any
// number), each substring of subs appearing in one of them.
func wantAnomalies(t *testing.T, r Result, n int, subs ...string) {
	t.Helper()
	if r.Valid {
		t.Errorf("want anomalies, got\n%s", r)
		return
	}
	if n >= 0 && len(r.Anomalies) != n {
		t.Errorf("want %d anomalies, got\n%s", n, r)
	}
	all := strings.Join(r.Anomalies, "\n")
	for _, s := range subs {
		if !strings.Contains(all, s) {
			t.Errorf("no anomaly mentions %q:\n%s", s, r)
		}
	}
}
