package fencing

import (
	"errors"
	"math"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// storeFactories are the stores that must pass the same contract.
var storeFactories = []struct {
	name string
	open func(t *testing.T) Store
}{
	{"memory", func(t *testing.T) Store { return NewMemoryStore() }},
	{"bolt", func(t *testing.T) Store {
		s, err := OpenBoltStore(filepath.Join(t.TempDir(), "fencing.db"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}},
}

// TestStoreContract runs one table of Raise and Highest calls against every
// Store of the package.
func TestStoreContract(t *testing.T) {
	type step struct {
		op      string // "raise" or "highest"
		name    string
		tok     Token
		want    Token // resulting highest
		accept  bool
		wantErr error
	}
	long := strings.Repeat("n", MaxNameLen)
	steps := []step{
		{op: "highest", name: "a", want: 0},
		{op: "raise", name: "a", tok: 12, want: 12, accept: true},
		{op: "highest", name: "a", want: 12},
		{op: "raise", name: "a", tok: 12, want: 12, accept: true}, // equal: same holder
		{op: "raise", name: "a", tok: 11, want: 12, accept: false},
		{op: "raise", name: "a", tok: 1, want: 12, accept: false},
		{op: "raise", name: "a", tok: 15, want: 15, accept: true},
		{op: "raise", name: "a", tok: 12, want: 15, accept: false},
		{op: "highest", name: "a", want: 15},
		// names are independent
		{op: "highest", name: "b", want: 0},
		{op: "raise", name: "b", tok: 3, want: 3, accept: true},
		{op: "highest", name: "a", want: 15},
		{op: "raise", name: "A", tok: 1, want: 1, accept: true}, // case matters
		{op: "raise", name: long, tok: 7, want: 7, accept: true},
		{op: "raise", name: "ünïcode/名前", tok: 2, want: 2, accept: true},
		{op: "raise", name: "max", tok: math.MaxUint64, want: math.MaxUint64, accept: true},
		{op: "raise", name: "max", tok: math.MaxUint64 - 1, want: math.MaxUint64, accept: false},
		// invalid input
		{op: "raise", name: "", tok: 1, wantErr: ErrBadName},
		{op: "raise", name: long + "x", tok: 1, wantErr: ErrBadName},
		{op: "raise", name: "bad\xff", tok: 1, wantErr: ErrBadName},
		{op: "raise", name: "a", tok: 0, wantErr: ErrBadToken},
		{op: "highest", name: "", wantErr: ErrBadName},
		{op: "highest", name: "a", want: 15},
	}
	for _, f := range storeFactories {
		t.Run(f.name, func(t *testing.T) {
			s := f.open(t)
			defer s.Close()
			for i, st := range steps {
				var got Token
				var accepted bool
				var err error
				if st.op == "raise" {
					got, accepted, err = s.Raise(st.name, st.tok)
				} else {
					got, err = s.Highest(st.name)
				}
				if st.wantErr != nil {
					if !errors.Is(err, st.wantErr) {
						t.Errorf("step %d %s(%q, %d): err = %v, want %v", i, st.op, st.name, st.tok, err, st.wantErr)
					}
					continue
				}
				if err != nil {
					t.Errorf("step %d %s(%q, %d): %v", i, st.op, st.name, st.tok, err)
					continue
				}
				if got != st.want || (st.op == "raise" && accepted != st.accept) {
					t.Errorf("step %d %s(%q, %d) = %d, %v; want %d, %v", i, st.op, st.name, st.tok, got, accepted, st.want, st.accept)
				}
			}
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if _, _, err := s.Raise("a", 100); err == nil {
				t.Error("Raise after Close succeeded")
			}
			if _, err := s.Highest("a"); err == nil {
				t.Error("Highest after Close succeeded")
			}
			if err := s.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
		})
	}
}

// TestStoreConcurrentRaise checks that concurrent raises of one name end with
// the maximum and that each caller's view is consistent with the store's.
func TestStoreConcurrentRaise(t *testing.T) {
	for _, f := range storeFactories {
		t.Run(f.name, func(t *testing.T) {
			s := f.open(t)
			defer s.Close()
			const workers = 8
			var wg sync.WaitGroup
			for w := range workers {
				wg.Go(func() {
					// Worker w raises w+1, w+1+workers, ...: every token once.
					for tok := Token(w + 1); tok <= 400; tok += workers {
						highest, accepted, err := s.Raise("n", tok)
						if err != nil {
							t.Error(err)
							return
						}
						if accepted && highest != tok {
							t.Errorf("Raise(%d) accepted with highest %d", tok, highest)
						}
						if !accepted && highest <= tok {
							t.Errorf("Raise(%d) refused with highest %d", tok, highest)
						}
					}
				})
			}
			wg.Wait()
			if h, err := s.Highest("n"); err != nil || h != 400 {
				t.Fatalf("Highest = %d, %v; want 400", h, err)
			}
		})
	}
}
