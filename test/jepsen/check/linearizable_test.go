package check

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	h "github.com/coordd/coordd/test/jepsen/history"
)

func Test_Linearizable_ConcurrentHistoryWithEveryKind_IsValid(t *testing.T) {
	ops := number(
		ok(1, h.KindGet, "a", 0, 5, in{}, out{}), // absent
		ok(1, h.KindPut, "a", 10, 20, in{Value: "v1"}, out{Index: 5}),
		// Concurrent with the put: either order.
		ok(2, h.KindGet, "a", 12, 22, in{}, out{}),
		ok(3, h.KindGet, "a", 15, 25, in{}, out{Found: true, Value: "v1", Index: 5}),
		ok(1, h.KindCAS, "a", 30, 40, in{Value: "v2", Index: 5}, out{Index: 8}),
		fail(2, h.KindCAS, "a", 41, 45, h.CodeCASConflict, in{Value: "x", Index: 5}, out{Index: 8}),
		fail(2, h.KindCAS, "a", 46, 47, h.CodeCASConflict, in{Value: "x", Index: 0}, out{Index: 8}),
		// A failed definite write changes nothing; a failed read says nothing.
		fail(3, h.KindPut, "a", 48, 49, "not_leader", in{Value: "never"}, out{}),
		fail(3, h.KindGet, "a", 48, 49, "no_leader", in{}, out{}),
		unknown(3, h.KindGet, "a", 48, in{}),
		ok(1, h.KindDelete, "a", 50, 55, in{}, out{}),
		fail(2, h.KindDelete, "a", 56, 57, h.CodeKeyNotFound, in{}, out{}),
		fail(2, h.KindGet, "a", 58, 59, h.CodeKeyNotFound, in{}, out{}),
		ok(1, h.KindCAS, "a", 60, 61, in{Value: "v3", Index: 0}, out{Index: 12}),
		ok(2, h.KindGet, "a", 62, 63, in{}, out{Found: true, Value: "v3", Index: 12}),
		// Another key is checked on its own.
		ok(4, h.KindPut, "b", 0, 100, in{Value: "w"}, out{Index: 6}),
		ok(5, h.KindGet, "b", 50, 51, in{}, out{Found: true, Value: "w", Index: 6}),
	)
	r := Linearizable(ops, LinearizableOptions{})
	wantValid(t, r)
	if len(r.Notes) != 1 || !strings.Contains(r.Notes[0], "3 failed ops") {
		t.Errorf("notes %q, want one counting 3 dropped ops", r.Notes)
	}
}

func Test_Linearizable_StaleReadAfterAcknowledgedWrite_IsCaught_AndVisualized(t *testing.T) {
	ops := number(
		ok(1, h.KindPut, "x/y", 0, 10, in{Value: "v1"}, out{Index: 5}),
		ok(1, h.KindPut, "x/y", 20, 30, in{Value: "v2"}, out{Index: 7}),
		ok(2, h.KindGet, "x/y", 40, 50, in{}, out{Found: true, Value: "v1", Index: 5}),
		ok(3, h.KindPut, "other", 0, 10, in{Value: "fine"}, out{Index: 6}),
	)
	dir := t.TempDir()
	r := Linearizable(ops, LinearizableOptions{VisualizeDir: dir})
	wantAnomalies(t, r, 1, `key "x/y": not linearizable`, "cannot place #2", `"v2"@7`)
	files, _ := filepath.Glob(filepath.Join(dir, "*.html"))
	if len(files) != 1 || !strings.Contains(files[0], "x_y") {
		t.Fatalf("visualizations %q, want one for x/y", files)
	}
	b, err := os.ReadFile(files[0])
	if err != nil || !strings.Contains(string(b), "<html") || !strings.Contains(string(b), `put(\"v2\")`) {
		t.Errorf("visualization is not porcupine's page of the key (%v)", err)
	}
	if !strings.Contains(r.Anomalies[0], files[0]) {
		t.Errorf("the anomaly does not name the visualization: %s", r.Anomalies[0])
	}
}

func Test_Linearizable_UnknownWrite_MayTakeEffectLateOrNever_ButNotUndo(t *testing.T) {
	base := []h.Op{
		ok(1, h.KindPut, "k", 0, 10, in{Value: "v1"}, out{Index: 5}),
		unknown(2, h.KindPut, "k", 20, in{Value: "v2"}), // gave up at 25
	}
	read := func(call int64, v string) h.Op {
		return ok(3, h.KindGet, "k", call, call+5, in{}, out{Found: true, Value: v})
	}
	// Not yet applied when the client gave up, applied later: fine.
	wantValid(t, Linearizable(number(append(base, read(30, "v1"), read(40, "v2"))...), LinearizableOptions{}))
	// Never applied: fine.
	wantValid(t, Linearizable(number(append(base, read(30, "v1"), read(40, "v1"))...), LinearizableOptions{}))
	// Applied, then undone: not linearizable.
	wantAnomalies(t, Linearizable(number(append(base, read(30, "v2"), read(40, "v1"))...), LinearizableOptions{}), 1, `key "k"`)
}

