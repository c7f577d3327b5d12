package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/fsm"
)

// withIntegrity serves the digest, alarm and shadow endpoints beside the
// API, and refuses what this node must not serve: everything but health,
// status, metrics and these endpoints while refusing (refuse mode and an
// alarm names it), and everything but stale reads on a shadow member.
//
//	GET  /v1/digests            this node's digests (open: indexes and hashes only)
//	POST /v1/digests            commit a digest point (operator write; on the leader)
//	GET  /v1/alarms             the cluster's alarms (operator read)
//	POST /v1/alarms/disarm      clear one or every alarm (operator write; on the leader)
//	GET  /v1/shadow/status      the leader's comparison of the members (operator read)
func (s *Server) withIntegrity(next http.Handler, guardRead, guardWrite func(http.Handler) http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/digests", s.digestsGet)
	mux.Handle("POST /v1/digests", guardWrite(s.onLeaderHTTP(s.digestPointPost)))
	mux.Handle("GET /v1/alarms", guardRead(http.HandlerFunc(s.alarmsGet)))
	mux.Handle("POST /v1/alarms/disarm", guardWrite(s.onLeaderHTTP(s.alarmsDisarm)))
	mux.Handle("GET /v1/shadow/status", guardRead(s.onLeaderHTTP(s.shadowStatusGet)))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h, pattern := mux.Handler(r); pattern != "" {
			h.ServeHTTP(w, r)
			return
		}
		if code, msg := s.refusal(r); code != "" {
			writeErr(w, http.StatusServiceUnavailable, code, msg)
			return
		}
		s.readShadow.serve(next, w, r)
	})
}

// alwaysServed are the paths a refusing node or a shadow still serves.
func alwaysServed(path string) bool {
	switch path {
	case "/healthz", "/readyz", "/metrics", "/v1/status", "/v1/cluster/members":
		return true
	}
	return path == "/ui" || strings.HasPrefix(path, "/ui/") || strings.HasPrefix(path, "/debug/pprof/")
}

// refusal says why this node does not serve r ("" when it does).
func (s *Server) refusal(r *http.Request) (code, msg string) {
	if alwaysServed(r.URL.Path) {
		return "", ""
	}
	if s.refusing.Load() {
		return api.CodeStateCorrupt, fmt.Sprintf("node %s refuses to serve: an alarm says its state differs from the cluster's (-corrupt-check=refuse); ask another node, and see coordctl alarm list", s.cfg.NodeID)
	}
	if s.cfg.Shadow && !(r.Method == http.MethodGet && r.URL.Query().Has("stale")) {
		return api.CodeShadowMember, fmt.Sprintf("node %s is a shadow member: it serves only ?stale reads; ask a voting member", s.cfg.NodeID)
	}
	return "", ""
}

func writeErr(w http.ResponseWriter, status int, code, msg string) {
	if status == http.StatusServiceUnavailable {
		w.Header().Set(api.HeaderRetryAfter, "1")
	}
	writeJSONBody(w, status, api.ErrorBody{Error: api.ErrorDetail{Code: code, Message: msg}})
}

func writeJSONBody(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// writeApplyErr answers a failed proposal.
func writeApplyErr(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrNoLeader):
		writeErr(w, http.StatusServiceUnavailable, api.CodeNoLeader, err.Error())
	case errors.Is(err, ErrNotLeader):
		writeErr(w, http.StatusServiceUnavailable, api.CodeNotLeader, err.Error())
	case errors.Is(err, ErrLeaderNotReady):
		writeErr(w, http.StatusServiceUnavailable, api.CodeLeaderNotReady, err.Error())
	case errors.Is(err, ErrOutcomeUnknown):
		writeErr(w, http.StatusServiceUnavailable, api.CodeOutcomeUnknown, err.Error())
	case errors.Is(err, ErrShutdown):
		writeErr(w, http.StatusServiceUnavailable, api.CodeShuttingDown, err.Error())
	default:
		writeErr(w, http.StatusInternalServerError, api.CodeInternal, err.Error())
	}
}

