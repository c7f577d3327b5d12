package fsm

import (
	iradix "github.com/hashicorp/go-immutable-radix/v2"
)

// put returns t with k set to v. With notify set, the watch channels of
// every node the insert changes are closed (only for the live state).
func put[T any](t *iradix.Tree[T], k []byte, v T, notify bool) *iradix.Tree[T] {
	txn := t.Txn()
	txn.TrackMutate(notify)
	txn.Insert(k, v)
	return txn.Commit()
}

// del returns t without k, and whether k was there.
func del[T any](t *iradix.Tree[T], k []byte, notify bool) (*iradix.Tree[T], bool) {
	if _, ok := t.Get(k); !ok {
		return t, false
	}
	txn := t.Txn()
	txn.TrackMutate(notify)
	txn.Delete(k)
	return txn.Commit(), true
}

// u64key is v as u64KeyLen bytes, one per 4-bit nibble, most significant
// first: it sorts like the number.
//
// Why nibbles and not the 8 big-endian bytes: an immutable radix tree
// copies every node on the path of a write, with its edge list, and
// numbers that grow one by one (lease IDs, Raft indexes, stamps) fill a
// node with up to 256 edges at the last byte — 4 KiB copied per write, for
// every write. With nibbles a node has at most 16 edges
// (BenchmarkApply_*: less than half the bytes allocated per entry).
func u64key(v uint64) []byte { return appendU64Key(make([]byte, 0, u64KeyLen), v) }

// u64KeyLen is the length of a u64key.
const u64KeyLen = 16

func appendU64Key(b []byte, v uint64) []byte {
	for shift := 60; shift >= 0; shift -= 4 {
		b = append(b, byte(v>>uint(shift))&0xf)
	}
	return b
}

// keyU64 reads the number a u64key at the start of k holds.
func keyU64(k []byte) uint64 {
	var v uint64
	for _, c := range k[:u64KeyLen] {
		v = v<<4 | uint64(c)
	}
	return v
}
