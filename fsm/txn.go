package fsm

import (
	"errors"
	"fmt"
)

// The txn domain: several KV operations applied atomically in one entry,
// under conditions on keys, leases and fencing tokens (etcd's Txn, Consul's
// /v1/txn). Every compare is evaluated against the state before the entry;
// if all hold the Then ops run, else the Else ops, in order, each seeing
// the effect of the ones before it. Elections stay out of transactions:
// a campaign that waits has no place in an atomic step.
//
// Invariant (all or nothing): the ops of the branch that runs either all
// apply or none does. The only op that can fail (a put attached to a lease
// that does not exist) is checked for the whole branch before anything is
// written, so apply never has to undo a write (it could not: the watch
// channels of what it changed are closed already).

// CmdTxn is the command type of a transaction. Its value is part of the
// log format.
const CmdTxn CommandType = 18

func init() {
	register(CmdTxn, "txn", payloadV1, decodeTxn)
}

// Limits of one transaction, checked by validate (so by the server before
// Raft, and by every decoder).
const (
	// MaxTxnOps bounds the compares plus the ops of both branches.
	MaxTxnOps = 128
	// MaxTxnBytes bounds the sum of the keys, names and values of a
	// transaction.
	MaxTxnBytes = 1 << 20
)

// CompareTarget says what a compare looks at. Values are part of the log
// format.
type CompareTarget uint8

// Compare targets.
const (
	// CompareExists holds if the key exists.
	CompareExists CompareTarget = 1
	// CompareAbsent holds if the key does not exist.
	CompareAbsent CompareTarget = 2
	// CompareModifyIndex compares the key's modify index (0 if absent).
	CompareModifyIndex CompareTarget = 3
	// CompareCreateIndex compares the key's create index (0 if absent).
	CompareCreateIndex CompareTarget = 4
	// CompareVersion compares the key's version (0 if absent).
	CompareVersion CompareTarget = 5
	// CompareValue compares the key's value (= or !=); it does not hold
	// for a key that does not exist, whichever the operator.
	CompareValue CompareTarget = 6
	// CompareLeaseAlive holds if the lease Number exists (granted and not
	// yet expired or revoked in the replicated state).
	CompareLeaseAlive CompareTarget = 7
	// CompareFence holds if Number is the fencing token of a current
	// holder of the election or lock named Key.
	CompareFence CompareTarget = 8
)

var compareTargetNames = [...]string{"", "exists", "absent", "modify_index", "create_index", "version", "value", "lease_alive", "fence"}

// String is the target's name as the HTTP API spells it.
func (t CompareTarget) String() string {
	if int(t) < len(compareTargetNames) && t != 0 {
		return compareTargetNames[t]
	}
	return fmt.Sprintf("target(%d)", uint8(t))
}

// CompareOp is the operator of a numeric or value compare. Values are part
// of the log format.
type CompareOp uint8

// Compare operators.
const (
	OpEqual    CompareOp = 1
	OpNotEqual CompareOp = 2
	OpLess     CompareOp = 3
	OpGreater  CompareOp = 4
)

var compareOpNames = [...]string{"", "=", "!=", "<", ">"}

