package httpapi

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"runtime/debug"
	"sync"
	"time"

	"github.com/coordd/coordd/api"
)

// Coalesced encoded commands (the peer protocol, see peerapply.go). A
// follower sends the encoded commands of all its clients' writes that
// arrive while a batch is in flight (at most maxApplyBatchesInFlight at a
// time) as one POST /v1/internal/apply whose body is a batch
// (encodeApplyBatch): one peer request, one signature, one HTTP/2 stream
// for many writes. The leader applies a batch's commands concurrently
// (Raft groups them into its own batches) and answers, per command, what
// it would have answered to the command alone: status, content type and
// body (encodeBatchAnswer). Commands with an idempotency key and commands
// without go in separate batches: only a batch of keyed commands is resent
// to a new leader after it may have reached the lost one (resendable).

// peerApplyBatchVersion is the first byte of a batch of encoded commands
// and of its answer (a single command starts with the envelope's magic
// byte, 0xC0).
const peerApplyBatchVersion = 2

// maxPeerApplyBatch bounds the commands of one batch.
const maxPeerApplyBatch = 256

// maxApplyBatchesInFlight bounds the batches one follower has in flight
// per kind (keyed, unkeyed): commands that arrive meanwhile wait for the
// next.
const maxApplyBatchesInFlight = 2

// peerKeyedHeader marks a batch whose every command carries an
// idempotency key (set by the follower on its own request; resendable
// reads it there).
const peerKeyedHeader = "X-Coordd-Batch-Keyed"

// encodeApplyBatch encodes a batch: the version, the count, then each
// encoded command, length-prefixed.
func encodeApplyBatch(cmds [][]byte) []byte {
	n := 1 + binary.MaxVarintLen64
	for _, c := range cmds {
		n += binary.MaxVarintLen64 + len(c)
	}
	buf := append(make([]byte, 0, n), peerApplyBatchVersion)
	buf = binary.AppendUvarint(buf, uint64(len(cmds)))
	for _, c := range cmds {
		buf = binary.AppendUvarint(buf, uint64(len(c)))
		buf = append(buf, c...)
	}
	return buf
}

// decodeApplyBatch decodes encodeApplyBatch's output: 1 to
// maxPeerApplyBatch non-empty commands and nothing after them. The
// commands alias b.
func decodeApplyBatch(b []byte) ([][]byte, error) {
	if len(b) < 1 || b[0] != peerApplyBatchVersion {
		return nil, fmt.Errorf("%w: unknown batch version", errPeerDecode)
	}
	b = b[1:]
	n, k := binary.Uvarint(b)
	if k <= 0 || n == 0 || n > maxPeerApplyBatch {
		return nil, fmt.Errorf("%w: bad batch count", errPeerDecode)
	}
	b = b[k:]
	out := make([][]byte, 0, n)
	for range n {
		l, k := binary.Uvarint(b)
		if k <= 0 || l == 0 || l > uint64(len(b)-k) {
			return nil, fmt.Errorf("%w: bad command length", errPeerDecode)
		}
		out = append(out, b[k:k+int(l)])
		b = b[k+int(l):]
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: trailing bytes", errPeerDecode)
	}
	return out, nil
}

// batchItem is the leader's answer to one command of a batch.
type batchItem struct {
	status int
	ctype  string
	body   []byte
}

// encodeBatchAnswer encodes the answers of a batch, in its order: the
// version, the count, then per command uvarint(status), its content type
// and its body, length-prefixed.
func encodeBatchAnswer(recs []*bufferedResponse) []byte {
	n := 8
	for _, r := range recs {
		n += 16 + r.body.Len()
	}
	buf := append(make([]byte, 0, n), peerApplyBatchVersion)
	buf = binary.AppendUvarint(buf, uint64(len(recs)))
	for _, r := range recs {
		ct := r.header.Get(headerContentType)
		buf = binary.AppendUvarint(buf, uint64(r.status))
		buf = binary.AppendUvarint(buf, uint64(len(ct)))
		buf = append(buf, ct...)
		buf = binary.AppendUvarint(buf, uint64(r.body.Len()))
		buf = append(buf, r.body.Bytes()...)
	}
	return buf
}

