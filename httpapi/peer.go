package httpapi

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/fsm"
)

// The peer protocol: what nodes send each other besides forwarded client
// requests (docs/operations.md, "Forwarding").
//
//   - Connections. A node whose server accepts unencrypted HTTP/2 (prior
//     knowledge) says so on every answer with X-Coordd-Peer-Proto: h2c.
//     The forwarding transport (peerTransport) sends to a peer over
//     HTTP/1.1 until it has seen that header from it, then over one
//     multiplexed HTTP/2 connection (a stream per forward), so that a
//     cluster of mixed versions keeps forwarding. Under TLS, HTTP/2 is
//     negotiated with ALPN instead.
//   - Keepalives. A follower coalesces the keepalives of all its clients
//     (single and batched) into one renewal in flight at a time, or a few:
//     POST /v1/internal/keepalive, authenticated like every forward
//     (peerauth.go), whose body is the lease ids (encodeKeepaliveIDs) and
//     whose answer is each lease's remaining and full TTL
//     (encodeKeepaliveAnswer). The leader renews them with one
//     KeepaliveMany (one leadership round for the batch). The batch is
//     forwarded with forwardRequest's rules (it follows leadership, is
//     resent to a new leader — a keepalive is safe to repeat —, answers
//     no_leader after LeaderWait); its failure is every waiter's answer.
//   - Writes. A follower sends the validated, encoded command of a hot
//     write (locks, campaigns, resign, proclaim, KV put and delete) to
//     POST /v1/internal/apply and renders the leader's result itself
//     (peerapply.go); the commands that arrive together go as one batch
//     (peerbatch.go).

// peerProtoHeader advertises the peer protocols a node's server accepts.
const peerProtoHeader = "X-Coordd-Peer-Proto"

// peerKeepalivePath is the leader's endpoint for coalesced keepalives.
const peerKeepalivePath = "/v1/internal/keepalive"

// peerContentType is the content type of the peer protocol's bodies.
const peerContentType = "application/x-coordd-peer"

// peerKeepaliveVersion is the first byte of a keepalive batch and of its
// answer.
const peerKeepaliveVersion = 1

// maxPeerKeepaliveIDs bounds the leases of one coalesced renewal (about
// 100 KiB encoded at most, well under MaxRequestBytes).
const maxPeerKeepaliveIDs = 16 << 10

// maxKeepaliveBatchesInFlight bounds the coalesced renewals one follower
// has in flight: keepalives that arrive meanwhile wait for the next.
const maxKeepaliveBatchesInFlight = 2

var errPeerDecode = errors.New("httpapi: malformed peer message")

// encodeKeepaliveIDs encodes a batch: the version, the count, then the ids,
// sorted, unique and positive, as uvarint deltas (each at least 1).
func encodeKeepaliveIDs(ids []uint64) []byte {
	buf := make([]byte, 0, 1+binary.MaxVarintLen64+3*len(ids))
	buf = append(buf, peerKeepaliveVersion)
	buf = binary.AppendUvarint(buf, uint64(len(ids)))
	var prev uint64
	for _, id := range ids {
		buf = binary.AppendUvarint(buf, id-prev)
		prev = id
	}
	return buf
}

// decodeKeepaliveIDs decodes encodeKeepaliveIDs' output, refusing anything
// else: another version, no or too many ids, ids not strictly increasing
// (a zero delta), overflow, or trailing bytes.
func decodeKeepaliveIDs(b []byte) ([]uint64, error) {
	if len(b) < 1 || b[0] != peerKeepaliveVersion {
		return nil, fmt.Errorf("%w: unknown version", errPeerDecode)
	}
	b = b[1:]
	n, k := binary.Uvarint(b)
	if k <= 0 || n == 0 || n > maxPeerKeepaliveIDs || n > uint64(len(b)) {
		return nil, fmt.Errorf("%w: bad count", errPeerDecode)
	}
	b = b[k:]
	ids := make([]uint64, 0, n)
	var prev uint64
	for range n {
		d, k := binary.Uvarint(b)
		if k <= 0 || d == 0 || prev+d < prev {
			return nil, fmt.Errorf("%w: bad id", errPeerDecode)
		}
		prev += d
		ids = append(ids, prev)
		b = b[k:]
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: trailing bytes", errPeerDecode)
	}
	return ids, nil
}

