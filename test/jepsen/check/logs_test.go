package check

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeLog(t *testing.T, name, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func Test_Logs_PanicRaceAndFatalLines_AreReportedWithFileAndLine(t *testing.T) {
	clean := writeLog(t, "n1.log", "2026-01-01T00:00:00Z [INFO] raft: entering leader state\nrecovered from panic? no\n")
	bad := writeLog(t, "n2.log", strings.Join([]string{
		`{"@level":"info","@message":"starting"}`,
		strings.Repeat("x", 100_000), // a long line is read whole
		"panic: runtime error: invalid memory address or nil pointer dereference",
		"goroutine 1 [running]:",
		"==================",
		"WARNING: DATA RACE",
		"Write at 0x00c000 by goroutine 7:",
		"fatal error: concurrent map writes", // no newline at the end
	}, "\n"))
	r := Logs(clean, bad)
	wantAnomalies(t, r, 3,
		bad+":3: panic: runtime error: invalid memory address",
		bad+":6: WARNING: DATA RACE",
		bad+":8: fatal error: concurrent map writes")
	wantValid(t, Logs(clean))
}

func Test_Logs_UnreadableFile_IsNotAPass(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "n3.log")
	wantAnomalies(t, Logs(missing), 1, missing+": not scanned")
}

func Test_Logs_ManyMatches_AreCapped(t *testing.T) {
	path := writeLog(t, "n1.log", strings.Repeat("panic: again\n", 50))
	r := Logs(path)
	wantAnomalies(t, r, maxAnomaliesPerCheck+1, "30 more anomalies")
}

func Test_Result_String_ListsVerdictAnomaliesAndNotes(t *testing.T) {
	r := newResult("demo")
	r.anomaly("bad %d", 1)
	r.note("skipped")
	want := "demo: INVALID (1 anomalies)\n  anomaly: bad 1\n  note: skipped"
	if got := r.done().String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if got := newResult("demo").done().String(); got != "demo: valid" {
		t.Errorf("got %q", got)
	}
}
