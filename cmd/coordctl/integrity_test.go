package main

import (
	"strings"
	"testing"
)

func (f *fixture) testIntegrity(t *testing.T) {
	t.Parallel()
	r := f.ctl(t, "", "check", "consistency")
	expect(t, r, exitOK, "MATCH", "")
	if n := strings.Count(r.stdout, " ok"); n != 3 {
		t.Fatalf("want 3 members ok: %s", r)
	}
	r = f.ctl(t, "", "-o", "json", "check", "consistency")
	rows := decode[[]memberDigest](t, r)
	if len(rows) != 3 || rows[0].Digest == "" || rows[0].Digest != rows[1].Digest || rows[1].Digest != rows[2].Digest || rows[0].Index == 0 {
		t.Fatalf("check consistency json: %s", r)
	}
	expect(t, f.ctl(t, "", "check", "consistency", "-no-point"), exitOK, " ok", "")
	expect(t, f.ctl(t, "", "alarm", "list"), exitOK, "MEMBER", "")
	expect(t, f.ctl(t, "", "alarm", "disarm", "n9"), exitFailed, "", "no alarm names n9")
	expect(t, f.ctl(t, "", "alarm", "disarm"), exitUsage, "", "one MEMBER or -all")
	expect(t, f.ctl(t, "", "alarm", "disarm", "-all"), exitOK, "(all)", "")
	// No shadow: an empty table, and every voter with -all.
	expect(t, f.ctl(t, "", "shadow", "status"), exitOK, "MEMBER", "")
	// A lock named like the subcommand is still checked as a lock.
	expect(t, f.ctl(t, "", "check", "consistency", "5"), exitFailed, "false", "")
}