// keepaliveAnswer is the leader's answer for one lease of a batch.
type keepaliveAnswer struct {
	found     bool
	remaining int64 // ms
	ttl       int64 // ms
}

// encodeKeepaliveAnswer encodes the answers for a batch, in its order: the
// version, the count, then per lease uvarint(remaining ms + 1) (0: not
// found) and, when found, uvarint(TTL ms).
func encodeKeepaliveAnswer(ans []keepaliveAnswer) []byte {
	buf := make([]byte, 0, 1+binary.MaxVarintLen64+6*len(ans))
	buf = append(buf, peerKeepaliveVersion)
	buf = binary.AppendUvarint(buf, uint64(len(ans)))
	for _, a := range ans {
		if !a.found {
			buf = append(buf, 0)
			continue
		}
		buf = binary.AppendUvarint(buf, uint64(max(a.remaining, 0))+1)
		buf = binary.AppendUvarint(buf, uint64(max(a.ttl, 0)))
	}
	return buf
}

// decodeKeepaliveAnswer decodes encodeKeepaliveAnswer's output for a batch
// of n leases.
func decodeKeepaliveAnswer(b []byte, n int) ([]keepaliveAnswer, error) {
	if len(b) < 1 || b[0] != peerKeepaliveVersion {
		return nil, fmt.Errorf("%w: unknown version", errPeerDecode)
	}
	b = b[1:]
	c, k := binary.Uvarint(b)
	if k <= 0 || n < 0 || c != uint64(n) || c > maxPeerKeepaliveIDs {
		return nil, fmt.Errorf("%w: bad count", errPeerDecode)
	}
	b = b[k:]
	out := make([]keepaliveAnswer, n)
	const maxMs = 1 << 53
	for i := range out {
		r, k := binary.Uvarint(b)
		if k <= 0 || r > maxMs {
			return nil, fmt.Errorf("%w: bad remaining", errPeerDecode)
		}
		b = b[k:]
		if r == 0 {
			continue
		}
		ttl, k := binary.Uvarint(b)
		if k <= 0 || ttl > maxMs {
			return nil, fmt.Errorf("%w: bad ttl", errPeerDecode)
		}
		b = b[k:]
		out[i] = keepaliveAnswer{found: true, remaining: int64(r - 1), ttl: int64(ttl)}
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: trailing bytes", errPeerDecode)
	}
	return out, nil
}

// peerKeepalive serves POST /v1/internal/keepalive on the leader: a
// follower's coalesced keepalives. Only nodes may call it (the request
// carries an authenticated X-Coordd-Forwarded-By; trustForwarded removed
// it otherwise).
func (a *API) peerKeepalive(w http.ResponseWriter, r *http.Request) {
	body, ok := a.peerBody(w, r, "")
	if !ok {
		return
	}
	ids, err := decodeKeepaliveIDs(body)
	serveOnLeader(a, w, ids, err, func(ids []uint64) { a.serveKeepaliveBatch(w, r.Context(), ids) })
}

// serveOnLeader serves v, decoded from an internal endpoint's body, here:
// 400 bad_request if it did not decode (err), 503 not_leader if this node
// does not lead (any more).
func serveOnLeader[T any](a *API, w http.ResponseWriter, v T, err error, serve func(T)) {
	if err != nil {
		writeError(w, badRequest(err.Error()))
		return
	}
	if !a.node.IsLeader() {
		a.notLeader(w, ErrNotLeader)
		return
	}
	serve(v)
}