// onLeaderHTTP runs h on the leader and forwards the request there from
// any other node (once: a forwarded request is not forwarded again).
func (s *Server) onLeaderHTTP(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.raft.State() == raft.Leader {
			h(w, r)
			return
		}
		leader, ok := s.Leader()
		if !ok || leader.HTTPAddr == "" {
			writeErr(w, http.StatusServiceUnavailable, api.CodeNoLeader, "no leader known: retry")
			return
		}
		if r.Header.Get(api.HeaderForwardedBy) != "" {
			writeErr(w, http.StatusServiceUnavailable, api.CodeNotLeader, fmt.Sprintf("node %s is not the leader (leader is %s)", s.cfg.NodeID, leader.ID))
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		if err != nil {
			writeErr(w, http.StatusBadRequest, api.CodeBadRequest, "reading the body: "+err.Error())
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, r.Method, s.httpScheme()+"://"+leader.HTTPAddr+r.URL.RequestURI(), bytes.NewReader(body))
		if err != nil {
			writeErr(w, http.StatusInternalServerError, api.CodeInternal, err.Error())
			return
		}
		for _, k := range []string{"Authorization", "Content-Type"} {
			if v := r.Header.Get(k); v != "" {
				req.Header.Set(k, v)
			}
		}
		req.Header.Set(api.HeaderForwardedBy, s.cfg.NodeID)
		resp, err := s.peerClient.Do(req)
		if err != nil {
			writeErr(w, http.StatusServiceUnavailable, api.CodeForwardFailed, fmt.Sprintf("forwarding to leader %s failed: %v", leader.ID, err))
			return
		}
		defer resp.Body.Close()
		for _, k := range []string{"Content-Type", api.HeaderRetryAfter} {
			if v := resp.Header.Get(k); v != "" {
				w.Header().Set(k, v)
			}
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	})
}

func uintParam(r *http.Request, name string) (uint64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("?%s=%q is not an index", name, v)
	}
	return n, nil
}

func (s *Server) digestsGet(w http.ResponseWriter, r *http.Request) {
	after, err := uintParam(r, "after")
	if err != nil {
		writeErr(w, http.StatusBadRequest, api.CodeBadRequest, err.Error())
		return
	}
	at, err := uintParam(r, "index")
	if err != nil {
		writeErr(w, http.StatusBadRequest, api.CodeBadRequest, err.Error())
		return
	}
	writeJSONBody(w, http.StatusOK, s.localDigests(after, at))
}

func (s *Server) digestPointPost(w http.ResponseWriter, r *http.Request) {
	res, err := s.propose(r.Context(), fsm.DigestPoint{})
	if err != nil {
		writeApplyErr(w, err)
		return
	}
	writeJSONBody(w, http.StatusOK, api.DigestPointResult{Index: res.Index})
}

func (s *Server) alarmsGet(w http.ResponseWriter, _ *http.Request) {
	writeJSONBody(w, http.StatusOK, api.AlarmList{Alarms: alarmsJSON(s.fsm.State().Alarms())})
}

func (s *Server) alarmsDisarm(w http.ResponseWriter, r *http.Request) {
	var req api.DisarmRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, api.CodeBadRequest, "body: want {\"member\":\"ID\"} or {\"all\":true}: "+err.Error())
		return
	}
	if (req.Member == "") == !req.All {
		writeErr(w, http.StatusBadRequest, api.CodeBadRequest, "name one member, or all: {\"member\":\"ID\"} or {\"all\":true}")
		return
	}
	p := fsm.AlarmDisarm{Member: req.Member}
	if _, err := fsm.NewCommand(p); err != nil {
		writeErr(w, http.StatusBadRequest, api.CodeBadRequest, err.Error())
		return
	}
	res, err := s.propose(r.Context(), p)
	if err != nil {
		writeApplyErr(w, err)
		return
	}
	if errors.Is(res.Err, fsm.ErrAlarmNotFound) {
		writeErr(w, http.StatusNotFound, api.CodeAlarmNotFound, fmt.Sprintf("no alarm names member %q", req.Member))
		return
	}
	s.log.Info("alarm disarmed by an operator", "member", req.Member, "all", req.All, "disarmed", res.Deleted, "index", res.Index)
	writeJSONBody(w, http.StatusOK, api.DisarmResult{Disarmed: res.Deleted, Index: res.Index})
}

func (s *Server) shadowStatusGet(w http.ResponseWriter, r *http.Request) {
	writeJSONBody(w, http.StatusOK, s.shadowStatus(r.URL.Query().Has("all")))
}
