package httpapi

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/coordd/coordd/acl"
	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/fsm"
)

// POST /v1/txn: compares, then ops, else ops, in one Raft entry.

var compareTargets = map[string]fsm.CompareTarget{
	api.TargetExists: fsm.CompareExists, api.TargetAbsent: fsm.CompareAbsent,
	api.TargetModifyIndex: fsm.CompareModifyIndex, api.TargetCreateIndex: fsm.CompareCreateIndex,
	api.TargetVersion: fsm.CompareVersion, api.TargetValue: fsm.CompareValue,
	api.TargetLeaseAlive: fsm.CompareLeaseAlive, api.TargetFence: fsm.CompareFence,
}

var compareOps = map[string]fsm.CompareOp{
	api.OpEqual: fsm.OpEqual, api.OpNotEqual: fsm.OpNotEqual, api.OpLess: fsm.OpLess, api.OpGreater: fsm.OpGreater,
	"==": fsm.OpEqual,
}

var txnOpKinds = map[string]fsm.TxnOpKind{
	api.TxnPut: fsm.TxnPut, api.TxnDelete: fsm.TxnDelete, api.TxnDeletePrefix: fsm.TxnDeletePrefix, api.TxnGet: fsm.TxnGet,
}

// ParseTxn turns a request into the transaction it asks for, with the
// limits of a put (maxValue bytes per value) and of a transaction
// (fsm.MaxTxnOps, fsm.MaxTxnBytes; 413 too_large) and every rule of
// fsm's one validate (400 bad_request). It is exported for the fuzz
// target and for tools that check a transaction offline.
func ParseTxn(req api.TxnRequest, maxValue int) (fsm.Txn, error) {
	if n := len(req.If) + len(req.Then) + len(req.Else); n > fsm.MaxTxnOps {
		return fsm.Txn{}, tooLarge("the transaction has %d compares and ops; the maximum is %d", n, fsm.MaxTxnOps)
	}
	var p fsm.Txn
	size := 0
	for i, c := range req.If {
		fc, err := parseCompare(c)
		if err != nil {
			return fsm.Txn{}, prefixed(fmt.Sprintf("if[%d]", i), err)
		}
		size += len(fc.Key) + len(fc.Value)
		p.Compares = append(p.Compares, fc)
	}
	for b, ops := range [][]api.TxnOp{req.Then, req.Else} {
		branch := [2]string{"then", "else"}[b]
		var out []fsm.TxnOp
		for i, op := range ops {
			fo, err := parseOp(op, maxValue)
			if err != nil {
				return fsm.Txn{}, prefixed(fmt.Sprintf("%s[%d]", branch, i), err)
			}
			size += len(fo.Key) + len(fo.Value)
			out = append(out, fo)
		}
		if b == 0 {
			p.Then = out
		} else {
			p.Else = out
		}
	}
	if size > fsm.MaxTxnBytes {
		return fsm.Txn{}, tooLarge("the transaction's keys and values are %d bytes; the maximum is %d", size, fsm.MaxTxnBytes)
	}
	if _, err := fsm.NewCommand(p); err != nil {
		return fsm.Txn{}, badRequest(strings.TrimPrefix(err.Error(), fsm.ErrInvalid.Error()+": "))
	}
	return p, nil
}

// prefixed puts where in the request an error is in front of its message,
// keeping its status and code.
func prefixed(where string, err error) error {
	status, detail := classify(err)
	detail.Message = where + ": " + detail.Message
	return &apiError{status: status, detail: detail}
}

func parseCompare(c api.TxnCompare) (fsm.TxnCompare, error) {
	target := c.Target
	switch {
	case target == "" && c.Fence != nil:
		target = api.TargetFence
	case target == "" && c.Lease != 0:
		target = api.TargetLeaseAlive
	case target == "":
		return fsm.TxnCompare{}, badRequest(`compare needs a "target" (exists, absent, modify_index, create_index, version, value, lease_alive) or a "fence"`)
	}
	t, ok := compareTargets[target]
	if !ok {
		return fsm.TxnCompare{}, badRequest(fmt.Sprintf("unknown compare target %q (want exists, absent, modify_index, create_index, version, value, lease_alive or fence)", target))
	}
	fc := fsm.TxnCompare{Target: t, Key: c.Key, Number: c.Number}
	switch t {
	case fsm.CompareFence:
		if c.Fence == nil || c.Key != "" || c.Lease != 0 || c.Op != "" || c.Number != 0 || c.Value != "" {
			return fsm.TxnCompare{}, badRequest(`a fence compare is {"fence":{"name":NAME,"token":TOKEN}} and nothing else`)
		}
		if c.Fence.Name == "" || c.Fence.Token == 0 {
			return fsm.TxnCompare{}, badRequest("a fence needs a name and a token (> 0)")
		}
		fc.Key, fc.Number = c.Fence.Name, c.Fence.Token
		return fc, nil
	case fsm.CompareLeaseAlive:
		if c.Lease == 0 || c.Key != "" || c.Op != "" || c.Number != 0 || c.Value != "" || c.Fence != nil {
			return fsm.TxnCompare{}, badRequest(`a lease_alive compare is {"target":"lease_alive","lease":ID} with ID > 0 and nothing else`)
		}
		fc.Number = c.Lease
		return fc, nil
	}
	if c.Lease != 0 || c.Fence != nil {
		return fsm.TxnCompare{}, badRequest(fmt.Sprintf("a %s compare takes no lease or fence", target))
	}
	if err := validKey(c.Key, false); err != nil {
		return fsm.TxnCompare{}, err
	}
	if c.Op != "" {
		op, ok := compareOps[c.Op]
		if !ok {
			return fsm.TxnCompare{}, badRequest(fmt.Sprintf("unknown operator %q (want =, !=, < or >)", c.Op))
		}
		fc.Op = op
	}
	if c.Value != "" || c.ValueEncoding != "" {
		v, err := api.DecodeValue(c.Value, c.ValueEncoding)
		if err != nil {
			return fsm.TxnCompare{}, badRequest(err.Error())
		}
		fc.Value = v
	}
	if t == fsm.CompareValue && fc.Op == 0 {
		fc.Op = fsm.OpEqual
	}
	return fc, nil
}

func parseOp(op api.TxnOp, maxValue int) (fsm.TxnOp, error) {
	k, ok := txnOpKinds[op.Op]
	if !ok {
		return fsm.TxnOp{}, badRequest(fmt.Sprintf("unknown op %q (want put, delete, delete_prefix or get)", op.Op))
	}
	if err := validKey(op.Key, k == fsm.TxnDeletePrefix); err != nil {
		return fsm.TxnOp{}, err
	}
	fo := fsm.TxnOp{Kind: k, Key: op.Key, Lease: op.Lease}
	if op.Value != "" || op.ValueEncoding != "" {
		v, err := api.DecodeValue(op.Value, op.ValueEncoding)
		if err != nil {
			return fsm.TxnOp{}, badRequest(err.Error())
		}
		if len(v) > maxValue {
			return fsm.TxnOp{}, tooLarge("value is %d bytes; the maximum is %d", len(v), maxValue)
		}
		fo.Value = v
	}
	return fo, nil
}

// txnAllowed checks every compare and op of p against r's token (ACLs
// on): a key compare or get needs kv read, a put or delete kv write (on
// every key under the prefix for delete_prefix), lease_alive lease read,
// a fence lock or election read on its name. The first refusal is a 403
// that says which part of the request it is.
func (a *API) txnAllowed(r *http.Request, p fsm.Txn) error {
	t := tokenOf(r)
	if !a.opts.ACL || t == nil {
		return nil
	}
	pol := t.Policy()
	deny := func(where string, res acl.Resource, name string, prefix bool, want acl.Access) error {
		on := fmt.Sprintf("on %q", name)
		if prefix {
			on = fmt.Sprintf("on every name under %q", name)
		}
		return denied(http.StatusForbidden, api.CodePermissionDenied,
			fmt.Sprintf("%s: token %s has no rule that grants %s %s %s", where, t.AccessorID, res, want, on))
	}
	for i, c := range p.Compares {
		where := fmt.Sprintf("if[%d]", i)
		switch c.Target {
		case fsm.CompareLeaseAlive:
			if !pol.Allowed(acl.Lease, "", acl.Read) {
				return deny(where, acl.Lease, "", false, acl.Read)
			}
		case fsm.CompareFence:
			if !pol.Allowed(acl.Lock, c.Key, acl.Read) && !pol.Allowed(acl.Election, c.Key, acl.Read) {
				return deny(where, acl.Lock+" or "+acl.Election, c.Key, false, acl.Read)
			}
		default:
			if !pol.Allowed(acl.KV, c.Key, acl.Read) {
				return deny(where, acl.KV, c.Key, false, acl.Read)
			}
		}
	}
	for b, ops := range [][]fsm.TxnOp{p.Then, p.Else} {
		for i, op := range ops {
			where := fmt.Sprintf("%s[%d]", [2]string{"then", "else"}[b], i)
			want, prefix := acl.Write, op.Kind == fsm.TxnDeletePrefix
			if op.Kind == fsm.TxnGet {
				want = acl.Read
			}
			if !allowed(pol, acl.KV, op.Key, prefix, want) {
				return deny(where, acl.KV, op.Key, prefix, want)
			}
		}
	}
	return nil
}

func (a *API) txn(w http.ResponseWriter, r *http.Request) {
	var req api.TxnRequest
	body, err := a.readJSON(w, r, &req)
	if err != nil {
		writeError(w, err)
		return
	}
	p, err := ParseTxn(req, a.opts.MaxValueBytes)
	if err == nil {
		err = a.txnAllowed(r, p)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	a.onLeader(w, r, body, func() error {
		for _, ops := range [][]fsm.TxnOp{p.Then, p.Else} {
			for _, op := range ops {
				if err := a.ownLease(r, op.Lease); err != nil {
					return err
				}
			}
		}
		res, err := a.apply(w, r, p)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, txnResponse(res))
		return nil
	})
}

// txnResponse is the wire form of a transaction's result.
func txnResponse(res *fsm.Result) api.TxnResponse {
	t := res.Txn
	out := api.TxnResponse{Succeeded: t.Succeeded, Branch: "then", Index: res.Index, Results: []api.TxnOpResult{}}
	if !t.Succeeded {
		failed, cur := t.Failed, t.Current
		out.Branch, out.Failed, out.Current = "else", &failed, &cur
	}
	for _, op := range t.Ops {
		o := api.TxnOpResult{Op: op.Kind.String(), Deleted: op.Deleted, Prev: toKV(op.Prev)}
		switch {
		case op.Entry != nil:
			o.Key = op.Entry.Key
		case op.Prev != nil:
			o.Key = op.Prev.Key
		}
		switch op.Kind {
		case fsm.TxnPut:
			o.CreateIndex, o.ModifyIndex, o.Version = op.Entry.CreateIndex, op.Entry.ModifyIndex, op.Entry.Version
		case fsm.TxnGet:
			o.KV = toKV(op.Entry)
		}
		out.Results = append(out.Results, o)
	}
	return out
}

// parseFence reads ?fence=NAME:TOKEN (the name may itself contain ':').
func parseFence(q url.Values) (fsm.TxnCompare, bool, error) {
	if !q.Has(api.FenceQuery) {
		return fsm.TxnCompare{}, false, nil
	}
	v := q.Get(api.FenceQuery)
	i := strings.LastIndexByte(v, ':')
	if i <= 0 {
		return fsm.TxnCompare{}, true, badRequest(fmt.Sprintf("query parameter \"fence\" must be NAME:TOKEN, not %q", v))
	}
	tok, err := strconv.ParseUint(v[i+1:], 10, 64)
	if err != nil || tok == 0 {
		return fsm.TxnCompare{}, true, badRequest(fmt.Sprintf("query parameter \"fence\": token %q must be a positive integer", v[i+1:]))
	}
	return fsm.TxnCompare{Target: fsm.CompareFence, Key: v[:i], Number: tok}, true, nil
}

// fencedWrite runs a fenced PUT or DELETE of /v1/kv/{key} as a
// transaction: the fence first, then the write's own conditions (cas, or
// for a single-key delete that the key exists), then the op. A condition
// that fails is answered as the unfenced write would answer it
// (cas_conflict with the current index when the write had ?cas, else
// key_not_found); a stale fence is 409 stale_token with the current token.
func (a *API) fencedWrite(w http.ResponseWriter, r *http.Request, body []byte, fence fsm.TxnCompare, conds []fsm.TxnCompare, op fsm.TxnOp) {
	p := fsm.Txn{Compares: append([]fsm.TxnCompare{fence}, conds...), Then: []fsm.TxnOp{op}}
	hasCAS := slices.ContainsFunc(conds, func(c fsm.TxnCompare) bool { return c.Target == fsm.CompareModifyIndex })
	if err := a.txnAllowed(r, p); err != nil {
		writeError(w, err)
		return
	}
	a.onLeader(w, r, body, func() error {
		if err := a.ownLease(r, op.Lease); err != nil {
			return err
		}
		res, err := a.apply(w, r, p)
		if err != nil {
			return err
		}
		t := res.Txn
		if !t.Succeeded {
			switch {
			case t.Failed == 0:
				return &fsm.StaleTokenError{Name: fence.Key, Token: fence.Number, Current: t.Current}
			case hasCAS:
				return &fsm.CASConflictError{Key: op.Key, CurrentIndex: t.Current}
			default:
				return fmt.Errorf("%w: %q", fsm.ErrKeyNotFound, op.Key)
			}
		}
		r0 := t.Ops[0]
		if op.Kind == fsm.TxnPut {
			e := r0.Entry
			writeJSON(w, http.StatusOK, api.KVWriteResult{Key: e.Key, CreateIndex: e.CreateIndex, ModifyIndex: e.ModifyIndex, Version: e.Version, Index: res.Index})
			return nil
		}
		writeJSON(w, http.StatusOK, api.KVDeleteResult{Deleted: r0.Deleted, Index: res.Index, Prev: toKV(r0.Prev)})
		return nil
	})
}
