package fsm_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/coordd/coordd/fsm"
)

// mixedLog is a log of every kind of entry: keys, leases, elections,
// locks, expiries, idempotent retries.
func mixedLog(n int) []fsm.Command {
	var cmds []fsm.Command
	for i := range n {
		var c fsm.Command
		switch i % 6 {
		case 0:
			c = put(fmt.Sprintf("k/%d", i%50), fmt.Sprint(i))
		case 1:
			c = cmdOf(fsm.LeaseGrant{TTL: 1000})
		case 2:
			c = cmdOf(fsm.Campaign{Kind: fsm.KindElection, Name: fmt.Sprintf("e%d", i%7), NewLeaseTTL: 1000, Value: []byte("v")})
		case 3:
			c = cmdOf(fsm.Campaign{Kind: fsm.KindLock, Name: fmt.Sprintf("l%d", i%5), NewLeaseTTL: 1000})
		case 4:
			c = cmdOf(fsm.LeaseRevoke{ID: uint64(i - 3)})
		case 5:
			c = del(fmt.Sprintf("k/%d", (i+25)%50))
		}
		c.Stamp = int64(i) * 1e6
		if i%10 == 0 {
			c.IdempotencyKey = fmt.Sprintf("key-%d", i%30)
		}
		cmds = append(cmds, c)
	}
	return cmds
}

func TestReplicaDigest_EqualOnReplicasOfOneLogAndThroughSnapshots(t *testing.T) {
	cmds := mixedLog(600)
	a, b := fsm.New(), fsm.New()
	for i, c := range cmds {
		l := &raft.Log{Index: uint64(i + 1), Term: 1, Type: raft.LogCommand, Data: c.Encode()}
		a.Apply(l)
		b.Apply(l)
		if i == 300 {
			// b restarts from a snapshot taken by a.
			var buf bytes.Buffer
			if err := fsm.WriteState(&buf, a.State()); err != nil {
				t.Fatal(err)
			}
			b = fsm.New()
			if err := b.Restore(nopCloser{&buf}); err != nil {
				t.Fatal(err)
			}
		}
		if (i+1)%100 == 0 && a.State().ReplicaDigest() != b.State().ReplicaDigest() {
			t.Fatalf("replica digests differ at index %d", i+1)
		}
	}
	if d := a.State().ReplicaDigest(); len(d) != 64 {
		t.Fatalf("digest %q is not hex SHA-256", d)
	}
}

func TestReplicaDigest_DiffersWhenAnyReplicatedFieldDiffers(t *testing.T) {
	base := buildState(t, put("a", "1"), cmdOf(fsm.LeaseGrant{TTL: 1000}))
	for name, other := range map[string]*fsm.State{
		"value":     buildState(t, put("a", "2"), cmdOf(fsm.LeaseGrant{TTL: 1000})),
		"lease ttl": buildState(t, put("a", "1"), cmdOf(fsm.LeaseGrant{TTL: 1001})),
		"member":    buildState(t, put("a", "1"), cmdOf(fsm.LeaseGrant{TTL: 1000}), cmdOf(fsm.MemberSet{Member: fsm.Member{ID: "n1"}})),
		// The same key written at another index: its modify index differs.
		"index of a key": buildState(t, cmdOf(fsm.DigestPoint{}), put("a", "1"), cmdOf(fsm.LeaseGrant{TTL: 1000})),
	} {
		if other.ReplicaDigest() == base.ReplicaDigest() {
			t.Errorf("%s: same replica digest", name)
		}
	}
}

func TestDigestBoundary_IsTheStateAtEachMultiple(t *testing.T) {
	for _, tc := range []struct {
		prev, index, every uint64
		b                  uint64
		after, ok          bool
	}{
		{prev: 99, index: 100, every: 100, b: 100, after: true, ok: true},
		{prev: 98, index: 101, every: 100, b: 100, after: false, ok: true}, // 99 and 100 were no-ops
		{prev: 100, index: 101, every: 100},
		{prev: 150, index: 151, every: 100},
		{prev: 0, index: 5, every: 100},
		{prev: 5, index: 6, every: 0},
		{prev: 199, index: 200, every: 100, b: 200, after: true, ok: true},
	} {
		b, after, ok := fsm.DigestBoundary(tc.prev, tc.index, tc.every)
		if b != tc.b || after != tc.after || ok != tc.ok {
			t.Errorf("DigestBoundary(%d, %d, %d) = %d, %v, %v; want %d, %v, %v",
				tc.prev, tc.index, tc.every, b, after, ok, tc.b, tc.after, tc.ok)
		}
	}
}

type nopCloser struct{ *bytes.Buffer }

func (nopCloser) Close() error { return nil }

func BenchmarkReplicaDigest_10kKeys(b *testing.B) {
	s := fsm.New().State()
	for i := range 10000 {
		s, _ = fsm.ApplyCommand(s, uint64(i+1), 1, put(fmt.Sprintf("key/%06d", i), "a value of some thirty bytes.."))
	}
	b.ResetTimer()
	for range b.N {
		_ = s.ReplicaDigest()
	}
}

// BenchmarkReplicaDigest_100kLeases is the cost of one digest of a large
// state: 100k leases, each holding a lock (docs/performance.md).
func BenchmarkReplicaDigest_100kLeases(b *testing.B) {
	s := fsm.New().State()
	for i := range 100000 {
		c := cmdOf(fsm.Campaign{Kind: fsm.KindLock, Name: fmt.Sprintf("lock/%06d", i), NewLeaseTTL: 10000})
		c.Stamp = int64(i)
		s, _ = fsm.ApplyCommand(s, uint64(i+1), 1, c)
	}
	var buf bytes.Buffer
	if err := fsm.WriteState(&buf, s); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(buf.Len())/(1<<20), "state-MiB")
	b.ResetTimer()
	for range b.N {
		_ = s.ReplicaDigest()
	}
}

func Test_DigestEvery_ScalesWithTheStateInPowersOfTwo(t *testing.T) {
	for _, tc := range []struct {
		every   uint64
		records int
		want    uint64
	}{
		{10000, 0, 10000},
		{10000, 10000, 10000},
		{10000, 10001, 20000},
		{10000, 130000, 160000},
		{100, 3_000_000, 100 << 15},
		{0, 5, 0},
	} {
		if got := fsm.DigestEvery(tc.every, tc.records); got != tc.want {
			t.Errorf("DigestEvery(%d, %d) = %d, want %d", tc.every, tc.records, got, tc.want)
		}
	}
}

func Test_DigestAgreed_ReplicasThatDisagreeOnTheSizeStillSharePoints(t *testing.T) {
	small := fsm.New().State()
	big := small
	for i := range 300 {
		big, _ = fsm.ApplyCommand(big, uint64(i+1), 1, put(fmt.Sprintf("key/%03d", i), "v"))
	}
	if n := big.Records(); n < 300 {
		t.Fatalf("Records() = %d, want at least 300", n)
	}
	shared := 0
	for b := uint64(100); b <= 6400; b += 100 {
		if !fsm.DigestAgreed(b, 100, small) {
			t.Fatalf("a state of %d records has no point at %d with every 100", small.Records(), b)
		}
		if fsm.DigestAgreed(b, 100, big) {
			if b%400 != 0 {
				t.Errorf("a state of %d records has a point at %d, want multiples of 400", big.Records(), b)
			}
			shared++
		}
	}
	if shared != 16 {
		t.Errorf("%d shared points in 100..6400, want 16", shared)
	}
}
