package fencing

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

func TestBoltStoreReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fencing.db")
	s, err := OpenBoltStore(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct {
		name string
		tok  Token
	}{{"locks/a", 12}, {"locks/a", 15}, {"locks/a", 13}, {"locks/b", 7}} {
		if _, _, err := s.Raise(r.name, r.tok); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = OpenBoltStore(path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	for name, want := range map[string]Token{"locks/a": 15, "locks/b": 7, "locks/c": 0} {
		if got, err := s.Highest(name); err != nil || got != want {
			t.Errorf("after reopen Highest(%q) = %d, %v; want %d", name, got, err, want)
		}
	}
	if _, accepted, err := s.Raise("locks/a", 14); err != nil || accepted {
		t.Errorf("after reopen Raise(locks/a, 14) accepted=%v err=%v; want refused", accepted, err)
	}
	if _, accepted, err := s.Raise("locks/a", 15); err != nil || !accepted {
		t.Errorf("after reopen Raise(locks/a, 15) accepted=%v err=%v; want accepted", accepted, err)
	}
}

// TestBoltStoreFormat checks the documented file layout: one bucket, names as
// keys, big-endian uint64 values.
func TestBoltStoreFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fencing.db")
	s, err := OpenBoltStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Raise("n", 0x0102030405060708); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		var buckets []string
		_ = tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
			buckets = append(buckets, string(name))
			return nil
		})
		if len(buckets) != 1 || buckets[0] != string(boltBucket) {
			t.Errorf("buckets = %q, want [%s]", buckets, boltBucket)
		}
		v := tx.Bucket(boltBucket).Get([]byte("n"))
		if want := []byte{1, 2, 3, 4, 5, 6, 7, 8}; string(v) != string(want) {
			t.Errorf("value = %x, want %x", v, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
}

func TestBoltStoreLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fencing.db")
	s, err := OpenBoltStore(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	start := time.Now()
	s2, err := OpenBoltStore(path)
	elapsed := time.Since(start)
	if err == nil {
		s2.Close()
		t.Fatal("second OpenBoltStore of an open file succeeded")
	}
	if !errors.Is(err, bolterrors.ErrTimeout) {
		t.Errorf("error %v does not wrap bbolt's ErrTimeout", err)
	}
	if !strings.Contains(err.Error(), "locked") || !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not say the file %s is locked", err, path)
	}
	if elapsed < 900*time.Millisecond || elapsed > 3*time.Second {
		t.Errorf("second open failed after %v, want about 1s", elapsed)
	}

	// Once the first store is closed, the file opens again.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s3, err := OpenBoltStore(path)
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	s3.Close()
}

func TestBoltStoreBadFiles(t *testing.T) {
	dir := t.TempDir()

	t.Run("not bolt", func(t *testing.T) {
		path := filepath.Join(dir, "garbage.db")
		if err := os.WriteFile(path, []byte(strings.Repeat("not a bolt file ", 512)), 0o600); err != nil {
			t.Fatal(err)
		}
		if s, err := OpenBoltStore(path); err == nil {
			s.Close()
			t.Fatal("opened a file that is not bbolt")
		} else if !strings.HasPrefix(err.Error(), "fencing: open bolt store ") {
			t.Errorf("error %q lacks context", err)
		}
	})

	t.Run("missing directory", func(t *testing.T) {
		if s, err := OpenBoltStore(filepath.Join(dir, "no", "such", "dir", "x.db")); err == nil {
			s.Close()
			t.Fatal("opened a file in a missing directory")
		}
	})

	t.Run("bad value", func(t *testing.T) {
		path := filepath.Join(dir, "badvalue.db")
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucket(boltBucket)
			if err != nil {
				return err
			}
			var v [8]byte
			binary.BigEndian.PutUint64(v[:], 5)
			if err := b.Put([]byte("good"), v[:]); err != nil {
				return err
			}
			return b.Put([]byte("bad"), []byte{1, 2, 3})
		})
		if err != nil {
			t.Fatal(err)
		}
		db.Close()
		s, err := OpenBoltStore(path)
		if err == nil {
			s.Close()
			t.Fatal("opened a store with a 3-byte value")
		}
		if !strings.Contains(err.Error(), `"bad"`) || !strings.Contains(err.Error(), "3 bytes") {
			t.Errorf("error %q does not name the bad entry", err)
		}
		// The failed open released the file.
		db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: 100 * time.Millisecond})
		if err != nil {
			t.Fatalf("file still locked after a failed open: %v", err)
		}
		db.Close()
	})
}
