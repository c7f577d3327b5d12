package gcpace

import (
	"runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		live, headroom uint64
		max, want      int
	}{
		{100 * mib, 1024 * mib, 400, 400}, // 4 x 100 MiB under the cap
		{256 * mib, 1024 * mib, 400, 400}, // exactly at the cap
		{512 * mib, 1024 * mib, 400, 200},
		{1024 * mib, 1024 * mib, 400, 100},
		{4096 * mib, 1024 * mib, 400, 100}, // never under Go's default
		{512 * mib, 0, 400, 400},           // no cap
		{512 * mib, 1024 * mib, 50, 50},    // a max under the floor stays
		{0, 1024 * mib, 400, 400},
	} {
		if got := Percent(c.live, c.headroom, c.max); got != c.want {
			t.Errorf("Percent(%d MiB live, %d MiB headroom, max %d) = %d, want %d", c.live/mib, c.headroom/mib, c.max, got, c.want)
		}
	}
}

// The pacer follows the live heap: a live heap four times the headroom
// brings GOGC to the floor, and freeing it brings GOGC back up.
func TestPacer_FollowsTheLiveHeap(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	const headroom = 16 << 20
	p := Start(headroom, 400)
	defer p.Stop()
	waitFor := func(what string, ok func(int) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ok(p.Current()) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: GOGC %d", what, p.Current())
			}
			runtime.GC()
			time.Sleep(10 * time.Millisecond)
		}
	}
	live := make([][]byte, 64)
	for i := range live {
		live[i] = make([]byte, 1<<20) // 64 MiB live: headroom/live = 25 %
	}
	waitFor("with 64 MiB live", func(g int) bool { return g == Floor })
	if got := debug.SetGCPercent(Floor); got != Floor {
		t.Fatalf("the runtime's GOGC is %d, the pacer says %d", got, Floor)
	}
	runtime.KeepAlive(live)
	live = nil
	waitFor("with the 64 MiB freed", func(g int) bool { return g > Floor })
}