// peerBody reads the body of a request to an internal endpoint, which
// only the nodes of this cluster may call (an authenticated
// X-Coordd-Forwarded-By: trustForwarded removed it otherwise), with no
// query. refused, if not empty, refuses every request with 403 and says
// why (e.g. "ACLs are on"). It reports false once it has answered.
func (a *API) peerBody(w http.ResponseWriter, r *http.Request, refused string) ([]byte, bool) {
	if r.Header.Get(api.HeaderForwardedBy) == "" || refused != "" {
		msg := r.URL.Path + " is for the nodes of this cluster only"
		if refused != "" {
			msg += ", and not while " + refused
		}
		writeErrorDetail(w, http.StatusForbidden, api.ErrorDetail{Code: api.CodePermissionDenied, Message: msg})
		return nil, false
	}
	if _, err := query(r); err != nil {
		writeError(w, err)
		return nil, false
	}
	body, err := a.readBody(w, r)
	if err != nil {
		writeError(w, err)
		return nil, false
	}
	return body, true
}

// notLeader answers a request forwarded to this node, which does not lead
// (or no longer), as onLeader does: 503 not_leader naming the leader.
func (a *API) notLeader(w http.ResponseWriter, err error) {
	status, detail := classify(err)
	if l, ok := a.node.Leader(); ok {
		detail.Leader = l.ID
	}
	writeErrorDetail(w, status, detail)
}

// peerError answers an internal request that failed here: not_leader
// naming the leader as notLeader does, any other error as writeError.
func (a *API) peerError(w http.ResponseWriter, err error) {
	if errors.Is(err, ErrNotLeader) {
		a.notLeader(w, err)
		return
	}
	writeError(w, err)
}

// serveKeepaliveBatch renews ids here, on the leader, with one
// KeepaliveMany, and writes the peer answer.
func (a *API) serveKeepaliveBatch(w http.ResponseWriter, ctx context.Context, ids []uint64) {
	rems, err := a.node.KeepaliveMany(ctx, ids)
	if err != nil {
		a.peerError(w, err)
		return
	}
	ans := make([]keepaliveAnswer, len(ids))
	for i := range ids {
		if rems[i] >= 0 { // the time left after a renewal is the TTL
			ms := rems[i].Milliseconds()
			ans[i] = keepaliveAnswer{found: true, remaining: ms, ttl: ms}
		}
	}
	w.Header().Set(headerContentType, peerContentType)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(encodeKeepaliveAnswer(ans))
}

// coalesceKeepalive reports whether a keepalive r, received by this
// follower from a client, goes through the coalescer. With ACLs on it does
// not: the leader checks the token and the lease's owner of each request
// forwarded whole, as it does for any forward.
//
// Nor does it while this node has no peer secret yet (a new cluster's
// first moments): the leader answers the internal endpoint only to a
// request it can authenticate.
func (a *API) coalesceKeepalive(r *http.Request) bool {
	return !a.opts.ACL && !a.opts.NoKeepaliveCoalescing && r.Header.Get(api.HeaderForwardedBy) == "" &&
		!a.node.IsLeader() && a.node.PeerSecret() != nil
}

// kaWaiter is one client request waiting for a coalesced renewal.
type kaWaiter struct {
	ids  []uint64
	done chan struct{} // closed once res is set
	res  *kaBatchResult
}

// kaBatchResult is the outcome of one coalesced renewal, shared by its
// waiters: either the answer of each lease, or the response (an error)
// every waiter relays.
type kaBatchResult struct {
	answers  map[uint64]keepaliveAnswer // nil unless the leader answered 200
	servedBy string
	status   int
	header   http.Header
	body     []byte
}

// kaCoalescer sends a follower's keepalives to the leader in batches: a
// keepalive that arrives while fewer than maxKeepaliveBatchesInFlight
// batches are in flight goes at once (with whatever else waits); others
// wait for the next batch (natural batching: the busier the follower, the
// larger the batches, with no timer).
type kaCoalescer struct {
	a *API

	mu       sync.Mutex
	pending  []*kaWaiter
	inFlight int
}

