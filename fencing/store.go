package fencing

import (
	"errors"
	"fmt"
	"sync"
)

// Store persists the highest accepted token per name. Implementations must be
// safe for concurrent use.
type Store interface {
	// Raise atomically sets name's highest token to t if t >= the current one
	// and returns the resulting highest and whether t was accepted. It must be
	// durable before returning when the store is persistent.
	Raise(name string, t Token) (highest Token, accepted bool, err error)
	// Highest returns the highest token accepted for name, or 0 if none was.
	Highest(name string) (Token, error)
	// Close releases the store. Calls after Close return an error.
	Close() error
}

// errClosed is returned by the stores of this package after Close.
var errClosed = errors.New("store is closed")

// MemoryStore is a Store kept in memory only: it forgets every token when the
// process exits. Use it for a resource whose own state does not survive a
// restart either, and in tests.
type MemoryStore struct {
	tokenTable
}

// tokenTable is what both stores keep in memory: the highest token per name
// (for BoltStore, only tokens already durable) and whether the store is
// closed. mu guards it; BoltStore holds it across a commit.
type tokenTable struct {
	mu      sync.Mutex
	highest map[string]Token
	closed  bool
}

// beginRaise validates a raise and, when it returns nil, holds mu: the
// caller unlocks it.
func (s *tokenTable) beginRaise(name string, t Token) error {
	if err := checkName(name); err != nil {
		return fmt.Errorf("fencing: raise: %w", err)
	}
	if err := checkToken(t); err != nil {
		return fmt.Errorf("fencing: raise %s: %w", quoteShort(name), err)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("fencing: raise %s: %w", quoteShort(name), errClosed)
	}
	return nil
}

// Highest returns the highest token accepted for name, or 0 if none was.
func (s *tokenTable) Highest(name string) (Token, error) {
	if err := checkName(name); err != nil {
		return 0, fmt.Errorf("fencing: highest: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, fmt.Errorf("fencing: highest %s: %w", quoteShort(name), errClosed)
	}
	return s.highest[name], nil
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{tokenTable{highest: make(map[string]Token)}}
}

// Raise sets name's highest token to t if t is at least the current one. It
// returns the highest token after the call and whether t was accepted.
func (s *MemoryStore) Raise(name string, t Token) (Token, bool, error) {
	if err := s.beginRaise(name, t); err != nil {
		return 0, false, err
	}
	defer s.mu.Unlock()
	cur := s.highest[name]
	if t < cur {
		return cur, false, nil
	}
	s.highest[name] = t
	return t, true, nil
}

// Close makes later calls fail. It never returns an error.
func (s *MemoryStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}