// decodeBatchAnswer decodes encodeBatchAnswer's output for a batch of n.
func decodeBatchAnswer(b []byte, n int) ([]batchItem, error) {
	if len(b) < 1 || b[0] != peerApplyBatchVersion {
		return nil, fmt.Errorf("%w: unknown batch answer version", errPeerDecode)
	}
	b = b[1:]
	c, k := binary.Uvarint(b)
	if k <= 0 || n < 1 || n > maxPeerApplyBatch || c != uint64(n) {
		return nil, fmt.Errorf("%w: bad batch answer count", errPeerDecode)
	}
	b = b[k:]
	out := make([]batchItem, n)
	field := func() ([]byte, bool) {
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) {
			return nil, false
		}
		f := b[k : k+int(l)]
		b = b[k+int(l):]
		return f, true
	}
	for i := range out {
		st, k := binary.Uvarint(b)
		if k <= 0 || st < 100 || st > 599 {
			return nil, fmt.Errorf("%w: bad status", errPeerDecode)
		}
		b = b[k:]
		ct, ok1 := field()
		body, ok2 := field()
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("%w: bad answer", errPeerDecode)
		}
		out[i] = batchItem{status: int(st), ctype: string(ct), body: body}
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: trailing bytes", errPeerDecode)
	}
	return out, nil
}

// serveApplyBatch applies the encoded commands of a batch here, on the
// leader, concurrently, and writes the batch answer: per command, what
// the apply endpoint would have answered to it alone.
func (a *API) serveApplyBatch(w http.ResponseWriter, ctx context.Context, cmds [][]byte) {
	recs := make([]*bufferedResponse, len(cmds))
	var wg sync.WaitGroup
	for i, b := range cmds {
		rec := newBufferedResponse()
		recs[i] = rec
		cmd, name, err := a.decodePeerCommand(b, "", false)
		if err != nil {
			writeError(rec, badRequest(err.Error()))
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				if p := recover(); p != nil {
					a.log.Error("panic applying a batched command", "panic", p, "stack", string(debug.Stack()))
					writeErrorDetail(rec, http.StatusInternalServerError, api.ErrorDetail{Code: api.CodeInternal, Message: fmt.Sprint("internal error: ", p)})
				}
			}()
			a.serveApply(rec, ctx, cmd, name)
		}()
	}
	wg.Wait()
	w.Header().Set(headerContentType, peerContentType)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(encodeBatchAnswer(recs))
}

// applyWaiter is one client write waiting for its batch.
type applyWaiter struct {
	cmd  []byte
	name string        // the campaign's name, if it campaigns
	done chan struct{} // closed once rec is set
	rec  *bufferedResponse
}

// applyCoalescer sends a follower's encoded commands to the leader in
// batches (natural batching, as kaCoalescer: the busier, the larger).
type applyCoalescer struct {
	a     *API
	keyed bool

	mu       sync.Mutex
	pending  []*applyWaiter
	inFlight int
}

// submit queues cmd and returns its waiter, answered (done closed)
// exactly once, when its batch ends.
func (c *applyCoalescer) submit(cmd []byte, name string) *applyWaiter {
	w := &applyWaiter{cmd: cmd, name: name, done: make(chan struct{})}
	c.mu.Lock()
	c.pending = append(c.pending, w)
	start := c.inFlight < maxApplyBatchesInFlight
	if start {
		c.inFlight++
	}
	c.mu.Unlock()
	if start {
		go c.run()
	}
	return w
}

