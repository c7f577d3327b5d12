package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/coordd/coordd/api"
)

// Transactions: compares, then ops, else ops, applied by the cluster in
// one Raft entry (POST /v1/txn).
//
//	res, err := c.Txn(ctx).
//		If(client.VersionOf("epoch").Eq(4), client.FenceHolds(lead.Fence())).
//		Then(client.OpPut("epoch", []byte("5")), client.OpPut("config", cfg)).
//		Else(client.OpGet("epoch")).
//		Commit()
//
// A compare that does not hold is not an error: res.Succeeded is false and
// the Else ops ran. Commit carries an Idempotency-Key, so a retry after an
// unknown outcome never applies the transaction twice.

type (
	// TxnResponse says which branch ran (Succeeded: Then) and what each op
	// of it did, in order.
	TxnResponse = api.TxnResponse
	// TxnOpResult is one op's result: a put's indexes and version, a
	// get's key (KV nil: absent), a delete's count and previous key.
	TxnOpResult = api.TxnOpResult
	// Fence names a lock or election and a holder's fencing token.
	Fence = api.Fence
)

// Compare is one condition of a transaction.
type Compare struct{ c api.TxnCompare }

// Exists holds if key exists.
func Exists(key string) Compare {
	return Compare{api.TxnCompare{Target: api.TargetExists, Key: key}}
}

// Absent holds if key does not exist.
func Absent(key string) Compare {
	return Compare{api.TxnCompare{Target: api.TargetAbsent, Key: key}}
}

// LeaseAlive holds if the lease exists (granted, not expired or revoked).
func LeaseAlive(id uint64) Compare {
	return Compare{api.TxnCompare{Target: api.TargetLeaseAlive, Lease: id}}
}

// FenceHolds holds if f.Token is the fencing token of a current holder of
// the lock or election f.Name: the writes of the transaction are made only
// while that holder holds it.
func FenceHolds(f Fence) Compare {
	return Compare{api.TxnCompare{Fence: &api.Fence{Name: f.Name, Token: f.Token}}}
}

// Number is a key's index or version, to compare with Eq, Ne, Lt or Gt. A
// key that does not exist has 0 for all three.
type Number struct {
	target, key string
}

// ModifyIndexOf is key's modify index (the Raft index of its last write).
func ModifyIndexOf(key string) Number { return Number{api.TargetModifyIndex, key} }

// CreateIndexOf is key's create index.
func CreateIndexOf(key string) Number { return Number{api.TargetCreateIndex, key} }

// VersionOf is key's version (writes since it was created).
func VersionOf(key string) Number { return Number{api.TargetVersion, key} }

func (n Number) cmp(op string, v uint64) Compare {
	return Compare{api.TxnCompare{Target: n.target, Key: n.key, Op: op, Number: v}}
}

// Eq holds if the number equals v.
func (n Number) Eq(v uint64) Compare { return n.cmp(api.OpEqual, v) }

// Ne holds if the number differs from v.
func (n Number) Ne(v uint64) Compare { return n.cmp(api.OpNotEqual, v) }

// Lt holds if the number is less than v.
func (n Number) Lt(v uint64) Compare { return n.cmp(api.OpLess, v) }

// Gt holds if the number is greater than v.
func (n Number) Gt(v uint64) Compare { return n.cmp(api.OpGreater, v) }

// ValueCompare is a key's value, to compare with Eq or Ne. Neither holds
// for a key that does not exist.
type ValueCompare struct{ key string }

// ValueOf is key's value.
func ValueOf(key string) ValueCompare { return ValueCompare{key} }

// Eq holds if the key's value is v.
func (c ValueCompare) Eq(v []byte) Compare { return c.cmp(api.OpEqual, v) }

// Ne holds if the key exists with another value than v.
func (c ValueCompare) Ne(v []byte) Compare { return c.cmp(api.OpNotEqual, v) }

func (c ValueCompare) cmp(op string, v []byte) Compare {
	w, enc := api.EncodeValue(v)
	return Compare{api.TxnCompare{Target: api.TargetValue, Key: c.key, Op: op, Value: w, ValueEncoding: enc}}
}

// Op is one operation of a transaction's branch.
type Op struct{ o api.TxnOp }

