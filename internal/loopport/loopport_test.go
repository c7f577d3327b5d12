package loopport

import (
	"math/rand/v2"
	"testing"
)

func TestFree_DistinctFreeBelowTheEphemeralRangeNeverTwice(t *testing.T) {
	lo, hi := Range()
	seen := map[int]bool{}
	for range 3 {
		ports, err := Free(4, rand.IntN)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ports {
			if p < lo || p >= hi || seen[p] {
				t.Fatalf("port %d: out of [%d, %d) or handed out twice", p, lo, hi)
			}
			seen[p] = true
		}
	}
}
