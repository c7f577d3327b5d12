package fsm_test

import (
	"fmt"
	"testing"

	"github.com/coordd/coordd/fsm"
)

// watchCase applies setup at indexes 1.., takes a watch on the resulting
// state, applies then (at the next index) and checks whether it fired.
type watchCase struct {
	name  string
	setup []fsm.Command
	then  fsm.Command
	fires bool
}

func runWatchCases(t *testing.T, cases []watchCase, watch func(*fsm.State) <-chan struct{}) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := fsm.New()
			for i, c := range tt.setup {
				applyTo(t, f, uint64(i+1), c)
			}
			ch := watch(f.State())
			if closed(ch) {
				t.Fatal("watch channel closed before any change")
			}
			applyTo(t, f, uint64(len(tt.setup)+1), tt.then)
			if got := closed(ch); got != tt.fires {
				t.Fatalf("watch fired = %v, want %v", got, tt.fires)
			}
		})
	}
}

func TestWatchKeyFiresOnChangesToThatKeyOnly(t *testing.T) {
	t.Parallel()
	existing := []fsm.Command{put("a/b", "1"), put("a/c", "1"), put("zzz", "1")}
	runWatchCases(t, []watchCase{
		{"a put to the key fires", existing, put("a/b", "2"), true},
		{"a delete of the key fires", existing, del("a/b"), true},
		{"a CAS delete of the key fires", existing, delCAS("a/b", 1), true},
		{"a prefix delete covering the key fires", existing, delPrefix("a/"), true},
		{"the empty prefix delete fires", existing, delPrefix(""), true},
		{"a put creating a missing key fires", []fsm.Command{put("zzz", "1")}, put("a/b", "1"), true},
		{"a put to an unrelated key does not fire", existing, put("zzz", "2"), false},
		{"a put to a new unrelated key does not fire", existing, put("q", "2"), false},
		{"a put to a sibling key does not fire", existing, put("a/c", "2"), false},
		{"a put to a key extending the key does not fire", existing, put("a/bc", "2"), false},
		{"a delete of an unrelated key does not fire", existing, del("zzz"), false},
		{"a prefix delete elsewhere does not fire", existing, delPrefix("z"), false},
		{"a prefix delete of nothing does not fire", existing, delPrefix("nothing"), false},
		{"a failed create of the key does not fire", existing, putCreate("a/b", "2"), false},
		{"a failed CAS put to the key does not fire", existing, putCAS("a/b", "2", 99), false},
		{"a failed CAS delete of the key does not fire", existing, delCAS("a/b", 99), false},
		{"a member change does not fire", existing, cmdOf(fsm.MemberSet{fsm.Member{ID: "n1"}}), false},
	}, func(s *fsm.State) <-chan struct{} {
		_, _, ch := s.WatchKey("a/b")
		return ch
	})
}

func TestWatchPrefixFiresOnChangesUnderThePrefix(t *testing.T) {
	t.Parallel()
	existing := []fsm.Command{put("p/1", "1"), put("p/2", "1"), put("q/1", "1")}
	runWatchCases(t, []watchCase{
		{"a put to an existing key under the prefix fires", existing, put("p/1", "2"), true},
		{"a put creating a key under the prefix fires", existing, put("p/3", "1"), true},
		{"a delete under the prefix fires", existing, del("p/2"), true},
		{"a prefix delete under the prefix fires", existing, delPrefix("p/2"), true},
		{"a prefix delete of the prefix fires", existing, delPrefix("p/"), true},
		{"a put under a prefix with no keys yet fires", []fsm.Command{put("q/1", "1")}, put("p/1", "1"), true},
		{"a put outside the prefix does not fire", existing, put("q/1", "2"), false},
		{"a new key outside the prefix does not fire", existing, put("q/2", "2"), false},
		{"a delete outside the prefix does not fire", existing, del("q/1"), false},
		{"a failed CAS under the prefix does not fire", existing, putCAS("p/1", "x", 42), false},
	}, func(s *fsm.State) <-chan struct{} {
		_, _, ch := s.WatchPrefix("p/", 0)
		return ch
	})
}

func TestWatchKeyOfAMissingKeyFiresWhenTheKeyIsCreated(t *testing.T) {
	t.Parallel()
	// Through several tree shapes: empty tree, a key that prefixes the
	// watched one, a key sharing an edge, a key extending it.
	for _, setup := range [][]fsm.Command{
		nil,
		{put("a", "1")},
		{put("abc", "1")},
		{put("abd", "1"), put("x", "1")},
		{put("ab/c", "1")},
	} {
		t.Run(fmt.Sprint(len(setup)), func(t *testing.T) {
			t.Parallel()
			f := fsm.New()
			for i, c := range setup {
				applyTo(t, f, uint64(i+1), c)
			}
			e, _, ch := f.State().WatchKey("ab")
			if e != nil {
				t.Fatal("entry for a missing key")
			}
			applyTo(t, f, 100, put("ab", "v"))
			if !closed(ch) {
				t.Fatal("watch on a missing key did not fire when it was created")
			}
		})
	}
}