// OpPut writes key.
func OpPut(key string, value []byte) Op {
	w, enc := api.EncodeValue(value)
	return Op{api.TxnOp{Op: api.TxnPut, Key: key, Value: w, ValueEncoding: enc}}
}

// WithLease attaches a put's key to a lease: it is deleted with the lease.
func (o Op) WithLease(id uint64) Op { o.o.Lease = id; return o }

// OpDelete deletes key (a key that does not exist deletes nothing).
func OpDelete(key string) Op { return Op{api.TxnOp{Op: api.TxnDelete, Key: key}} }

// OpDeletePrefix deletes every key that starts with prefix.
func OpDeletePrefix(prefix string) Op {
	return Op{api.TxnOp{Op: api.TxnDeletePrefix, Key: prefix}}
}

// OpGet reads key, as the ops before it in the branch left it.
func OpGet(key string) Op { return Op{api.TxnOp{Op: api.TxnGet, Key: key}} }

// Txn builds a transaction; Commit sends it.
type Txn struct {
	c   *Client
	ctx context.Context
	req api.TxnRequest
	key string
}

// Txn starts a transaction bound to ctx.
func (c *Client) Txn(ctx context.Context) *Txn { return &Txn{c: c, ctx: ctx} }

// If adds compares; all must hold for Then to run.
func (t *Txn) If(cs ...Compare) *Txn {
	for _, c := range cs {
		t.req.If = append(t.req.If, c.c)
	}
	return t
}

// Then adds ops that run when every compare holds.
func (t *Txn) Then(ops ...Op) *Txn {
	for _, o := range ops {
		t.req.Then = append(t.req.Then, o.o)
	}
	return t
}

// Else adds ops that run when a compare does not hold.
func (t *Txn) Else(ops ...Op) *Txn {
	for _, o := range ops {
		t.req.Else = append(t.req.Else, o.o)
	}
	return t
}

// IdempotencyKey sets the key the transaction is sent with (by default a
// random one per Commit). A caller that may send the same transaction
// again after a crash sets a key of its own: the cluster answers a repeat
// within fsm.DedupTTL with the first answer instead of applying it again.
func (t *Txn) IdempotencyKey(key string) *Txn { t.key = key; return t }

// Request returns the wire form of the transaction built so far.
func (t *Txn) Request() api.TxnRequest { return t.req }

// Commit sends the transaction. A compare that does not hold is a normal
// answer (Succeeded false, the Else ops' results); errors are the
// client's usual ones (ErrBadRequest for a transaction the server refuses,
// ErrLeaseNotFound when a put names a lease that does not exist: nothing
// was written then).
func (t *Txn) Commit() (*TxnResponse, error) {
	b, err := jsonBody(t.req)
	if err != nil {
		return nil, err
	}
	key := t.key
	if key == "" {
		key = newKey()
	}
	var out TxnResponse
	if err := t.c.do(t.ctx, request{method: http.MethodPost, path: "/v1/txn", body: b, idempotent: true, key: key}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Fenced makes a Put or Delete conditional on a fencing token: it applies
// only while token is a current holder's token of the lock or election
// name, and fails with ErrStaleToken otherwise (Error.CurrentToken is the
// current one). It is a PutOption and a DeleteOption.
func Fenced(name string, token uint64) func(url.Values) {
	return func(q url.Values) { q.Set(api.FenceQuery, name+":"+strconv.FormatUint(token, 10)) }
}

// FencedBy is Fenced with a Fence (Leadership.Fence, Mutex.Fence).
func FencedBy(f Fence) func(url.Values) { return Fenced(f.Name, f.Token) }

// Fence is the fencing token of this leadership, ready for FencedBy and
// FenceHolds.
func (l *Leadership) Fence() Fence { return Fence{Name: l.e.name, Token: l.token} }

// Fence is the fencing token of the held lock. Token is 0 when the lock
// is not held, which the server refuses as a bad request.
func (m *Mutex) Fence() Fence { return Fence{Name: m.name, Token: m.Token()} }

// TxnRequest is a transaction in its wire form (POST /v1/txn's body).
type TxnRequest = api.TxnRequest

// TxnFromRequest starts a transaction from its wire form, e.g. JSON a
// tool read (coordctl txn).
func (c *Client) TxnFromRequest(ctx context.Context, req TxnRequest) *Txn {
	return &Txn{c: c, ctx: ctx, req: req}
}
