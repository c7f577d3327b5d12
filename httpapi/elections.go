package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/fsm"
)

func stampString(ns int64) string {
	if ns == 0 {
		return ""
	}
	return time.Unix(0, ns).UTC().Format(time.RFC3339Nano)
}

func candidateJSON(c fsm.Candidate, pos int) api.Candidate {
	return api.Candidate{Lease: c.Lease, Value: string(c.Value), Token: c.Token, Since: stampString(c.Since), Position: pos}
}

// electionJSON renders e, or for a missing name an empty "no leader"
// answer of the given kind.
func electionJSON(kind fsm.ElectionKind, name string, e *fsm.Election, idx uint64) api.Election {
	out := api.Election{Name: name, Kind: kind.String(), Limit: 1, Candidates: []api.Candidate{}, Index: idx}
	if e == nil {
		return out
	}
	out.Kind, out.Limit, out.LockDelayMs, out.Changes = e.Kind.String(), e.Limit, e.LockDelay, e.Changes
	if e.DelayUntil > 0 && len(e.Holders) < e.Limit && len(e.Waiting) > 0 {
		out.DelayUntil = stampString(e.DelayUntil)
	}
	for _, h := range e.Holders {
		out.Holders = append(out.Holders, candidateJSON(h, 0))
	}
	if l, ok := e.Leader(); ok {
		lj := candidateJSON(l, 0)
		out.Leader, out.Token = &lj, l.Token
	}
	for i, w := range e.Waiting {
		out.Candidates = append(out.Candidates, candidateJSON(w, i+1))
	}
	return out
}

// routeKind is the kind a request's path names: locks under /v1/locks/,
// elections otherwise.
func routeKind(r *http.Request) fsm.ElectionKind {
	if strings.HasPrefix(r.URL.Path, "/v1/locks/") {
		return fsm.KindLock
	}
	return fsm.KindElection
}

func validName(name string) error {
	switch {
	case name == "":
		return badRequest("name must not be empty")
	case len(name) > api.MaxNameBytes:
		return tooLarge("name is %d bytes; the maximum is %d", len(name), api.MaxNameBytes)
	case !utf8.ValidString(name) || strings.ContainsRune(name, 0):
		return badRequest("name must be valid UTF-8 without NUL")
	}
	return nil
}

// decodeBody is readJSON for a request on /{name}, which it validates.
func (a *API) decodeBody(w http.ResponseWriter, r *http.Request, v any) ([]byte, error) {
	if err := validName(r.PathValue("name")); err != nil {
		return nil, err
	}
	return a.readJSON(w, r, v)
}

func (a *API) campaign(kind fsm.ElectionKind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req api.CampaignRequest
		body, err := a.decodeBody(w, r, &req)
		if err == nil {
			err = checkCampaign(kind, &req, a.opts.MaxValueBytes)
		}
		if err != nil {
			writeError(w, err)
			return
		}
		var ttl time.Duration
		if err == nil && req.Lease == 0 {
			ttl, err = a.leaseTTL(req.TTL, req.TTLMs)
		}
		if err != nil {
			writeError(w, err)
			return
		}
		name := r.PathValue("name")
		wait, _ := time.ParseDuration(req.Wait)
		delay, _ := time.ParseDuration(req.LockDelay)
		cmd := fsm.Campaign{Kind: kind, Name: name, Lease: req.Lease, Value: []byte(req.Value),
			Limit: req.Limit, LockDelay: delay.Milliseconds(), NewLeaseTTL: ttl.Milliseconds(),
			Owner: ownerOf(r), MaxLeases: a.opts.MaxLeasesPerToken, MaxCandidates: a.opts.MaxCandidates}
		// render answers a campaign whose lease stands at pos, from the
		// election after it (e at index idx).
		render := func(res *fsm.Result, pos int, e *fsm.Election, idx uint64) {
			lease, ttlMs := req.Lease, int64(0)
			if res.Lease != nil {
				lease, ttlMs = res.Lease.ID, res.Lease.TTL
			}
			resp := api.CampaignResponse{Name: name, Lease: lease, LeaseTTLMs: ttlMs, Position: pos, Election: electionJSON(kind, name, e, idx)}
			if e != nil {
				for _, h := range e.Holders {
					if h.Lease == lease {
						resp.Leader, resp.Token = true, h.Token
					}
				}
			}
			writeJSON(w, http.StatusOK, resp)
		}
		// A campaign that may wait for leadership is forwarded whole: it
		// waits on the leader, which sees the election first.
		if wait == 0 && a.encodedForward(r) && a.applyForwarded(w, r, cmd, name, func(res *fsm.Result, idx uint64) {
			render(res, res.Campaign.Position, res.Election, idx)
		}) {
			return
		}
		a.onLeader(w, r, body, func() error {
			if err := a.ownLease(r, req.Lease); err != nil {
				return err
			}
			res, err := a.apply(w, r, cmd)
			if err != nil {
				return err
			}
			lease := req.Lease
			if res.Lease != nil {
				lease = res.Lease.ID
			}
			pos := res.Campaign.Position
			if pos != 0 && wait > 0 {
				if pos, err = a.waitForLeadership(r.Context(), name, lease, wait); err != nil {
					return err
				}
			}
			e, idx, _ := a.node.State().WatchElection(name)
			render(res, pos, e, idx)
			return nil
		})
	}
}

