package history

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// sample has one op of every kind, with every field of Values set somewhere,
// including values that JSON must escape.
func sample() []Op {
	return []Op{
		{Index: 0, Process: 1, Kind: KindPut, Key: "k/1", Node: "n1", Call: 10, Return: 2_000_010, Status: StatusOK,
			In: Values{Value: "v\"1\n\u00e9"}, Out: Values{Index: 7}},
		{Index: 1, Process: 2, Kind: KindCAS, Key: "k/1", Call: 20, Return: 30, Status: StatusFail, Error: CodeCASConflict,
			In: Values{Value: "v2", Index: 6}, Out: Values{Index: 7, Found: true}},
		{Index: 2, Process: 3, Kind: KindGet, Key: "k/1", Call: 40, Return: 50, Status: StatusOK, Out: Values{Found: true, Value: "v1", Index: 7}},
		{Index: 3, Process: 3, Kind: KindDelete, Key: "k/2", Call: 60, Return: 1_000_000_000, Status: StatusUnknown, Error: "timeout"},
		{Index: 4, Process: 4, Kind: KindLeaseGrant, Call: 1, Return: 2, Status: StatusOK, Out: Values{Lease: 12}},
		{Index: 5, Process: 4, Kind: KindLeaseRevoke, Call: 3, Return: 4, Status: StatusOK, In: Values{Lease: 12}},
		{Index: 6, Process: 5, Kind: KindAcquire, Key: "lock", Call: 5, Return: 6, Status: StatusOK, In: Values{Lease: 13}, Out: Values{Token: 14}},
		{Index: 7, Process: 5, Kind: KindResourceRead, Key: "lock", Call: 7, Return: 8, Status: StatusOK, In: Values{Token: 14}, Out: Values{Seq: 1, Values: []string{"p4-1", "p2-9"}}},
		{Index: 8, Process: 5, Kind: KindResourceWrite, Key: "lock", Call: 9, Return: 10, Status: StatusOK, In: Values{Token: 14, Value: "p5-1"}, Out: Values{Seq: 2}},
		{Index: 9, Process: 5, Kind: KindRelease, Key: "lock", Call: 11, Return: 12, Status: StatusOK, In: Values{Lease: 13, Token: 14}},
		{Index: 10, Process: 6, Kind: KindCampaign, Key: "e", Call: 13, Return: 14, Status: StatusOK, In: Values{Lease: 15, Value: "c6"}, Out: Values{Leader: true, Token: 16}},
		{Index: 11, Process: 6, Kind: KindProclaim, Key: "e", Call: 15, Return: 16, Status: StatusOK, In: Values{Lease: 15, Token: 16, Value: "c6'"}},
		{Index: 12, Process: 6, Kind: KindResign, Key: "e", Call: 17, Return: 18, Status: StatusFail, Error: "no_leader", In: Values{Lease: 15, Token: 16}},
		{Index: 13, Process: 7, Kind: KindObserve, Key: "e", Node: "127.0.0.1:7102", Call: 0, Return: 19, Status: StatusOK,
			Out: Values{Leader: true, Lease: 15, Value: "c6", Token: 16}},
		{Index: 14, Process: 7, Kind: KindObserve, Key: "e", Call: 19, Return: 20, Status: StatusOK},
	}
}

func Test_History_EncodeDecode_RoundTrips(t *testing.T) {
	ops := sample()
	path := filepath.Join(t.TempDir(), "history.jsonl")
	if err := WriteFile(path, ops); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "\n"); n != len(ops) {
		t.Fatalf("%d lines for %d ops:\n%s", n, len(ops), b)
	}
	got, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, ops) {
		t.Fatalf("round trip changed the history:\ngot  %+v\nwant %+v", got, ops)
	}
	for _, op := range got {
		if err := op.Validate(); err != nil {
			t.Errorf("sample op invalid: %v", err)
		}
	}
}

func Test_History_Recorder_WritesWhatItKeeps_UnderConcurrency(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.jsonl")
	r, err := NewRecorder(path)
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 50
	var wg sync.WaitGroup
	for p := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				call := r.Now()
				op := Op{Process: p, Kind: KindPut, Key: "k", Call: call, Return: r.Now(), Status: StatusOK,
					In: Values{Value: string(rune('a'+p)) + strings.Repeat("x", i)}}
				if _, err := r.Record(op); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := r.Record(Op{Kind: KindGet}); err == nil {
		t.Error("Record after Close returned no error")
	}
	mem := r.Ops()[:workers*each]
	for i, op := range mem {
		if op.Index != i {
			t.Fatalf("op %d has Index %d", i, op.Index)
		}
		if op.Return < op.Call {
			t.Fatalf("op %d returns before its call", i)
		}
	}
	file, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(file, mem) {
		t.Fatalf("file and memory differ: %d vs %d ops", len(file), len(mem))
	}
}

func Test_History_Decode_DropsATornLastLine_ButNotABadMiddleLine(t *testing.T) {
	var b strings.Builder
	if err := Encode(&b, sample()[:2]); err != nil {
		t.Fatal(err)
	}
	whole := b.String()

	got, err := Decode(strings.NewReader(whole + `{"index":2,"process":3,"ki`))
	if err != nil || len(got) != 2 {
		t.Errorf("torn last line: %d ops, %v; want 2 ops, no error", len(got), err)
	}
	got, err = Decode(strings.NewReader("\n" + whole + "\n"))
	if err != nil || len(got) != 2 {
		t.Errorf("blank lines: %d ops, %v; want 2 ops, no error", len(got), err)
	}
	_, err = Decode(strings.NewReader(whole + "{\"index\":2,\"bogus\":1}\n" + whole))
	if err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("bad middle line: error %v, want one naming line 3", err)
	}
}

func Test_History_Validate_RefusesUnusableOps(t *testing.T) {
	for _, op := range []Op{
		{Kind: "frob", Status: StatusOK},
		{Kind: KindGet, Status: "maybe"},
		{Kind: KindGet, Status: StatusOK, Call: 10, Return: 9},
	} {
		if err := op.Validate(); err == nil {
			t.Errorf("Validate(%v) = nil", op)
		}
	}
	// An unknown outcome may be recorded with any Return.
	if err := (Op{Kind: KindPut, Status: StatusUnknown, Call: 10, Return: 9}).Validate(); err != nil {
		t.Error(err)
	}
}

func Test_History_OpString_NamesEverythingAChecker_Reports(t *testing.T) {
	got := sample()[1].String()
	want := `#1 p2 cas "k/1" {value="v2" index=6} -> fail cas_conflict {found index=7} [0.000ms..0.000ms]`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if got := FormatTime(12_034_567); got != "12.034ms" {
		t.Errorf("FormatTime = %s", got)
	}
}