func Test_Linearizable_ReadOfADefinitelyFailedWrite_IsCaught(t *testing.T) {
	ops := number(
		ok(1, h.KindPut, "k", 0, 10, in{Value: "v1"}, out{Index: 5}),
		fail(2, h.KindPut, "k", 20, 30, "no_leader", in{Value: "v2"}, out{}),
		ok(3, h.KindGet, "k", 40, 50, in{}, out{Found: true, Value: "v2"}),
	)
	wantAnomalies(t, Linearizable(ops, LinearizableOptions{}), 1, "cannot place #2")
}

func Test_Linearizable_CASConflict_IsEvidence(t *testing.T) {
	put := ok(1, h.KindPut, "k", 0, 10, in{Value: "v1"}, out{Index: 5})
	// Refused although the key was at the expected index.
	wantAnomalies(t, Linearizable(number(put,
		fail(2, h.KindCAS, "k", 20, 30, h.CodeCASConflict, in{Value: "v2", Index: 5}, out{Index: 5}),
	), LinearizableOptions{}), 1)
	// Refused naming an index the key never had.
	wantAnomalies(t, Linearizable(number(put,
		fail(2, h.KindCAS, "k", 20, 30, h.CodeCASConflict, in{Value: "v2", Index: 4}, out{Index: 9}),
	), LinearizableOptions{}), 1)
	// Create-only refused while the key was absent.
	wantAnomalies(t, Linearizable(number(
		fail(2, h.KindCAS, "k", 20, 30, h.CodeCASConflict, in{Value: "v2"}, out{}),
	), LinearizableOptions{}), 1)
	// Refused correctly.
	wantValid(t, Linearizable(number(put,
		fail(2, h.KindCAS, "k", 20, 30, h.CodeCASConflict, in{Value: "v2", Index: 4}, out{Index: 5}),
	), LinearizableOptions{}))
}

func Test_Linearizable_UnknownCAS_TakesEffectOnlyIfItsConditionHeld(t *testing.T) {
	put := ok(1, h.KindPut, "k", 0, 10, in{Value: "v1"}, out{Index: 5})
	read := ok(3, h.KindGet, "k", 40, 50, in{}, out{Found: true, Value: "v2", Index: 9})
	wantValid(t, Linearizable(number(put, unknown(2, h.KindCAS, "k", 20, in{Value: "v2", Index: 5}), read), LinearizableOptions{}))
	wantAnomalies(t, Linearizable(number(put, unknown(2, h.KindCAS, "k", 20, in{Value: "v2", Index: 4}), read), LinearizableOptions{}), 1)
}

func Test_Linearizable_ModifyIndexGoingBack_IsCaught(t *testing.T) {
	ops := number(
		ok(1, h.KindPut, "k", 0, 10, in{Value: "v1"}, out{Index: 9}),
		ok(1, h.KindPut, "k", 20, 30, in{Value: "v2"}, out{Index: 7}),
	)
	wantAnomalies(t, Linearizable(ops, LinearizableOptions{}), 1)
	// A read that names another index than the write's.
	ops = number(
		ok(1, h.KindPut, "k", 0, 10, in{Value: "v1"}, out{Index: 9}),
		ok(2, h.KindGet, "k", 20, 30, in{}, out{Found: true, Value: "v1", Index: 8}),
	)
	wantAnomalies(t, Linearizable(ops, LinearizableOptions{}), 1)
}

func Test_Linearizable_DeleteAnswers_AreEvidence(t *testing.T) {
	wantAnomalies(t, Linearizable(number(
		ok(1, h.KindPut, "k", 0, 10, in{Value: "v1"}, out{Index: 5}),
		fail(2, h.KindDelete, "k", 20, 30, h.CodeKeyNotFound, in{}, out{}),
	), LinearizableOptions{}), 1)
	wantAnomalies(t, Linearizable(number(
		ok(2, h.KindDelete, "k", 20, 30, in{}, out{}),
	), LinearizableOptions{}), 1)
}

func Test_Linearizable_MalformedOp_IsAnAnomaly(t *testing.T) {
	ops := number(ok(1, h.KindGet, "k", 10, 5, in{}, out{}))
	wantAnomalies(t, Linearizable(ops, LinearizableOptions{}), 1, "malformed")
}
