package httpapi

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/coordd/coordd/api"
)

// hopHeaders are not copied across a proxy hop (RFC 9110 §7.6.1).
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// onLeader runs op if this node leads, and forwards the request to the
// leader otherwise. body is the already-read request body, re-sent when
// forwarding. If op reports ErrNotLeader (leadership moved between the check
// and the proposal; nothing was proposed) the request is forwarded once.
func (a *API) onLeader(w http.ResponseWriter, r *http.Request, body []byte, op func() error) {
	if !a.node.IsLeader() {
		a.forward(w, r, body)
		return
	}
	err := op()
	if err == nil {
		return
	}
	if errors.Is(err, ErrNotLeader) {
		if r.Header.Get(api.HeaderForwardedBy) == "" {
			a.forward(w, r, body)
			return
		}
		status, detail := classify(err)
		if l, ok := a.node.Leader(); ok {
			detail.Leader = l.ID
		}
		writeErrorDetail(w, status, detail)
		return
	}
	writeError(w, err)
}

// mayBlock reports whether a request may legitimately take up to MaxWait:
// blocking queries, Server-Sent Events, campaigns and lock acquisitions
// with a wait.
func mayBlock(r *http.Request) bool {
	p := r.URL.Path
	return r.URL.Query().Has("index") ||
		strings.Contains(r.Header.Get("Accept"), "text/event-stream") ||
		r.Method == http.MethodPost && (strings.HasSuffix(p, "/campaign") || strings.HasPrefix(p, "/v1/locks/"))
}

// forward proxies the request to the leader's HTTP API and copies the
// answer back, streaming. A request that was already forwarded once is not
// forwarded again: that would mean two nodes disagree about the leader, and
// the client should retry after Retry-After instead of bouncing around.
func (a *API) forward(w http.ResponseWriter, r *http.Request, body []byte) {
	var rb io.Reader
	if body != nil {
		rb = bytes.NewReader(body)
	}
	// Bound the hop so that a stalled leader (paused, partitioned) cannot
	// hold this request forever: a blocking query may take its whole wait.
	hop := a.opts.WriteTimeout + 5*time.Second
	if mayBlock(r) {
		hop = MaxWait + MaxWait/16 + a.opts.WriteTimeout + 10*time.Second
	}
	a.forwardBody(w, r, rb, hop)
}

// forwardBody forwards r with the body rb (streamed: it may be large),
// bounded by hop.
func (a *API) forwardBody(w http.ResponseWriter, r *http.Request, rb io.Reader, hop time.Duration) {
	leader, ok := a.node.Leader()
	switch {
	case !ok:
		writeErrorDetail(w, http.StatusServiceUnavailable, api.ErrorDetail{Code: api.CodeNoLeader, Message: "no leader: the cluster is electing one or has lost its quorum"})
		return
	case r.Header.Get(api.HeaderForwardedBy) != "":
		writeErrorDetail(w, http.StatusServiceUnavailable, api.ErrorDetail{Code: api.CodeNotLeader, Leader: leader.ID,
			Message: fmt.Sprintf("node %s received a forwarded request but is not the leader (leader is %s)", a.node.ID(), leader.ID)})
		return
	case leader.HTTPAddr == "":
		writeErrorDetail(w, http.StatusServiceUnavailable, api.ErrorDetail{Code: api.CodeNotLeader, Leader: leader.ID,
			Message: "the leader's HTTP address is not known yet"})
		return
	}
	target := leader.HTTPAddr
	if !strings.Contains(target, "://") {
		target = "http://" + target
	}
	url := target + r.URL.EscapedPath()
	if r.URL.RawQuery != "" {
		url += "?" + r.URL.RawQuery
	}
	ctx, cancel := context.WithTimeout(r.Context(), hop)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, r.Method, url, rb)
	if err != nil {
		writeErrorDetail(w, http.StatusInternalServerError, api.ErrorDetail{Code: api.CodeInternal, Message: "forward: " + err.Error()})
		return
	}
	for k, vs := range r.Header {
		req.Header[k] = append([]string(nil), vs...)
	}
	for _, h := range hopHeaders {
		req.Header.Del(h)
	}
	req.Header.Set(api.HeaderForwardedBy, a.node.ID())
	a.metrics.forwarded.Inc()
	resp, err := a.fwd.Do(req)
	if err != nil {
		if r.Context().Err() != nil {
			return // the client went away
		}
		code := api.CodeForwardFailed
		msg := fmt.Sprintf("forwarding to leader %s at %s failed: %v", leader.ID, leader.HTTPAddr, err)
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			code = api.CodeOutcomeUnknown
			msg += " (the write may or may not have been applied: retry with the same Idempotency-Key, or read before retrying)"
		}
		writeErrorDetail(w, http.StatusServiceUnavailable, api.ErrorDetail{Code: code, Leader: leader.ID, Message: msg})
		return
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	for _, h := range hopHeaders {
		w.Header().Del(h)
	}
	// X-Coordd-Served-By names the leader that answered; this names the
	// node that forwarded, so clients learn who leads and who does not.
	w.Header().Set(api.HeaderForwardedBy, a.node.ID())
	w.WriteHeader(resp.StatusCode)
	flusher, _ := w.(http.Flusher)
	buf := make([]byte, 32<<10)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
		if rerr != nil {
			return
		}
	}
}