// submit queues ids and returns the waiter that is answered (done closed)
// exactly once, when its batch ends.
func (c *kaCoalescer) submit(ids []uint64) *kaWaiter {
	w := &kaWaiter{ids: ids, done: make(chan struct{})}
	c.mu.Lock()
	c.pending = append(c.pending, w)
	start := c.inFlight < maxKeepaliveBatchesInFlight
	if start {
		c.inFlight++
	}
	c.mu.Unlock()
	if start {
		go c.run()
	}
	return w
}

// run sends batches while keepalives wait, then ends.
func (c *kaCoalescer) run() {
	for {
		c.mu.Lock()
		if len(c.pending) == 0 {
			c.inFlight--
			c.mu.Unlock()
			return
		}
		var batch []*kaWaiter
		n := 0
		for len(c.pending) > 0 && (len(batch) == 0 || n+len(c.pending[0].ids) <= maxPeerKeepaliveIDs) {
			w := c.pending[0]
			c.pending[0] = nil
			c.pending = c.pending[1:]
			batch = append(batch, w)
			n += len(w.ids)
		}
		if len(c.pending) == 0 {
			c.pending = nil // let the backing array go
		}
		c.mu.Unlock()
		res := c.send(batch, n)
		for _, w := range batch {
			w.res = res
			close(w.done)
		}
	}
}

// send renews the leases of batch (n ids, duplicates included) through the
// leader, with forwardRequest's rules, and returns the shared result.
func (c *kaCoalescer) send(batch []*kaWaiter, n int) (res *kaBatchResult) {
	a := c.a
	defer func() {
		// No request goroutine is here to recover a panic: answer the
		// batch's waiters instead of crashing the node.
		if p := recover(); p != nil {
			a.log.Error("panic in coalesced keepalive", "panic", p, "stack", string(debug.Stack()))
			res = errorResult(fmt.Errorf("internal error: %v", p))
		}
	}()
	ids := make([]uint64, 0, n)
	for _, w := range batch {
		ids = append(ids, w.ids...)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	a.metrics.kaBatches.Inc()
	a.metrics.kaBatchLeases.Observe(float64(len(ids)))
	a.metrics.kaBatchRequests.Observe(float64(len(batch)))

	body := encodeKeepaliveIDs(ids)
	bound := a.opts.WriteTimeout + time.Second
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, peerKeepalivePath, nil)
	if err != nil {
		return errorResult(err)
	}
	req.Header.Set(headerContentType, peerContentType)
	rec := newBufferedResponse()
	local := func() { a.serveKeepaliveBatch(rec, ctx, ids) }
	a.forwardRequest(rec, req, body, nil, bound, local)
	if !rec.wrote {
		// forwardRequest answers nothing when the request's context ends,
		// and this one's is the batch's bound: without this, a waiter
		// whose own timer had not fired yet relayed an empty 200.
		l, _ := a.node.Leader()
		writeErrorDetail(rec, http.StatusServiceUnavailable, api.ErrorDetail{Code: api.CodeOutcomeUnknown, Leader: l.ID,
			Message: fmt.Sprintf("forwarding to leader %s: no answer within the request's deadline (the write may or may not have been applied: retry with the same Idempotency-Key, or read before retrying)", l.ID)})
	}

	if rec.cut != nil {
		l, _ := a.node.Leader()
		cut := newBufferedResponse()
		outcomeUnknown(cut, l.ID, fmt.Sprintf("its answer broke off: %v", rec.cut))
		return &kaBatchResult{status: cut.status, header: cut.header, body: cut.body.Bytes()}
	}
	res = &kaBatchResult{status: rec.status, header: rec.header, body: rec.body.Bytes(), servedBy: rec.header.Get(api.HeaderServedBy)}
	if res.servedBy == "" {
		res.servedBy = a.node.ID() // served here (local) or answered by this node
	}
	if rec.status != http.StatusOK || rec.header.Get(headerContentType) != peerContentType {
		return res
	}
	ans, err := decodeKeepaliveAnswer(res.body, len(ids))
	if err != nil {
		a.log.Error("coalesced keepalive: bad answer from the leader", "error", err)
		return errorResult(fmt.Errorf("coalesced keepalive: the leader's answer: %w", err))
	}
	res.answers = make(map[uint64]keepaliveAnswer, len(ids))
	for i, id := range ids {
		res.answers[id] = ans[i]
	}
	return res
}

