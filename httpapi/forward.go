package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coordd/coordd/api"
)

// edgeHeaders are checked by the node a client sent the request to
// (a.csrf) and not forwarded.
var edgeHeaders = []string{"Origin", "Sec-Fetch-Site"}

// hopHeaders are not copied across a proxy hop (RFC 9110 §7.6.1).
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// maxForwardAttempts bounds how often one request is forwarded to a new
// leader after the previous one was lost while the request was in flight.
const maxForwardAttempts = 3

// copyBufs hold the buffers that copy a leader's answers back (one per
// forward otherwise: an allocation of 32 KiB per forwarded request).
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// errLeaderChanged cancels a forward whose target is no longer the leader
// this node knows.
var errLeaderChanged = errors.New("the leader changed while the request was forwarded")

// onLeader runs op if this node leads, and forwards the request to the
// leader otherwise. body is the already-read request body, re-sent when
// forwarding. If op reports ErrNotLeader (leadership moved between the check
// and the proposal; nothing was proposed) the request is forwarded once.
func (a *API) onLeader(w http.ResponseWriter, r *http.Request, body []byte, op func() error) {
	local := func() {
		if err := op(); err != nil {
			writeError(w, err)
		}
	}
	if !a.node.IsLeader() {
		a.forward(w, r, body, local)
		return
	}
	err := op()
	if err == nil {
		return
	}
	if errors.Is(err, ErrNotLeader) {
		if r.Header.Get(api.HeaderForwardedBy) == "" {
			a.forward(w, r, body, nil)
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

// isCampaign reports whether r campaigns for an election or a lock (its
// wait is in the body).
func isCampaign(r *http.Request) bool {
	p := r.URL.Path
	return r.Method == http.MethodPost && (strings.HasSuffix(p, "/campaign") || strings.HasPrefix(p, "/v1/locks/"))
}

// forwardBound is how long a forward of r (with the already-read body, nil
// if not read) may take: the request's own deadline, never a global one.
// A request that does not block gets WriteTimeout (the leader gives up on
// a commit or read barrier by then) plus a second; a campaign or lock its
// own wait on top; a blocking query its wait with jitter; an event stream,
// or a campaign whose body is not read here, MaxWait. Whatever the bound,
// a forward is also cancelled as soon as this node sees another leader or
// none (see forwardBody).
func (a *API) forwardBound(r *http.Request, body []byte) time.Duration {
	base := a.opts.WriteTimeout + time.Second
	q := r.URL.Query()
	switch {
	case strings.Contains(r.Header.Get("Accept"), "text/event-stream"):
		return MaxWait + MaxWait/16 + base
	case q.Has("index"):
		wait := DefaultWait
		if d, err := time.ParseDuration(q.Get("wait")); err == nil && d > 0 && d <= MaxWait {
			wait = d
		}
		return wait + wait/16 + base
	case isCampaign(r):
		if body == nil {
			return MaxWait + base
		}
		var req struct {
			Wait string `json:"wait"`
		}
		if json.Unmarshal(body, &req) == nil && req.Wait != "" {
			if d, err := time.ParseDuration(req.Wait); err == nil && d > 0 && d <= MaxWait {
				return d + base
			}
		}
	}
	return base
}

// resendable reports whether r may be sent to a new leader although it may
// already have reached the one that was lost: reads, keepalives (renewing
// twice is harmless) and writes with an Idempotency-Key (the state machine
// answers a repeat with the first result). An encoded command
// (peerApplyPath) is a write like any other: its request carries the
// command's idempotency key in the header, and the leader refuses one
// whose header and command disagree.
func resendable(r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	if r.URL.Path == peerApplyPath {
		// A batch of commands is resendable when every one carries a
		// key (peerKeyedHeader, set by this node on its own request).
		return r.Header.Get(api.HeaderIdempotencyKey) != "" || r.Header.Get(peerKeyedHeader) == "1"
	}
	if r.Method == http.MethodPost && (r.URL.Path == peerKeepalivePath ||
		strings.HasPrefix(r.URL.Path, "/v1/leases/") && strings.HasSuffix(r.URL.Path, "/keepalive")) {
		return true
	}
	return r.Header.Get(api.HeaderIdempotencyKey) != ""
}

// forward proxies the request, whose body is already read, to the leader
// (see forwardBody). local, if not nil, serves the request here should this
// node become the leader before it is sent.
func (a *API) forward(w http.ResponseWriter, r *http.Request, body []byte, local func()) {
	a.forwardRequest(w, r, body, nil, a.forwardBound(r, body), local)
}

// forwardBody forwards r with the body rb, streamed (it may be large, and is
// sent at most once), bounded by bound.
func (a *API) forwardBody(w http.ResponseWriter, r *http.Request, rb io.Reader, bound time.Duration) {
	a.forwardRequest(w, r, nil, rb, bound, nil)
}

// forwardRequest proxies r to the leader's HTTP API and copies the answer
// back, streaming. The body is either body (already read, may be re-sent)
// or stream (sent at most once).
//
// A forward follows leadership: it targets the leader of this node's
// current LeaderView and is cancelled when that view changes (another
// leader, or none) and the target has not answered within ForwardGrace — except membership changes and leadership transfers
// (/v1/cluster/), which change the leader themselves before answering. A request that cannot have reached the lost leader
// (never written), or that is safe to repeat (see resendable), is then
// forwarded to the new leader, up to maxForwardAttempts times; any other
// answers outcome_unknown at once. A node without a leader waits for one
// until LeaderWait after it lost the last, then answers no_leader. All of
// these answers are 503s with Retry-After. The whole forward is bounded by
// bound (the request's own deadline), and by the client's context.
//
// A request that was already forwarded once is not forwarded again: that
// would mean two nodes disagree about the leader, and the client should
// retry after Retry-After instead of bouncing around.
func (a *API) forwardRequest(w http.ResponseWriter, r *http.Request, body []byte, stream io.Reader, bound time.Duration, local func()) {
	ctx, cancel := context.WithTimeout(r.Context(), bound)
	defer cancel()
	var lastLeader string
	for attempt := 1; ; attempt++ {
		view := a.node.LeaderView()
		if !view.Known {
			view = a.awaitLeader(ctx, view)
		}
		leader := view.Leader
		switch {
		case r.Context().Err() != nil:
			return // the client went away
		case !view.Known:
			msg := "no leader: the cluster is electing one or has lost its quorum"
			if lastLeader != "" {
				msg = fmt.Sprintf("no leader: leader %s was lost while the request was forwarded, and no new one is known yet (nothing was sent to a new leader)", lastLeader)
			}
			writeErrorDetail(w, http.StatusServiceUnavailable, api.ErrorDetail{Code: api.CodeNoLeader, Message: msg})
			return
		case leader.ID == a.node.ID() && local != nil && a.node.IsLeader():
			local() // this node has become the leader meanwhile
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
		var rb io.Reader = stream
		if body != nil {
			rb = bytes.NewReader(body)
		}
		sent, done := a.forwardOnce(ctx, w, r, rb, view)
		if done {
			return
		}
		lastLeader = leader.ID
		// The leader changed while the request was in flight.
		if stream == nil && (!sent || resendable(r)) && attempt < maxForwardAttempts && ctx.Err() == nil {
			continue
		}
		switch {
		case !sent:
			writeErrorDetail(w, http.StatusServiceUnavailable, api.ErrorDetail{Code: api.CodeNotLeader, Leader: leader.ID,
				Message: fmt.Sprintf("leader %s was lost before the request was sent to it: nothing was applied, retry", leader.ID)})
		case resendable(r) && (r.Method == http.MethodGet || r.Method == http.MethodHead):
			writeErrorDetail(w, http.StatusServiceUnavailable, api.ErrorDetail{Code: api.CodeForwardFailed, Leader: leader.ID,
				Message: fmt.Sprintf("leader %s was lost while the request was forwarded to it: retry", leader.ID)})
		default:
			writeErrorDetail(w, http.StatusServiceUnavailable, api.ErrorDetail{Code: api.CodeOutcomeUnknown, Leader: leader.ID,
				Message: fmt.Sprintf("leader %s was lost while the request was forwarded to it: the write may or may not have been applied (retry with the same Idempotency-Key, or read before retrying)", leader.ID)})
		}
		return
	}
}

// awaitLeader waits until view (which knows no leader) changes to one that
// does, until LeaderWait has passed since it began, or until ctx is done;
// it returns the last view seen.
func (a *API) awaitLeader(ctx context.Context, view LeaderView) LeaderView {
	for !view.Known {
		left := time.Until(view.Since.Add(a.opts.LeaderWait))
		if view.Since.IsZero() || left <= 0 || view.Changed == nil {
			return view
		}
		t := time.NewTimer(left)
		select {
		case <-view.Changed:
			t.Stop()
			view = a.node.LeaderView()
		case <-t.C:
			return view
		case <-ctx.Done():
			t.Stop()
			return view
		}
	}
	return view
}

// forwardOnce sends r to view's leader. done is true when the request was
// answered (the leader's answer copied back, an error written, or the
// client gone); false means the view changed before an answer arrived, and
// sent says whether the request may have reached the lost leader.
func (a *API) forwardOnce(ctx context.Context, w http.ResponseWriter, r *http.Request, rb io.Reader, view LeaderView) (sent, done bool) {
	leader := view.Leader
	target := leader.HTTPAddr
	if !strings.Contains(target, "://") {
		target = "http://" + target
	}
	url := target + r.URL.EscapedPath()
	if r.URL.RawQuery != "" {
		url += "?" + r.URL.RawQuery
	}
	fctx, fcancel := context.WithCancelCause(ctx)
	defer fcancel(nil)
	// Follow leadership: the view's channel cancels this forward. watching
	// is closed to stop following once the answer is on its way back (but
	// an event stream follows for as long as it lasts).
	watching := make(chan struct{})
	var stopWatching atomic.Bool
	stopWatch := func() {
		if stopWatching.CompareAndSwap(false, true) {
			close(watching)
		}
	}
	defer stopWatch()
	if strings.HasPrefix(r.URL.Path, "/v1/cluster/") {
		// A membership change or a leadership transfer changes the leader
		// itself before it answers: it is bounded by its deadline only.
		stopWatch()
	}
	go func() {
		select {
		case <-view.Changed:
		case <-watching:
			return
		case <-fctx.Done():
			return
		}
		// A leader that is alive answers within the grace (a commit it
		// cannot finish fails once it steps down); a stalled one does not.
		if g := a.opts.ForwardGrace; g > 0 {
			t := time.NewTimer(g)
			defer t.Stop()
			select {
			case <-t.C:
			case <-watching:
				return
			case <-fctx.Done():
				return
			}
		}
		fcancel(errLeaderChanged)
	}()
	var wrote atomic.Bool
	tctx := httptrace.WithClientTrace(fctx, &httptrace.ClientTrace{
		WroteHeaders: func() { wrote.Store(true) },
	})
	req, err := http.NewRequestWithContext(tctx, r.Method, url, rb)
	if err != nil {
		writeErrorDetail(w, http.StatusInternalServerError, api.ErrorDetail{Code: api.CodeInternal, Message: "forward: " + err.Error()})
		return false, true
	}
	for k, vs := range r.Header {
		req.Header[k] = append([]string(nil), vs...)
	}
	for _, h := range hopHeaders {
		req.Header.Del(h)
	}
	// This node checked the request's origin against its own Host; the
	// leader, at another address, would see any page's origin as foreign.
	for _, h := range edgeHeaders {
		req.Header.Del(h)
	}
	a.signForward(req) // X-Coordd-Forwarded-By, authenticated (peerauth.go)
	a.metrics.forwarded.Inc()
	resp, err := a.fwd.Do(req)
	if err != nil {
		if r.Context().Err() != nil {
			return wrote.Load(), true // the client went away
		}
		if errors.Is(context.Cause(fctx), errLeaderChanged) {
			return wrote.Load(), false
		}
		code := api.CodeForwardFailed
		msg := fmt.Sprintf("forwarding to leader %s at %s failed: %v", leader.ID, leader.HTTPAddr, err)
		if ctx.Err() != nil {
			msg = fmt.Sprintf("forwarding to leader %s at %s: no answer within the request's deadline", leader.ID, leader.HTTPAddr)
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			code = api.CodeOutcomeUnknown
			msg += " (the write may or may not have been applied: retry with the same Idempotency-Key, or read before retrying)"
		}
		writeErrorDetail(w, http.StatusServiceUnavailable, api.ErrorDetail{Code: code, Leader: leader.ID, Message: msg})
		return wrote.Load(), true
	}
	defer resp.Body.Close()
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		stopWatch()
	}
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
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return true, true
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
		if rerr != nil {
			if b, ok := w.(*bufferedResponse); ok && !errors.Is(rerr, io.EOF) {
				// The answer broke off after its status: a node's own
				// batch must not decode what it has of it.
				b.cut = rerr
			}
			return true, true
		}
	}
}
