package fencing

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// boltBucket is the one bucket of a BoltStore file: name -> big-endian uint64.
var boltBucket = []byte("fencing_tokens")

// boltOpenTimeout bounds the wait for the file lock, so that a second process
// (or a second open in this one) fails clearly instead of hanging.
const boltOpenTimeout = time.Second

// BoltStore is a Store in a bbolt file. Each Raise that raises a token commits
// a transaction and fsyncs it before returning, so an accepted token survives a
// crash. The file holds one bucket mapping each name to its highest token as a
// big-endian uint64.
//
// The highest tokens are also cached in memory (one entry per name), so a
// check with a token equal to or lower than the highest costs no disk write.
type BoltStore struct {
	path string

	// tokenTable's mu serialises Raise, which holds it across the commit,
	// so highest only ever holds tokens that are durable.
	tokenTable
	db *bolt.DB
}

var _ Store = (*BoltStore)(nil)

// OpenBoltStore opens or creates the bbolt file at path (mode 0600; its
// directory must exist). It waits at most one second for the file lock: a file
// that another process, or another BoltStore of this process, has open fails
// with an error that says so.
func OpenBoltStore(path string) (*BoltStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: boltOpenTimeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("fencing: open bolt store %s: the file is locked, another process or store has it open (waited %s): %w",
			path, boltOpenTimeout, err)
	}
	if err != nil {
		return nil, fmt.Errorf("fencing: open bolt store %s: %w", path, err)
	}
	s := &BoltStore{path: path, db: db, tokenTable: tokenTable{highest: make(map[string]Token)}}
	if err := s.load(); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

// load creates the bucket if needed and reads every name into the cache.
func (s *BoltStore) load() error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(boltBucket)
		if err != nil {
			return fmt.Errorf("create bucket: %w", err)
		}
		return b.ForEach(func(k, v []byte) error {
			t, err := decodeToken(k, v)
			if err != nil {
				return err
			}
			s.highest[string(k)] = t
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("fencing: open bolt store %s: %w", s.path, err)
	}
	return nil
}

func decodeToken(k, v []byte) (Token, error) {
	if v == nil {
		return 0, fmt.Errorf("%s is a nested bucket, not a token", quoteShort(string(k)))
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("value of %s is %d bytes, want 8", quoteShort(string(k)), len(v))
	}
	return Token(binary.BigEndian.Uint64(v)), nil
}

// Raise sets name's highest token to t if t is at least the current one. It
// returns the highest token after the call and whether t was accepted. A raise
// is committed and fsynced before Raise returns; if the commit fails, the
// error is returned and t is not accepted.
func (s *BoltStore) Raise(name string, t Token) (Token, bool, error) {
	if err := s.beginRaise(name, t); err != nil {
		return 0, false, err
	}
	defer s.mu.Unlock()
	cur := s.highest[name]
	switch {
	case t < cur:
		return cur, false, nil
	case t == cur:
		return cur, true, nil
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(boltBucket)
		if b == nil {
			return fmt.Errorf("bucket %s is missing", boltBucket)
		}
		var v [8]byte
		binary.BigEndian.PutUint64(v[:], uint64(t))
		return b.Put([]byte(name), v[:])
	})
	if err != nil {
		return cur, false, fmt.Errorf("fencing: raise %s to %d in %s: %w", quoteShort(name), t, s.path, err)
	}
	s.highest[name] = t
	return t, true, nil
}

// Close closes the file, releasing its lock. A second Close returns nil.
func (s *BoltStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("fencing: close bolt store %s: %w", s.path, err)
	}
	return nil
}