func checkCampaign(kind fsm.ElectionKind, req *api.CampaignRequest, maxValue int) error {
	switch {
	case req.Lease == 0 && req.TTL == "" && req.TTLMs == 0:
		return badRequest("give a lease, or a ttl to grant a new lease with the campaign")
	case req.Lease != 0 && (req.TTL != "" || req.TTLMs != 0):
		return badRequest("give a lease or a ttl, not both")
	}
	if req.Wait != "" {
		d, err := time.ParseDuration(req.Wait)
		if err != nil || d < 0 || d > MaxWait {
			return badRequest(fmt.Sprintf("wait %q must be a duration from 0s to %s", req.Wait, MaxWait))
		}
	}
	if req.LockDelay != "" {
		d, err := time.ParseDuration(req.LockDelay)
		if err != nil || d < 0 || d > time.Hour {
			return badRequest(fmt.Sprintf("lock_delay %q must be a duration from 0s to 1h", req.LockDelay))
		}
	}
	if req.Limit < 0 || req.Limit > 1<<16 {
		return badRequest("limit must be from 1 to 65536")
	}
	if kind == fsm.KindElection && req.Limit > 1 {
		return badRequest("an election has one leader; use /v1/locks/{name} with limit for a semaphore")
	}
	if len(req.Value) > maxValue {
		return tooLarge("value is %d bytes; the maximum is %d", len(req.Value), maxValue)
	}
	return nil
}

// waitForLeadership waits until lease holds name, the wait runs out (the
// lease keeps its place in the queue) or the lease is lost, which fails at
// once: a campaign must not keep waiting for a session that is gone.
func (a *API) waitForLeadership(ctx context.Context, name string, lease uint64, wait time.Duration) (int, error) {
	t := time.NewTimer(wait)
	defer t.Stop()
	for {
		reset := a.node.ResetCh()
		st := a.node.State()
		l, lw := st.WatchLease(lease)
		e, _, ew := st.WatchElection(name)
		pos := -1
		if e != nil {
			pos = e.Position(lease)
		}
		switch {
		case l == nil:
			return 0, &apiError{status: http.StatusGone, detail: api.ErrorDetail{Code: api.CodeLeaseLost,
				Message: fmt.Sprintf("lease %d expired or was revoked while campaigning for %q", lease, name)}}
		case pos == 0:
			return 0, nil
		case pos < 0:
			return 0, &apiError{status: http.StatusConflict, detail: api.ErrorDetail{Code: api.CodeNotHolder,
				Message: fmt.Sprintf("lease %d is no longer a candidate for %q", lease, name)}}
		}
		select {
		case <-lw:
		case <-ew:
		case <-reset:
		case <-t.C:
			return pos, nil
		case <-ctx.Done():
			return pos, nil
		case <-a.opts.Stopping:
			return pos, nil
		}
	}
}

// holderOp serves resign, proclaim and lock release: a JSON HolderRequest,
// checked by check, turned into a command for name, answered with the
// election after it.
func (a *API) holderOp(check func(api.HolderRequest) error, cmd func(name string, req api.HolderRequest) fsm.Payload) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req api.HolderRequest
		body, err := a.decodeBody(w, r, &req)
		if err == nil {
			err = check(req)
		}
		if err != nil {
			writeError(w, err)
			return
		}
		name := r.PathValue("name")
		render := func(res *fsm.Result, _ uint64) {
			writeJSON(w, http.StatusOK, electionJSON(routeKind(r), name, res.Election, res.Index))
		}
		if a.encodedForward(r) && a.applyForwarded(w, r, cmd(name, req), "", render) {
			return
		}
		a.onLeader(w, r, body, func() error {
			if err := a.ownLease(r, req.Lease); err != nil {
				return err
			}
			res, err := a.apply(w, r, cmd(name, req))
			if err != nil {
				return err
			}
			render(res, 0)
			return nil
		})
	}
}

// resign answers POST .../resign and DELETE /v1/locks/{name}. Token 0
// withdraws a waiting candidacy.
func (a *API) resign() http.HandlerFunc {
	return a.holderOp(func(req api.HolderRequest) error {
		if req.Lease == 0 {
			return badRequest("lease is required")
		}
		return nil
	}, func(name string, req api.HolderRequest) fsm.Payload {
		return fsm.Resign{Name: name, Lease: req.Lease, Token: req.Token}
	})
}

func (a *API) proclaim() http.HandlerFunc {
	return a.holderOp(func(req api.HolderRequest) error {
		if req.Lease == 0 || req.Token == 0 {
			return badRequest("lease and token are required")
		}
		if len(req.Value) > a.opts.MaxValueBytes {
			return tooLarge("value is %d bytes; the maximum is %d", len(req.Value), a.opts.MaxValueBytes)
		}
		return nil
	}, func(name string, req api.HolderRequest) fsm.Payload {
		return fsm.Proclaim{Name: name, Lease: req.Lease, Token: req.Token, Value: []byte(req.Value)}
	})
}

// electionGet answers GET /v1/elections/{name} and /v1/locks/{name}: a
// linearizable (or ?stale) read, a blocking query with ?index=N&wait=D, or
// a Server-Sent Events stream with Accept: text/event-stream.
func (a *API) electionGet(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	q, err := query(r, "stale", "index", "wait", "changes")
	var stale bool
	var bq blocking
	var since uint64
	var hasSince bool
	if err == nil {
		stale, err = flag(q, "stale")
	}
	if err == nil {
		bq, err = parseBlocking(q)
	}
	if err == nil {
		since, hasSince, err = uintParam(q, "changes")
	}
	if err == nil {
		err = validName(name)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	if strings.Contains(r.Header.Get("Accept"), "text/event-stream") {
		a.electionStream(w, r, name)
		return
	}
	serve := func() error {
		if err := a.readBarrier(r.Context(), stale); err != nil {
			return err
		}
		e, idx := blockOn(r.Context(), a, bq, func(s *fsm.State) (*fsm.Election, uint64, <-chan struct{}) {
			return s.WatchElection(name)
		})
		out := electionJSON(routeKind(r), name, e, idx)
		if hasSince && out.Changes > since+1 {
			out.Coalesced = out.Changes - since - 1
		}
		a.setReadHeaders(w, idx, stale)
		writeJSON(w, http.StatusOK, out)
		return nil
	}
	a.serveRead(w, r, stale, serve)
}

func (a *API) electionList(kind fsm.ElectionKind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		a.readState(w, r, func(st *fsm.State) (any, error) {
			out := []api.Election{}
			for _, e := range st.Elections() {
				if e.Kind == kind {
					out = append(out, electionJSON(kind, e.Name, e, e.ModifyIndex))
				}
			}
			return out, nil
		})
	}
}

func (a *API) fencingCheck(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	q, err := query(r, "token", "stale")
	var tok uint64
	var has, stale bool
	if err == nil {
		tok, has, err = uintParam(q, "token")
	}
	if err == nil && (!has || tok == 0) {
		err = badRequest("query parameter \"token\" (> 0) is required")
	}
	if err == nil {
		stale, err = flag(q, "stale")
	}
	if err == nil {
		err = validName(name)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	serve := func() error {
		if err := a.readBarrier(r.Context(), stale); err != nil {
			return err
		}
		st := a.node.State()
		e, idx, _ := st.WatchElection(name)
		out := api.FencingCheck{Name: name, Asked: tok}
		if e != nil {
			if l, ok := e.Leader(); ok {
				out.Token = l.Token
			}
			out.Current = st.TokenCurrent(e, tok) // not a holder whose lease expired, release pending
		}
		if !out.Current {
			a.metrics.fencingRejected.Inc()
		}
		a.setReadHeaders(w, idx, stale)
		writeJSON(w, http.StatusOK, out)
		return nil
	}
	a.serveRead(w, r, stale, serve)
}