// run sends batches while commands wait, then ends.
func (c *applyCoalescer) run() {
	maxBytes := int(c.a.opts.MaxRequestBytes / 2)
	for {
		c.mu.Lock()
		if len(c.pending) == 0 {
			c.inFlight--
			c.mu.Unlock()
			return
		}
		var batch []*applyWaiter
		size := 0
		for len(c.pending) > 0 && len(batch) < maxPeerApplyBatch && (len(batch) == 0 || size+len(c.pending[0].cmd) <= maxBytes) {
			w := c.pending[0]
			c.pending[0] = nil
			c.pending = c.pending[1:]
			batch = append(batch, w)
			size += len(w.cmd)
		}
		if len(c.pending) == 0 {
			c.pending = nil
		}
		c.mu.Unlock()
		c.send(batch)
	}
}

// send forwards batch to the leader with forwardRequest's rules and
// answers each waiter: its command's answer, or the batch's (an error, or
// a refusal the waiters fall back from).
func (c *applyCoalescer) send(batch []*applyWaiter) {
	a := c.a
	answered := false
	answer := func(recs []*bufferedResponse) {
		for i, w := range batch {
			w.rec = recs[min(i, len(recs)-1)]
			close(w.done)
		}
		answered = true
	}
	defer func() {
		if p := recover(); p != nil {
			a.log.Error("panic in a batch of encoded commands", "panic", p, "stack", string(debug.Stack()))
			if !answered {
				rec := newBufferedResponse()
				writeErrorDetail(rec, http.StatusInternalServerError, api.ErrorDetail{Code: api.CodeInternal, Message: fmt.Sprint("internal error: ", p)})
				answer([]*bufferedResponse{rec})
			}
		}
	}()
	cmds := make([][]byte, len(batch))
	for i, w := range batch {
		cmds[i] = w.cmd
	}
	body := encodeApplyBatch(cmds)
	bound := a.opts.WriteTimeout + time.Second
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, peerApplyPath, nil)
	if err != nil {
		panic(err)
	}
	req.Header.Set(headerContentType, peerContentType)
	if c.keyed {
		req.Header.Set(peerKeyedHeader, "1")
	}
	rec := newBufferedResponse()
	local := func() { a.serveApplyBatch(rec, ctx, cmds) }
	a.metrics.encodedBatches.Inc()
	a.forwardRequest(rec, req, body, nil, bound, local)
	switch {
	case rec.cut != nil:
		l, _ := a.node.Leader()
		why := fmt.Sprintf("its answer broke off: %v", rec.cut)
		rec = newBufferedResponse()
		outcomeUnknown(rec, l.ID, why)
	case !rec.wrote:
		l, _ := a.node.Leader()
		outcomeUnknown(rec, l.ID, "no answer within the request's deadline")
	}
	servedBy := rec.header.Get(api.HeaderServedBy)
	if servedBy == "" {
		servedBy = a.node.ID()
		rec.header.Set(api.HeaderServedBy, servedBy)
	}
	if rec.status != http.StatusOK || rec.header.Get(headerContentType) != peerContentType {
		answer([]*bufferedResponse{rec}) // the batch's answer is every command's
		return
	}
	items, err := decodeBatchAnswer(rec.body.Bytes(), len(batch))
	if err != nil {
		a.log.Error("encoded batch: bad answer from the leader", "leader", servedBy, "error", err)
		bad := newBufferedResponse()
		bad.header.Set(api.HeaderServedBy, servedBy)
		writeErrorDetail(bad, http.StatusInternalServerError, api.ErrorDetail{Code: api.CodeInternal,
			Message: fmt.Sprintf("forwarding to leader %s: its answer could not be read (the write may or may not have been applied): %v", servedBy, err)})
		answer([]*bufferedResponse{bad})
		return
	}
	recs := make([]*bufferedResponse, len(items))
	for i, it := range items {
		r := newBufferedResponse()
		r.status, r.wrote = it.status, true
		r.header.Set(api.HeaderServedBy, servedBy)
		if it.ctype != "" {
			r.header.Set(headerContentType, it.ctype)
		}
		if it.status == http.StatusServiceUnavailable || it.status == http.StatusTooManyRequests {
			r.header.Set(api.HeaderRetryAfter, retryAfterSeconds)
		}
		r.body.Write(it.body)
		recs[i] = r
	}
	answer(recs)
}