func TestWatchesFireWhenAPrefixDeleteRemovesThousandsOfKeys(t *testing.T) {
	t.Parallel()
	// More nodes than iradix tracks one by one (8192), so that the slow
	// notification path runs.
	const n = 10000
	f := fsm.New()
	for i := range n {
		applyTo(t, f, uint64(i+1), put(fmt.Sprintf("big/%05d", i), "v"))
	}
	applyTo(t, f, n+1, put("other", "v"))
	s := f.State()
	var chans []<-chan struct{}
	for _, i := range []int{0, 1, 4999, 8191, 8192, 9999} {
		_, _, ch := s.WatchKey(fmt.Sprintf("big/%05d", i))
		chans = append(chans, ch)
	}
	_, _, prefixCh := s.WatchPrefix("big/", 1)
	_, _, otherCh := s.WatchKey("other")
	res := applyTo(t, f, n+2, delPrefix("big/"))
	if res.Deleted != n || f.State().KVLen() != 1 {
		t.Fatalf("Deleted %d, KVLen %d; want %d and 1", res.Deleted, f.State().KVLen(), n)
	}
	for i, ch := range chans {
		if !closed(ch) {
			t.Errorf("key watch %d did not fire", i)
		}
	}
	if !closed(prefixCh) {
		t.Error("prefix watch did not fire")
	}
	if closed(otherCh) {
		t.Error("watch on a key outside the prefix fired")
	}
}

func TestChangeIndexRules(t *testing.T) {
	t.Parallel()
	t.Run("an empty state reports index 1 for a key and a prefix", func(t *testing.T) {
		t.Parallel()
		s := fsm.New().State()
		if e, idx, _ := s.WatchKey("k"); e != nil || idx != 1 {
			t.Fatalf("WatchKey = %v, %d; want nil, 1", e, idx)
		}
		if es, idx, _ := s.WatchPrefix("", 0); len(es) != 0 || idx != 1 {
			t.Fatalf("WatchPrefix = %v, %d; want none, 1", es, idx)
		}
	})
	t.Run("a key written at index 0 still reports index 1", func(t *testing.T) {
		t.Parallel()
		s, _ := fsm.ApplyCommand(fsm.New().State(), 0, 0, put("k", "v"))
		if e, idx, _ := s.WatchKey("k"); e == nil || idx != 1 {
			t.Fatalf("WatchKey = %v, %d; want the entry, 1", e, idx)
		}
		if _, idx, _ := s.WatchPrefix("k", 0); idx != 1 {
			t.Fatalf("WatchPrefix index = %d, want 1", idx)
		}
	})
	// 1 put a, 2 put b/1, 3 put b/2, 4 put c, 5 delete c, 6 put b/1 again,
	// 7 failed delete of a missing key.
	s := buildState(t, put("a", "1"), put("b/1", "1"), put("b/2", "1"), put("c", "1"), del("c"), put("b/1", "2"))
	s, res := fsm.ApplyCommand(s, 7, 1, del("nope"))
	if res.Err == nil {
		t.Fatal("delete of a missing key succeeded")
	}
	keyCases := []struct {
		key  string
		want uint64
	}{
		{"a", 1},     // existing key: its ModifyIndex, even below the last delete
		{"b/1", 6},   // existing key modified again
		{"b/2", 3},   // untouched sibling
		{"c", 5},     // deleted key: the last delete
		{"never", 5}, // never-existing key: the last delete anywhere, not a failed one
	}
	for _, tt := range keyCases {
		if _, idx, _ := s.WatchKey(tt.key); idx != tt.want {
			t.Errorf("WatchKey(%q) index = %d, want %d", tt.key, idx, tt.want)
		}
	}
	prefixCases := []struct {
		prefix string
		limit  int
		keys   []string
		want   uint64
	}{
		{"b/", 0, []string{"b/1", "b/2"}, 6},
		{"b/", 1, []string{"b/1"}, 6},  // the index covers entries beyond the limit
		{"b/2", 0, []string{"b/2"}, 5}, // the last delete anywhere is later than b/2
		{"a", 0, []string{"a"}, 5},
		{"zz", 0, nil, 5},
		{"", 0, []string{"a", "b/1", "b/2"}, 6},
		{"", 2, []string{"a", "b/1"}, 6},
		{"", -1, []string{"a", "b/1", "b/2"}, 6}, // a negative limit means no limit
	}
	for _, tt := range prefixCases {
		es, idx, _ := s.WatchPrefix(tt.prefix, tt.limit)
		var keys []string
		for _, e := range es {
			keys = append(keys, e.Key)
		}
		if fmt.Sprint(keys) != fmt.Sprint(tt.keys) || idx != tt.want {
			t.Errorf("WatchPrefix(%q, %d) = %q, %d; want %q, %d", tt.prefix, tt.limit, keys, idx, tt.keys, tt.want)
		}
	}
}

func TestAPrefixDeleteOfNothingDoesNotMoveTheDeleteIndex(t *testing.T) {
	t.Parallel()
	s := buildState(t, put("a", "1"), put("b", "1"), del("b"))
	s, res := fsm.ApplyCommand(s, 10, 1, delPrefix("zzz"))
	if res.Deleted != 0 || res.Err != nil {
		t.Fatalf("result = %+v", res)
	}
	if _, idx, _ := s.WatchKey("missing"); idx != 3 {
		t.Fatalf("missing key index = %d, want 3 (the last real delete)", idx)
	}
	s, _ = fsm.ApplyCommand(s, 11, 1, delPrefix("a"))
	if _, idx, _ := s.WatchKey("missing"); idx != 11 {
		t.Fatalf("missing key index = %d, want 11 after a prefix delete that removed a key", idx)
	}
}
