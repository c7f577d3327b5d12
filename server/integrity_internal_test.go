package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/coordd/coordd/fsm"
)

func logsOf(t *testing.T, idx ...uint64) (*raft.InmemStore, []uint64) {
	t.Helper()
	s := raft.NewInmemStore()
	for _, i := range idx {
		data := fsmCmd(fsm.KVPut{Key: fmt.Sprint("k", i), Value: []byte("v")}).Encode()
		if err := s.StoreLog(&raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	return s, idx
}

func TestVerifyLog(t *testing.T) {
	t.Parallel()
	t.Run("a whole log passes", func(t *testing.T) {
		s, idx := logsOf(t, 1, 2, 3, 4)
		if err := verifyLog(s, "raft.db", idx, 0, ""); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("holes at or before the snapshot pass", func(t *testing.T) {
		// A restore or an installed snapshot leaves such holes.
		s, idx := logsOf(t, 1, 2, 9, 10, 11)
		if err := verifyLog(s, "raft.db", idx, 8, "1-8-1"); err != nil {
			t.Fatal(err)
		}
	})
	bad := []struct {
		name      string
		idx       []uint64
		snap      uint64
		snapID    string
		corruptAt uint64
		want      string
	}{
		{"a flipped byte", []uint64{1, 2, 3}, 0, "", 2, "log entry 2 (term 1) is corrupt"},
		{"a hole after the snapshot", []uint64{1, 2, 5, 6}, 2, "1-2-1", 0, "entries 3..4 are missing"},
		{"a log that starts after the snapshot", []uint64{7, 8}, 3, "1-3-1", 0, "entries 4..6 are missing"},
		{"a compacted log without a snapshot", []uint64{7, 8}, 0, "", 0, "entries 1..6 are missing"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			s, idx := logsOf(t, tt.idx...)
			if tt.corruptAt != 0 {
				var l raft.Log
				if err := s.GetLog(tt.corruptAt, &l); err != nil {
					t.Fatal(err)
				}
				l.Data = append([]byte(nil), l.Data...)
				l.Data[len(l.Data)-6] ^= 0x10
				if err := s.StoreLog(&l); err != nil {
					t.Fatal(err)
				}
			}
			err := verifyLog(s, "raft.db", idx, tt.snap, tt.snapID)
			if !errors.Is(err, ErrDataCorrupt) || !strings.Contains(err.Error(), tt.want) ||
				!strings.Contains(err.Error(), "refuses to start") {
				t.Fatalf("%v; want ErrDataCorrupt saying %q", err, tt.want)
			}
		})
	}
}

// boltWithLogs writes a raft.db with n entries through raft-boltdb and
// returns its path.
func boltWithLogs(t *testing.T, n int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "raft.db")
	store, err := openBoltStore(path)
	if err != nil {
		t.Fatal(err)
	}
	var logs []*raft.Log
	for i := 1; i <= n; i++ {
		data := fsmCmd(fsm.KVPut{Key: fmt.Sprint("key/", i), Value: []byte(strings.Repeat("v", 40))}).Encode()
		logs = append(logs, &raft.Log{Index: uint64(i), Term: 1, Type: raft.LogCommand, Data: data})
	}
	if err := store.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCheckBoltFile(t *testing.T) {
	t.Parallel()
	const n = 3000
	t.Run("a sound file lists its log", func(t *testing.T) {
		idx, err := checkBoltFile(boltWithLogs(t, n))
		if err != nil || len(idx) != n || idx[0] != 1 || idx[n-1] != n {
			t.Fatalf("%d indexes, %v", len(idx), err)
		}
	})
	t.Run("a missing file is a new node", func(t *testing.T) {
		if idx, err := checkBoltFile(filepath.Join(t.TempDir(), "raft.db")); err != nil || idx != nil {
			t.Fatal(idx, err)
		}
	})
	pageSize := os.Getpagesize()
	damage := []struct {
		name string
		f    func(b []byte) []byte
		want string
	}{
		{"both meta pages garbage", func(b []byte) []byte {
			for i := range 2 * pageSize {
				b[i] = byte(i * 7)
			}
			return b
		}, "bbolt cannot open"},
		{"a zeroed file", func(b []byte) []byte { return make([]byte, len(b)) }, "bbolt cannot open"},
		// bbolt's own open asserts on this in a goroutine of its own: the
		// process died with "assertion failed: page N: has unexpected
		// type/flags" and no file name.
		{"a page with bad flags", func(b []byte) []byte {
			pg := len(b) / pageSize / 2
			b[pg*pageSize+8], b[pg*pageSize+9] = 0xFF, 0xFF
			return b
		}, "corrupted page"},
		{"truncated to half", func(b []byte) []byte { return b[:len(b)/2] }, "raft.db"},
	}
	for _, tt := range damage {
		t.Run(tt.name, func(t *testing.T) {
			path := boltWithLogs(t, n)
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, tt.f(b), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err = checkBoltFile(path)
			t.Log(err)
			if !errors.Is(err, ErrDataCorrupt) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("%v; want ErrDataCorrupt naming %s and saying %q", err, path, tt.want)
			}
		})
	}
}

func TestSnapshotGuard_ListsOnlyTheNewest_RefusesAnUnreadableNewest(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fileSnaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 3, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	_, trans := raft.NewInmemTransport("")
	for _, index := range []uint64{10, 20, 30} {
		sink, err := fileSnaps.Create(raft.SnapshotVersionMax, index, 1, raft.Configuration{}, 1, trans)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sink.Write([]byte("state")); err != nil {
			t.Fatal(err)
		}
		if err := sink.Close(); err != nil {
			t.Fatal(err)
		}
	}
	store := newStatsSnapshotStore(fileSnaps, dir, newSnapshotStats())
	metas, err := store.List()
	if err != nil || len(metas) != 1 || metas[0].Index != 30 {
		t.Fatalf("List = %v, %v; want only the snapshot at 30", metas, err)
	}
	dirs, _ := store.guard.dirs()
	sort.Strings(dirs)
	newest := dirs[len(dirs)-1]
	if err := os.WriteFile(filepath.Join(dir, "snapshots", newest, "meta.json"), []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Raft's store alone now offers the snapshot at 20.
	if inner, _ := fileSnaps.List(); len(inner) == 0 || inner[0].Index != 20 {
		t.Fatalf("raft's own list: %v", inner)
	}
	if _, err := store.List(); !errors.Is(err, ErrDataCorrupt) || !strings.Contains(err.Error(), newest) {
		t.Fatalf("List with a garbled newest meta.json: %v; want ErrDataCorrupt naming %s", err, newest)
	}
}

func TestCheckedLogStore_RefusesACorruptEntry(t *testing.T) {
	t.Parallel()
	s, _ := logsOf(t, 1, 2)
	var l raft.Log
	if err := s.GetLog(2, &l); err != nil {
		t.Fatal(err)
	}
	bad := l // InmemStore keeps the pointer it is given
	bad.Data = append([]byte(nil), l.Data...)
	bad.Data[3] ^= 0x08
	if err := s.StoreLog(&bad); err != nil {
		t.Fatal(err)
	}
	c := &checkedLogStore{LogStore: s, path: "raft.db", log: hclog.NewNullLogger()}
	if err := c.GetLog(1, &l); err != nil {
		t.Fatal(err)
	}
	err := c.GetLog(2, &l)
	if err == nil || !strings.Contains(err.Error(), "log entry 2 (term 1) read from raft.db is corrupt") ||
		!strings.Contains(err.Error(), "checksum mismatch") {
		t.Fatalf("GetLog of a corrupt entry: %v", err)
	}
}

// fsmCmd is fsm.NewCommand for a payload the test knows is valid.
func fsmCmd(p fsm.Payload) fsm.Command {
	c, err := fsm.NewCommand(p)
	if err != nil {
		panic(err)
	}
	return c
}