// errorResult is a batch result that answers every waiter with err.
func errorResult(err error) *kaBatchResult {
	rec := newBufferedResponse()
	writeErrorDetail(rec, http.StatusInternalServerError, api.ErrorDetail{Code: api.CodeInternal, Message: err.Error()})
	return &kaBatchResult{status: rec.status, header: rec.header, body: rec.body.Bytes()}
}

// keepaliveCoalesced answers a client's keepalive (many: POST
// /v1/leases/keepalive) through the coalescer. Every answer is the one the
// leader would have given to the request forwarded whole. It reports false,
// having written nothing, when the leader refused the coalesced renewal as
// not coming from a node (403: the two do not share a peer secret yet, or
// their clocks are too far apart for its signature): the caller then
// forwards the client's request whole, as without coalescing.
func (a *API) keepaliveCoalesced(w http.ResponseWriter, r *http.Request, ids []uint64, many bool) bool {
	bound := a.opts.WriteTimeout + time.Second
	t := time.NewTimer(bound)
	defer t.Stop()
	kw := a.ka.submit(ids)
	select {
	case <-kw.done:
	case <-r.Context().Done():
		return true // the client went away; the batch goes on for the others
	case <-t.C:
		l, _ := a.node.Leader()
		outcomeUnknown(w, l.ID, "no answer within the request's deadline")
		return true
	}
	res := kw.res
	if res.answers == nil && res.status == http.StatusForbidden {
		return false // only the leader's refusal answers 403 (no ACLs here)
	}
	if res.answers == nil {
		for k, vs := range res.header {
			w.Header()[k] = vs
		}
		if res.servedBy != a.node.ID() {
			w.Header().Set(api.HeaderForwardedBy, a.node.ID())
		}
		w.WriteHeader(res.status)
		_, _ = w.Write(res.body)
		return true
	}
	w.Header().Set(api.HeaderServedBy, res.servedBy)
	if res.servedBy != a.node.ID() {
		w.Header().Set(api.HeaderForwardedBy, a.node.ID())
	}
	if !many {
		id := ids[0]
		an := res.answers[id]
		if !an.found {
			writeError(w, fmt.Errorf("%w: %d", fsm.ErrLeaseNotFound, id))
			return true
		}
		writeJSON(w, http.StatusOK, api.Lease{ID: id, TTLMs: an.ttl, TTLText: (time.Duration(an.ttl) * time.Millisecond).String(), RemainingMs: an.remaining})
		return true
	}
	out := api.KeepaliveManyResponse{Leases: make([]api.KeepaliveManyLease, 0, len(ids)), NotFound: []uint64{}}
	for _, id := range ids {
		an := res.answers[id]
		if !an.found {
			out.NotFound = append(out.NotFound, id)
			continue
		}
		out.Leases = append(out.Leases, api.KeepaliveManyLease{ID: id, TTLMs: an.ttl, RemainingMs: an.remaining})
	}
	writeJSON(w, http.StatusOK, out)
	return true
}

// bufferedResponse is an http.ResponseWriter that keeps the answer.
type bufferedResponse struct {
	header http.Header
	status int
	wrote  bool
	body   bytes.Buffer
	// cut is why the answer being copied into it broke off after its
	// status (the leader died or the connection dropped mid-body): the
	// body is incomplete and must not be decoded (see forwardOnce).
	cut error
}

// outcomeUnknown writes the answer to a forwarded write (or keepalive)
// whose fate is not known: 503 outcome_unknown, retryable with the same
// Idempotency-Key.
func outcomeUnknown(w http.ResponseWriter, leader, why string) {
	writeErrorDetail(w, http.StatusServiceUnavailable, api.ErrorDetail{Code: api.CodeOutcomeUnknown, Leader: leader,
		Message: fmt.Sprintf("forwarding to leader %s: %s (the write may or may not have been applied: retry with the same Idempotency-Key, or read before retrying)", leader, why)})
}

