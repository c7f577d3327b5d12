package main

import "testing"

// The projection to 1M is a line through the two measured sizes, but
// never below the larger size's measurement (a noisy smaller run must not
// project a negative snapshot time).
func TestProjectMillion_LinearButNeverBelowTheLargerSize(t *testing.T) {
	fa := millionFigs{"rss_after_mib": 900, "snapshot_ms": 900, "expired": 0}
	fb := millionFigs{"rss_after_mib": 1500, "snapshot_ms": 400, "expired": 2}
	r := projectMillion(1, 1_000_000, 125_000, 250_000, fa, fb)
	got := map[string]float64{}
	for _, f := range r.Figures {
		got[f.Key] = f.Value
	}
	if want := 900 + 600.0/125_000*875_000; got["rss_after_mib"] != want {
		t.Errorf("rss_after_mib %v, want %v", got["rss_after_mib"], want)
	}
	if got["snapshot_ms"] != 400 {
		t.Errorf("snapshot_ms %v, want 400 (the larger size's)", got["snapshot_ms"])
	}
	if got["expired"] != 2 {
		t.Errorf("expired %v, want the sum of both runs'", got["expired"])
	}
}