// String is the operator as the HTTP API spells it.
func (o CompareOp) String() string {
	if int(o) < len(compareOpNames) && o != 0 {
		return compareOpNames[o]
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// TxnCompare is one condition of a transaction.
type TxnCompare struct {
	Target CompareTarget
	// Key is the key compared, or the election or lock name of a
	// CompareFence; empty for CompareLeaseAlive.
	Key string
	// Op is the operator of numeric and value compares (0 for the others).
	Op CompareOp
	// Number is the index or version compared, the lease of
	// CompareLeaseAlive, or the token of CompareFence.
	Number uint64
	// Value is the value of a CompareValue.
	Value []byte
}

// TxnOpKind says what an op does. Values are part of the log format.
type TxnOpKind uint8

// Op kinds.
const (
	// TxnPut writes Key (attached to Lease when non-zero).
	TxnPut TxnOpKind = 1
	// TxnDelete deletes Key (a key that does not exist deletes nothing).
	TxnDelete TxnOpKind = 2
	// TxnDeletePrefix deletes every key starting with Key.
	TxnDeletePrefix TxnOpKind = 3
	// TxnGet reads Key as the ops before it in the branch left it.
	TxnGet TxnOpKind = 4
)

var txnOpNames = [...]string{"", "put", "delete", "delete_prefix", "get"}

// String is the kind as the HTTP API spells it.
func (k TxnOpKind) String() string {
	if int(k) < len(txnOpNames) && k != 0 {
		return txnOpNames[k]
	}
	return fmt.Sprintf("op(%d)", uint8(k))
}

// TxnOp is one operation of a branch.
type TxnOp struct {
	Kind  TxnOpKind
	Key   string
	Value []byte
	Lease uint64
}

// Txn is the payload of CmdTxn.
type Txn struct {
	Compares []TxnCompare
	Then     []TxnOp
	Else     []TxnOp
}

// TxnResult says which branch ran and what each of its ops did.
type TxnResult struct {
	// Succeeded is true when every compare held and Then ran.
	Succeeded bool
	// Failed is the index of the first compare that did not hold (when
	// Succeeded is false and there are compares).
	Failed int
	// Current is what that compare found: the key's index or version for
	// a numeric compare, the newest current holder's token for a fence (0:
	// nobody holds the name), 0 otherwise.
	Current uint64
	// Ops has one result per op of the branch that ran, in order.
	Ops []TxnOpResult
}

// TxnOpResult is what one op did.
type TxnOpResult struct {
	Kind TxnOpKind
	// Entry is the key as a put wrote it, or as a get found it (nil: the
	// key does not exist).
	Entry *KVEntry
	// Prev is the key as it was before a single-key delete (nil: it did
	// not exist).
	Prev *KVEntry
	// Deleted counts the keys a delete removed.
	Deleted int
}

// Type implements Payload.
func (Txn) Type() CommandType { return CmdTxn }

// encode writes compares, then ops and else ops, each list as a count and
// its items: compare = target key op number value; op = kind key value
// lease.
func (p Txn) encode(e *enc) uint8 {
	e.uvarint(uint64(len(p.Compares)))
	for _, c := range p.Compares {
		e.uvarint(uint64(c.Target))
		e.str(c.Key)
		e.uvarint(uint64(c.Op))
		e.uvarint(c.Number)
		e.bytes(c.Value)
	}
	for _, ops := range [][]TxnOp{p.Then, p.Else} {
		e.uvarint(uint64(len(ops)))
		for _, op := range ops {
			e.uvarint(uint64(op.Kind))
			e.str(op.Key)
			e.bytes(op.Value)
			e.uvarint(op.Lease)
		}
	}
	return payloadV1
}

// Minimum encoded sizes of a compare and an op (every field one byte).
const (
	txnCompareMin = 5
	txnOpMin      = 4
)

func decodeTxn(_ uint8, d *dec) Payload {
	var p Txn
	if n := batchLen(d, txnCompareMin); n > 0 {
		p.Compares = make([]TxnCompare, 0, n)
		for range n {
			p.Compares = append(p.Compares, TxnCompare{Target: CompareTarget(d.u8()), Key: d.str(), Op: CompareOp(d.u8()), Number: d.uvarint(), Value: d.bytes()})
		}
	}
	for _, ops := range []*[]TxnOp{&p.Then, &p.Else} {
		if n := batchLen(d, txnOpMin); n > 0 {
			*ops = make([]TxnOp, 0, n)
			for range n {
				*ops = append(*ops, TxnOp{Kind: TxnOpKind(d.u8()), Key: d.str(), Value: d.bytes(), Lease: d.uvarint()})
			}
		}
	}
	return p
}

// Sentinel errors of transaction validation: every one also matches
// ErrInvalid when it comes from NewCommand.
var (
	// ErrTxnTooLarge means a transaction has more than MaxTxnOps compares
	// and ops, or more than MaxTxnBytes of keys, names and values.
	ErrTxnTooLarge = errors.New("fsm: transaction too large")
)

// validate is the one rule of a transaction, used by NewCommand, the
// decoder (so by the server before Raft, and by Apply) and the fuzzers.
func (p Txn) validate() error {
	if n := len(p.Compares) + len(p.Then) + len(p.Else); n > MaxTxnOps {
		return fmt.Errorf("%w: %d compares and ops (max %d)", ErrTxnTooLarge, n, MaxTxnOps)
	}
	size := 0
	for i, c := range p.Compares {
		size += len(c.Key) + len(c.Value)
		if err := c.validate(); err != nil {
			return fmt.Errorf("if[%d]: %w", i, err)
		}
	}
	for b, ops := range [][]TxnOp{p.Then, p.Else} {
		for i, op := range ops {
			size += len(op.Key) + len(op.Value)
			if err := op.validate(); err != nil {
				return fmt.Errorf("%s[%d]: %w", [2]string{"then", "else"}[b], i, err)
			}
		}
	}
	if size > MaxTxnBytes {
		return fmt.Errorf("%w: %d bytes of keys and values (max %d)", ErrTxnTooLarge, size, MaxTxnBytes)
	}
	return nil
}

func (c TxnCompare) validate() error {
	needKey := func() error {
		if c.Key == "" {
			return fmt.Errorf("%s compare without a key", c.Target)
		}
		return nil
	}
	switch c.Target {
	case CompareExists, CompareAbsent:
		if c.Op != 0 || c.Number != 0 || len(c.Value) != 0 {
			return fmt.Errorf("%s compare takes only a key", c.Target)
		}
		return needKey()
	case CompareModifyIndex, CompareCreateIndex, CompareVersion:
		if c.Op < OpEqual || c.Op > OpGreater {
			return fmt.Errorf("%s compare with operator %d (want =, !=, < or >)", c.Target, c.Op)
		}
		if len(c.Value) != 0 {
			return fmt.Errorf("%s compare takes a number, not a value", c.Target)
		}
		return needKey()
	case CompareValue:
		if c.Op != OpEqual && c.Op != OpNotEqual {
			return fmt.Errorf("value compare with operator %d (want = or !=)", c.Op)
		}
		if c.Number != 0 {
			return errors.New("value compare takes a value, not a number")
		}
		return needKey()
	case CompareLeaseAlive:
		if c.Key != "" || c.Op != 0 || len(c.Value) != 0 || c.Number == 0 {
			return errors.New("lease_alive compare takes only a lease id (> 0)")
		}
		return nil
	case CompareFence:
		if c.Op != 0 || len(c.Value) != 0 || c.Number == 0 {
			return errors.New("fence compare takes only a name and a token (> 0)")
		}
		if c.Key == "" {
			return errors.New("fence compare without a name")
		}
		return nil
	}
	return fmt.Errorf("unknown compare target %d", c.Target)
}

func (op TxnOp) validate() error {
	switch op.Kind {
	case TxnPut:
	case TxnDelete, TxnGet, TxnDeletePrefix:
		if len(op.Value) != 0 || op.Lease != 0 {
			return fmt.Errorf("%s op takes only a key", op.Kind)
		}
	default:
		return fmt.Errorf("unknown op kind %d", op.Kind)
	}
	if op.Key == "" && op.Kind != TxnDeletePrefix {
		return fmt.Errorf("%s op without a key", op.Kind)
	}
	// The rules of the single-key commands hold inside a transaction too.
	switch op.Kind {
	case TxnPut:
		return KVPut{Key: op.Key, Value: op.Value, Lease: op.Lease}.validate()
	case TxnDelete, TxnDeletePrefix:
		return KVDelete{Key: op.Key, Prefix: op.Kind == TxnDeletePrefix}.validate()
	}
	return nil
}

// eval reports whether c holds in s, and what it found (see
// TxnResult.Current).
func (c TxnCompare) eval(s *State) (bool, uint64) {
	switch c.Target {
	case CompareLeaseAlive:
		_, ok := s.Lease(c.Number)
		return ok, 0
	case CompareFence:
		el, ok := s.Election(c.Key)
		if !ok {
			return false, 0
		}
		var newest uint64
		for _, h := range el.Holders {
			newest = max(newest, h.Token)
		}
		return s.TokenCurrent(el, c.Number), newest
	}
	e, exists := s.kv.Get([]byte(c.Key))
	switch c.Target {
	case CompareExists:
		return exists, 0
	case CompareAbsent:
		return !exists, 0
	case CompareValue:
		if !exists {
			return false, 0
		}
		return (string(e.Value) == string(c.Value)) == (c.Op == OpEqual), 0
	}
	var v uint64
	if exists {
		switch c.Target {
		case CompareModifyIndex:
			v = e.ModifyIndex
		case CompareCreateIndex:
			v = e.CreateIndex
		case CompareVersion:
			v = e.Version
		}
	}
	switch c.Op {
	case OpEqual:
		return v == c.Number, v
	case OpNotEqual:
		return v != c.Number, v
	case OpLess:
		return v < c.Number, v
	default: // OpGreater (validate allows nothing else)
		return v > c.Number, v
	}
}

func (p Txn) apply(a *applier) {
	s := a.s
	res := &TxnResult{Succeeded: true}
	for i, c := range p.Compares {
		if ok, cur := c.eval(s); !ok {
			res.Succeeded, res.Failed, res.Current = false, i, cur
			break
		}
	}
	ops := p.Then
	if !res.Succeeded {
		ops = p.Else
	}
	// The one op that can fail is checked for the whole branch first:
	// nothing is written unless everything will be.
	for i, op := range ops {
		if op.Kind == TxnPut && op.Lease != 0 {
			if _, ok := s.Lease(op.Lease); !ok {
				a.res.Err = fmt.Errorf("%w: %d (put of %q, op %d of the branch that ran): nothing was written",
					ErrLeaseNotFound, op.Lease, op.Key, i)
				return
			}
		}
	}
	res.Ops = make([]TxnOpResult, 0, len(ops))
	for _, op := range ops {
		sub := &applier{s: s, res: &Result{}, stamp: a.stamp, holdersChanged: a.holdersChanged}
		r := TxnOpResult{Kind: op.Kind}
		switch op.Kind {
		case TxnPut:
			KVPut{Key: op.Key, Value: op.Value, Lease: op.Lease}.apply(sub)
			r.Entry = sub.res.Entry
		case TxnDelete:
			KVDelete{Key: op.Key}.apply(sub) // a missing key is ErrKeyNotFound, having changed nothing
			r.Prev, r.Deleted = sub.res.Prev, sub.res.Deleted
		case TxnDeletePrefix:
			KVDelete{Key: op.Key, Prefix: true}.apply(sub)
			r.Deleted = sub.res.Deleted
		case TxnGet:
			r.Entry, _ = s.kv.Get([]byte(op.Key))
		}
		res.Ops = append(res.Ops, r)
	}
	a.res.Txn = res
}

// Idempotency records of transactions (dedup.go keeps them beside the
// other results).

// keptTxn is what an idempotency record keeps of a transaction's result:
// everything but the values of the keys its puts wrote (the caller sent
// them). Gets keep their values: a retry must read what the first attempt
// read.
func keptTxn(t *TxnResult) *TxnResult {
	if t == nil {
		return nil
	}
	k := *t
	k.Ops = make([]TxnOpResult, len(t.Ops))
	for i, op := range t.Ops {
		if op.Kind == TxnPut && op.Entry != nil {
			e := *op.Entry
			e.Value = nil
			op.Entry = &e
		}
		k.Ops[i] = op
	}
	return &k
}

// txnResultSize is what a recorded transaction result counts against
// DedupMaxBytes.
func txnResultSize(t *TxnResult) int {
	if t == nil {
		return 0
	}
	n := 0
	for _, op := range t.Ops {
		n += 16
		for _, e := range []*KVEntry{op.Entry, op.Prev} {
			if e != nil {
				n += len(e.Key) + len(e.Value)
			}
		}
	}
	return n
}

// encodeTxnResult writes succeeded failed current count, then per op:
// kind deleted [entry] [prev] (each a presence byte and a fixed KVEntry).
func encodeTxnResult(e *enc, t *TxnResult) {
	e.bool(t.Succeeded)
	e.uvarint(uint64(t.Failed))
	e.uvarint(t.Current)
	e.uvarint(uint64(len(t.Ops)))
	for _, op := range t.Ops {
		e.uvarint(uint64(op.Kind))
		e.uvarint(uint64(op.Deleted))
		for _, kv := range []*KVEntry{op.Entry, op.Prev} {
			e.bool(kv != nil)
			if kv != nil {
				encodeKVFixed(e, kv)
			}
		}
	}
}

// decodeTxnResult reads what encodeTxnResult wrote, refusing what no
// transaction could have produced.
func decodeTxnResult(d *dec) *TxnResult {
	t := &TxnResult{Succeeded: d.bool(), Failed: d.count(MaxTxnOps), Current: d.uvarint()}
	n := batchLen(d, 4)
	if n > MaxTxnOps {
		d.fail(fmt.Errorf("transaction result with %d ops", n))
		return t
	}
	for range n {
		op := TxnOpResult{Kind: TxnOpKind(d.u8()), Deleted: d.count(1 << 40)}
		if d.bool() {
			op.Entry = decodeKVFixed(d)
		}
		if d.bool() {
			op.Prev = decodeKVFixed(d)
		}
		if d.err == nil && (op.Kind < TxnPut || op.Kind > TxnGet) {
			d.fail(fmt.Errorf("transaction result op kind %d", op.Kind))
		}
		t.Ops = append(t.Ops, op)
	}
	return t
}
