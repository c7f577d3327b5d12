package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/coordd/coordd/api"
)

func (a *API) status(w http.ResponseWriter, r *http.Request) {
	if _, err := query(r); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, a.node.Status())
}

func (a *API) membersList(w http.ResponseWriter, r *http.Request) {
	if _, err := query(r); err != nil {
		writeError(w, err)
		return
	}
	ms, err := a.node.Members(r.Context())
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ms)
}

// readJSON reads a request that takes no query parameters and whose body is
// one JSON object, decoded strictly into v. It returns the body for
// forwarding.
func (a *API) readJSON(w http.ResponseWriter, r *http.Request, v any) ([]byte, error) {
	if _, err := query(r); err != nil {
		return nil, err
	}
	body, err := a.readBody(w, r)
	if err != nil {
		return nil, err
	}
	return body, decodeJSON(body, v)
}

// decodeJSON decodes a JSON object body strictly: unknown fields and
// trailing data are errors.
func decodeJSON(body []byte, v any) error {
	if len(body) == 0 {
		return badRequest("request body must be a JSON object")
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("invalid JSON body: " + err.Error())
	}
	// dec.More is false before a stray ']' or '}': look for the end.
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("invalid JSON body: data after the JSON object")
	}
	return nil
}

// validAddr accepts host:port with a non-empty host that is not the
// unspecified address, and a port from 1 to 65535. Peers dial it, so
// ":7000" or "0.0.0.0:7000" (which would make a node dial itself) and URLs
// are refused.
func validAddr(field, addr string) error {
	if addr == "" {
		return badRequest(field + " is required")
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || strings.ContainsAny(host, "/@") {
		return badRequest(fmt.Sprintf("%s %q must be host:port with a host", field, addr))
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return badRequest(fmt.Sprintf("%s %q: port must be a number from 1 to 65535", field, addr))
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return badRequest(fmt.Sprintf("%s %q is not routable", field, addr))
	}
	return nil
}

func (a *API) membersJoin(w http.ResponseWriter, r *http.Request) {
	var req api.JoinRequest
	body, err := a.readJSON(w, r, &req)
	if err != nil {
		writeError(w, err)
		return
	}
	if err := validKey(req.ID, false); err != nil || len(req.ID) > 128 {
		writeError(w, badRequest("id must be a non-empty string of at most 128 bytes"))
		return
	}
	for _, c := range []struct{ field, addr string }{{"raft_addr", req.RaftAddr}, {"http_addr", req.HTTPAddr}} {
		if err := validAddr(c.field, c.addr); err != nil {
			writeError(w, err)
			return
		}
	}
	a.onLeader(w, r, body, func() error {
		ctx, cancel := context.WithTimeout(r.Context(), a.opts.WriteTimeout)
		defer cancel()
		if err := a.node.Join(ctx, req); err != nil {
			return err
		}
		ms, err := a.node.Members(ctx)
		if err != nil {
			return err
		}
		if c, ok := a.node.(interface{ ClusterID() string }); ok && c.ClusterID() != "" {
			w.Header().Set(api.HeaderClusterID, c.ClusterID())
		}
		writeJSON(w, http.StatusOK, ms)
		return nil
	})
}

func (a *API) membersRemove(w http.ResponseWriter, r *http.Request) {
	if _, err := query(r); err != nil {
		writeError(w, err)
		return
	}
	id := r.PathValue("id")
	a.onLeader(w, r, nil, func() error {
		ctx, cancel := context.WithTimeout(r.Context(), a.opts.WriteTimeout)
		defer cancel()
		if err := a.node.Remove(ctx, id); err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, api.RemoveResult{Removed: id})
		return nil
	})
}

func (a *API) transferLeadership(w http.ResponseWriter, r *http.Request) {
	if _, err := query(r); err != nil {
		writeError(w, err)
		return
	}
	body, err := a.readBody(w, r)
	if err != nil {
		writeError(w, err)
		return
	}
	var req api.TransferRequest
	if len(strings.TrimSpace(string(body))) > 0 {
		if err := decodeJSON(body, &req); err != nil {
			writeError(w, err)
			return
		}
	}
	a.onLeader(w, r, body, func() error {
		ctx, cancel := context.WithTimeout(r.Context(), a.opts.WriteTimeout)
		defer cancel()
		from := a.node.ID()
		if err := a.node.TransferLeadership(ctx, req.ID); err != nil {
			return err
		}
		resp := api.TransferResult{Previous: from}
		if l, ok := a.node.Leader(); ok {
			resp.Leader = l.ID
		}
		writeJSON(w, http.StatusOK, resp)
		return nil
	})
}

func (a *API) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, api.Health{Status: "ok", ID: a.node.ID()})
}

func (a *API) readyz(w http.ResponseWriter, r *http.Request) {
	if err := a.node.Ready(); err != nil {
		// Not ready is always 503, whatever the reason, so that load
		// balancers and orchestrators treat it alike.
		_, detail := classify(err)
		writeErrorDetail(w, http.StatusServiceUnavailable, detail)
		return
	}
	writeJSON(w, http.StatusOK, api.Health{Status: "ready", ID: a.node.ID()})
}
