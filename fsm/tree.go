package fsm

import (
	"encoding/binary"

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

// u64key is the big-endian form of v: it sorts like the number.
func u64key(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }
