package httpapi

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/fsm"
)

func (a *API) leaseJSON(l *fsm.Lease, withAttached bool) api.Lease {
	out := api.Lease{ID: l.ID, TTLMs: l.TTL, TTLText: (time.Duration(l.TTL) * time.Millisecond).String()}
	if rem, err := a.node.LeaseRemaining(l.ID); err == nil {
		out.RemainingMs = rem.Milliseconds()
	}
	if withAttached {
		out.Attached = a.node.State().Attachments(l.ID)
	}
	return out
}

// leaseTTL reads a lease TTL given as a duration or in milliseconds (not
// both) and checks it against the node's range.
func (a *API) leaseTTL(d string, ms int64) (time.Duration, error) {
	var ttl time.Duration
	switch {
	case d != "" && ms != 0:
		return 0, badRequest("give ttl or ttl_ms, not both")
	case d != "":
		var err error
		if ttl, err = time.ParseDuration(d); err != nil {
			return 0, badRequest(fmt.Sprintf("ttl %q is not a duration such as 10s or 750ms", d))
		}
	default:
		ttl = time.Duration(ms) * time.Millisecond
	}
	lo, hi := a.node.LeaseTTLRange()
	if ttl < lo || ttl > hi || ttl%time.Millisecond != 0 {
		return 0, &apiError{status: http.StatusBadRequest, detail: api.ErrorDetail{Code: api.CodeBadTTL,
			Message: fmt.Sprintf("ttl %s out of range: whole milliseconds from %s (derived from the Raft timing) to %s", ttl, lo, hi)}}
	}
	return ttl, nil
}

// leaseID reads the {id} path value of a request that takes no query
// parameters.
func leaseID(r *http.Request) (uint64, error) {
	if _, err := query(r); err != nil {
		return 0, err
	}
	s := r.PathValue("id")
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 {
		return 0, badRequest(fmt.Sprintf("lease id %q must be a positive integer", s))
	}
	return id, nil
}

func (a *API) leaseGrant(w http.ResponseWriter, r *http.Request) {
	var req api.LeaseGrantRequest
	body, err := a.readJSON(w, r, &req)
	if err != nil {
		writeError(w, err)
		return
	}
	ttl, err := a.leaseTTL(req.TTL, req.TTLMs)
	if err != nil {
		writeError(w, err)
		return
	}
	a.onLeader(w, r, body, func() error {
		res, err := a.apply(w, r, fsm.LeaseGrant{TTL: ttl.Milliseconds(),
			Owner: ownerOf(r), MaxLeases: a.opts.MaxLeasesPerToken})
		if err != nil {
			return err
		}
		out := a.leaseJSON(res.Lease, false)
		if out.RemainingMs == 0 && !res.Duplicate {
			out.RemainingMs = res.Lease.TTL
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	})
}

func (a *API) leaseKeepalive(w http.ResponseWriter, r *http.Request) {
	id, err := leaseID(r)
	if err != nil {
		writeError(w, err)
		return
	}
	if a.coalesceKeepalive(r) && a.keepaliveCoalesced(w, r, []uint64{id}, false) {
		return
	}
	a.onLeader(w, r, nil, func() error {
		if err := a.ownLease(r, id); err != nil {
			return err
		}
		rem, err := a.node.Keepalive(r.Context(), id)
		if err != nil {
			return err
		}
		l, ok := a.node.State().Lease(id)
		if !ok {
			return fmt.Errorf("%w: %d", fsm.ErrLeaseNotFound, id)
		}
		out := a.leaseJSON(l, false)
		out.RemainingMs = rem.Milliseconds()
		writeJSON(w, http.StatusOK, out)
		return nil
	})
}

// leaseKeepaliveMany renews many leases with one request: a client that
// holds thousands of leases sends one request per tick instead of one per
// lease. Like a single keepalive it is served by the leader only (a
// follower forwards it) and is safe to retry.
func (a *API) leaseKeepaliveMany(w http.ResponseWriter, r *http.Request) {
	var req api.KeepaliveManyRequest
	body, err := a.readJSON(w, r, &req)
	if err == nil {
		switch {
		case len(req.IDs) == 0:
			err = badRequest("ids must list at least one lease id")
		case len(req.IDs) > api.MaxKeepaliveBatch:
			err = tooLarge("ids lists %d leases; at most %d per request", len(req.IDs), api.MaxKeepaliveBatch)
		case slices.Contains(req.IDs, 0):
			err = badRequest("lease ids must be positive integers")
		}
	}
	if err != nil {
		writeError(w, err)
		return
	}
	if a.coalesceKeepalive(r) && a.keepaliveCoalesced(w, r, req.IDs, true) {
		return
	}
	a.onLeader(w, r, body, func() error {
		for _, id := range req.IDs {
			if err := a.ownLease(r, id); err != nil {
				return err
			}
		}
		rems, err := a.node.KeepaliveMany(r.Context(), req.IDs)
		if err != nil {
			return err
		}
		out := api.KeepaliveManyResponse{Leases: make([]api.KeepaliveManyLease, 0, len(req.IDs)), NotFound: []uint64{}}
		for i, id := range req.IDs {
			if rems[i] < 0 {
				out.NotFound = append(out.NotFound, id)
				continue
			}
			// Right after a renewal the time left is the TTL (see
			// Node.KeepaliveMany): no lookup in the state per lease,
			// which was a fifth of the leader's CPU with 250k leases.
			ms := rems[i].Milliseconds()
			out.Leases = append(out.Leases, api.KeepaliveManyLease{ID: id, TTLMs: ms, RemainingMs: ms})
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	})
}

func (a *API) leaseRevoke(w http.ResponseWriter, r *http.Request) {
	id, err := leaseID(r)
	if err != nil {
		writeError(w, err)
		return
	}
	a.onLeader(w, r, nil, func() error {
		if err := a.ownLease(r, id); err != nil {
			return err
		}
		res, err := a.apply(w, r, fsm.LeaseRevoke{ID: id, Release: fsm.ReleasePerEntry})
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, api.LeaseRevokeResult{ID: id, Revoked: true, Index: res.Index})
		return nil
	})
}

func (a *API) leaseGet(w http.ResponseWriter, r *http.Request) {
	id, err := leaseID(r)
	if err != nil {
		writeError(w, err)
		return
	}
	// The remaining time lives in the leader's memory: always ask it.
	a.onLeader(w, r, nil, func() error {
		if err := a.readBarrier(r.Context(), false); err != nil {
			return err
		}
		if err := a.ownLease(r, id); err != nil {
			return err
		}
		l, ok := a.node.State().Lease(id)
		if !ok {
			return fmt.Errorf("%w: %d", fsm.ErrLeaseNotFound, id)
		}
		writeJSON(w, http.StatusOK, a.leaseJSON(l, true))
		return nil
	})
}

func (a *API) leaseList(w http.ResponseWriter, r *http.Request) {
	if _, err := query(r); err != nil {
		writeError(w, err)
		return
	}
	a.onLeader(w, r, nil, func() error {
		if err := a.readBarrier(r.Context(), false); err != nil {
			return err
		}
		st := a.node.State()
		out := make([]api.Lease, 0, st.LeaseCount())
		t := tokenOf(r)
		for _, l := range st.Leases() {
			if t != nil && !t.Management && l.Owner != t.AccessorID {
				continue // with ACLs, a token lists only its own leases
			}
			out = append(out, a.leaseJSON(l, false))
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	})
}
