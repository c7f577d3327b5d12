package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/fsm"
)

func toKV(e *fsm.KVEntry) *api.KV {
	if e == nil {
		return nil
	}
	return &api.KV{Key: e.Key, Value: e.Value, CreateIndex: e.CreateIndex, ModifyIndex: e.ModifyIndex, Version: e.Version}
}

func (a *API) kvGet(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	q, err := query(r, "raw", "prefix", "stale", "index", "wait")
	if err != nil {
		writeError(w, err)
		return
	}
	raw, err1 := flag(q, "raw")
	prefix, err2 := flag(q, "prefix")
	stale, err3 := flag(q, "stale")
	bq, err4 := parseBlocking(q)
	for _, err := range []error{err1, err2, err3, err4} {
		if err != nil {
			writeError(w, err)
			return
		}
	}
	if err := validKey(key, prefix); err != nil {
		writeError(w, err)
		return
	}
	if raw && prefix {
		writeError(w, badRequest("?raw and ?prefix cannot be combined"))
		return
	}
	serve := func() error {
		if err := a.readBarrier(r.Context(), stale); err != nil {
			return err
		}
		if prefix {
			entries, idx := blockOn(r.Context(), a, bq, func(s *fsm.State) ([]*fsm.KVEntry, uint64, <-chan struct{}) {
				return s.WatchPrefix(key, 0)
			})
			out := make([]*api.KV, 0, len(entries))
			for _, e := range entries {
				out = append(out, toKV(e))
			}
			a.setReadHeaders(w, idx, stale)
			writeJSON(w, http.StatusOK, out)
			return nil
		}
		e, idx := blockOn(r.Context(), a, bq, func(s *fsm.State) (*fsm.KVEntry, uint64, <-chan struct{}) {
			return s.WatchKey(key)
		})
		a.setReadHeaders(w, idx, stale)
		switch {
		case e == nil:
			writeErrorDetail(w, http.StatusNotFound, api.ErrorDetail{Code: api.CodeKeyNotFound, Message: fmt.Sprintf("key %q not found", key)})
		case raw:
			w.Header().Set(headerContentType, contentTypeBytes)
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(e.Value)
		default:
			writeJSON(w, http.StatusOK, toKV(e))
		}
		return nil
	}
	a.serveRead(w, r, stale, serve)
}

// serveRead runs a read: a ?stale one here, a linearizable one on the
// leader (forwarding if this node does not lead). serve does the read
// barrier itself (readBarrier), so that it happens on the node that answers.
func (a *API) serveRead(w http.ResponseWriter, r *http.Request, stale bool, serve func() error) {
	if !stale {
		a.onLeader(w, r, nil, serve)
		return
	}
	if err := serve(); err != nil {
		writeError(w, err)
	}
}

// readBarrier makes the state read next linearizable, unless the read is
// ?stale, which takes the local state as it is.
func (a *API) readBarrier(ctx context.Context, stale bool) error {
	if stale {
		return nil
	}
	bctx, cancel := context.WithTimeout(ctx, a.opts.WriteTimeout)
	defer cancel()
	return a.node.ReadBarrier(bctx)
}

// setReadHeaders reports the index to block on next and, for stale reads,
// how stale the answer may be (as Consul's X-Consul-LastContact does).
func (a *API) setReadHeaders(w http.ResponseWriter, idx uint64, stale bool) {
	h := w.Header()
	h.Set(api.HeaderIndex, strconv.FormatUint(idx, 10))
	if !stale {
		h.Set(api.HeaderConsistency, "linearizable")
		return
	}
	h.Set(api.HeaderConsistency, "stale")
	s := a.node.Staleness()
	h.Set(api.HeaderKnownLeader, strconv.FormatBool(s.KnownLeader))
	h.Set(api.HeaderAppliedIndex, strconv.FormatUint(s.AppliedIndex, 10))
	if s.LastContact >= 0 {
		h.Set(api.HeaderLastContact, strconv.FormatInt(s.LastContact.Milliseconds(), 10))
	} else {
		h.Set(api.HeaderLastContact, "never")
	}
}

// blockOn reads the current state (after any read barrier the caller did)
// and returns view's result and change index. With a blocking query it
// waits while the index is at most bq.index, until the view's watch channel
// fires, a snapshot replaces the state, the wait runs out, the client leaves
// or the server stops.
//
// The reset channel is taken before the state it guards: a restore that
// lands between the two would otherwise leave the waiter on watch channels
// of a state that no longer changes.
func blockOn[T any](ctx context.Context, a *API, bq blocking,
	view func(*fsm.State) (T, uint64, <-chan struct{})) (T, uint64) {
	var timeout <-chan time.Time
	for {
		reset := a.node.ResetCh()
		v, idx, watch := view(a.node.State())
		if bq.index == 0 || idx > bq.index {
			return v, idx
		}
		if timeout == nil {
			t := time.NewTimer(bq.wait)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-watch:
		case <-reset:
		case <-timeout:
			return v, idx
		case <-ctx.Done():
			return v, idx
		case <-a.opts.Stopping:
			return v, idx
		}
	}
}

// kvNoKey answers /v1/kv without a trailing slash. The mux would redirect
// it to /v1/kv/, where DELETE ?prefix deletes every key: refuse instead.
func (a *API) kvNoKey(w http.ResponseWriter, r *http.Request) {
	writeError(w, badRequest("no key given: use /v1/kv/{key}, or /v1/kv/?prefix to list every key"))
}

func (a *API) kvPut(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	q, err := query(r, "cas", "lease", api.FenceQuery)
	if err != nil {
		writeError(w, err)
		return
	}
	cas, hasCAS, err := uintParam(q, "cas")
	if err != nil {
		writeError(w, err)
		return
	}
	fence, fenced, err := parseFence(q)
	if err != nil {
		writeError(w, err)
		return
	}
	lease, hasLease, err := uintParam(q, "lease")
	if err == nil && hasLease && lease == 0 {
		err = badRequest("query parameter \"lease\" must be a lease id (> 0)")
	}
	if err != nil {
		writeError(w, err)
		return
	}
	if err := validKey(key, false); err != nil {
		writeError(w, err)
		return
	}
	body, err := a.readBody(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	if len(body) > a.opts.MaxValueBytes {
		writeErrorDetail(w, http.StatusRequestEntityTooLarge, api.ErrorDetail{Code: api.CodeTooLarge,
			Message: fmt.Sprintf("value is %d bytes; the maximum is %d", len(body), a.opts.MaxValueBytes)})
		return
	}
	if fenced {
		var conds []fsm.TxnCompare
		if hasCAS {
			// A missing key has modify index 0: cas=0 is create-only.
			conds = []fsm.TxnCompare{{Target: fsm.CompareModifyIndex, Key: key, Op: fsm.OpEqual, Number: cas}}
		}
		a.fencedWrite(w, r, body, fence, conds, fsm.TxnOp{Kind: fsm.TxnPut, Key: key, Value: body, Lease: lease})
		return
	}
	p := fsm.KVPut{Key: key, Value: body, Lease: lease}
	switch {
	case hasCAS && cas == 0:
		p.Mode = fsm.PutCreate
	case hasCAS:
		p.Mode, p.CASIndex = fsm.PutCAS, cas
	}
	render := func(res *fsm.Result, _ uint64) {
		e := res.Entry
		writeJSON(w, http.StatusOK, api.KVWriteResult{Key: e.Key, CreateIndex: e.CreateIndex, ModifyIndex: e.ModifyIndex, Version: e.Version, Index: res.Index})
	}
	if a.encodedForward(r) && a.applyForwarded(w, r, p, "", render) {
		return
	}
	a.onLeader(w, r, body, func() error {
		if err := a.ownLease(r, p.Lease); err != nil {
			return err
		}
		res, err := a.apply(w, r, p)
		if err != nil {
			return err
		}
		render(res, 0)
		return nil
	})
}

func (a *API) kvDelete(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	q, err := query(r, "cas", "prefix", api.FenceQuery)
	if err != nil {
		writeError(w, err)
		return
	}
	cas, hasCAS, err1 := uintParam(q, "cas")
	prefix, err2 := flag(q, "prefix")
	fence, fenced, err3 := parseFence(q)
	for _, err := range []error{err1, err2, err3} {
		if err != nil {
			writeError(w, err)
			return
		}
	}
	if err := validKey(key, prefix); err != nil {
		writeError(w, err)
		return
	}
	if prefix && hasCAS {
		writeError(w, badRequest("?cas cannot be combined with ?prefix"))
		return
	}
	if fenced {
		switch {
		case prefix:
			a.fencedWrite(w, r, nil, fence, nil, fsm.TxnOp{Kind: fsm.TxnDeletePrefix, Key: key})
		case hasCAS:
			// As without a fence, a missing key is a conflict (current 0).
			a.fencedWrite(w, r, nil, fence, []fsm.TxnCompare{{Target: fsm.CompareExists, Key: key},
				{Target: fsm.CompareModifyIndex, Key: key, Op: fsm.OpEqual, Number: cas}}, fsm.TxnOp{Kind: fsm.TxnDelete, Key: key})
		default:
			a.fencedWrite(w, r, nil, fence, []fsm.TxnCompare{{Target: fsm.CompareExists, Key: key}}, fsm.TxnOp{Kind: fsm.TxnDelete, Key: key})
		}
		return
	}
	p := fsm.KVDelete{Key: key, Prefix: prefix, CAS: hasCAS, CASIndex: cas}
	render := func(res *fsm.Result, _ uint64) {
		writeJSON(w, http.StatusOK, api.KVDeleteResult{Deleted: res.Deleted, Index: res.Index, Prev: toKV(res.Prev)})
	}
	if a.encodedForward(r) && a.applyForwarded(w, r, p, "", render) {
		return
	}
	a.onLeader(w, r, nil, func() error {
		res, err := a.apply(w, r, p)
		if err != nil {
			return err
		}
		render(res, 0)
		return nil
	})
}

// apply proposes the command of p with the request's Idempotency-Key, bounded by
// Options.WriteTimeout, and turns a domain failure in the result into an error. A
// result replayed from the idempotency record is marked with the
// Idempotent-Replayed header.
func (a *API) apply(w http.ResponseWriter, r *http.Request, p fsm.Payload) (*fsm.Result, error) {
	cmd, err := fsm.NewCommand(p)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(r.Context(), a.opts.WriteTimeout)
	defer cancel()
	cmd.IdempotencyKey = r.Header.Get(api.HeaderIdempotencyKey)
	if t := tokenOf(r); t != nil && cmd.IdempotencyKey != "" {
		// Keys are scoped to the token: another token sending the same
		// key must neither see this answer nor have its request dropped
		// as a duplicate.
		cmd.IdempotencyKey = t.AccessorID + "/" + cmd.IdempotencyKey
	}
	res, err := a.node.Apply(ctx, cmd)
	if err == nil && res.Duplicate {
		w.Header().Set(api.HeaderReplayed, "true")
	}
	if err != nil {
		return nil, err
	}
	if res.Err != nil {
		return res, res.Err
	}
	return res, nil
}