func newBufferedResponse() *bufferedResponse {
	return &bufferedResponse{header: http.Header{}, status: http.StatusOK}
}

func (b *bufferedResponse) Header() http.Header { return b.header }

func (b *bufferedResponse) WriteHeader(code int) {
	if !b.wrote {
		b.status, b.wrote = code, true
	}
}

func (b *bufferedResponse) Write(p []byte) (int, error) {
	b.wrote = true
	return b.body.Write(p)
}

// peerTransport forwards to peers: over HTTP/1.1 to a peer until it has
// said (peerProtoHeader) that it accepts unencrypted HTTP/2, then over
// HTTP/2 to it, one connection multiplexing every forward. A peer that
// fails an HTTP/2 request with anything but a cancellation is asked over
// HTTP/1.1 again until it says it speaks HTTP/2 (a node rolled back to an
// older version).
type peerTransport struct {
	h1, h2 *http.Transport
	mu     sync.Mutex
	h2c    map[string]bool // host:port -> speaks h2c
}

// newPeerTransport returns the default forwarding transport.
func newPeerTransport() *peerTransport {
	dial := (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	var p2 http.Protocols
	p2.SetUnencryptedHTTP2(true)
	return &peerTransport{
		h1: &http.Transport{DialContext: dial, MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second},
		h2: &http.Transport{DialContext: dial, Protocols: &p2, IdleConnTimeout: 90 * time.Second,
			HTTP2: &http.HTTP2Config{
				// A dead peer's connection is found and closed, so that
				// forwards to it fail instead of waiting on it.
				SendPingTimeout:  5 * time.Second,
				PingTimeout:      5 * time.Second,
				WriteByteTimeout: 5 * time.Second,
			}},
		h2c: map[string]bool{},
	}
}

// RoundTrip implements http.RoundTripper.
func (p *peerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	host := req.URL.Host
	p.mu.Lock()
	useH2 := req.URL.Scheme == "http" && p.h2c[host]
	p.mu.Unlock()
	if useH2 {
		resp, err := p.h2.RoundTrip(req)
		if err != nil && req.Context().Err() == nil && !errors.Is(err, context.Canceled) {
			p.mu.Lock()
			delete(p.h2c, host)
			p.mu.Unlock()
		}
		return resp, err
	}
	resp, err := p.h1.RoundTrip(req)
	if err == nil && req.URL.Scheme == "http" && strings.Contains(resp.Header.Get(peerProtoHeader), "h2c") {
		p.mu.Lock()
		p.h2c[host] = true
		p.mu.Unlock()
	}
	return resp, err
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach both
// transports.
func (p *peerTransport) CloseIdleConnections() {
	p.h1.CloseIdleConnections()
	p.h2.CloseIdleConnections()
}

func newKeepaliveBatchMetrics(m *httpMetrics, reg *prometheus.Registry) {
	m.kaBatches = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "coordd_forward_keepalive_batches_total",
		Help: "Coalesced keepalive renewals this follower sent to the leader (each carries the keepalives of many client requests).",
	})
	m.kaBatchLeases = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "coordd_forward_keepalive_batch_leases", Help: "Distinct leases per coalesced keepalive renewal.",
		Buckets: prometheus.ExponentialBuckets(1, 4, 8),
	})
	m.kaBatchRequests = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "coordd_forward_keepalive_batch_requests", Help: "Client keepalive requests answered by one coalesced renewal.",
		Buckets: prometheus.ExponentialBuckets(1, 4, 8),
	})
	for _, c := range []prometheus.Collector{m.kaBatches, m.kaBatchLeases, m.kaBatchRequests} {
		if err := reg.Register(c); err != nil {
			panic(fmt.Sprintf("httpapi: register metrics: %v", err))
		}
	}
}
