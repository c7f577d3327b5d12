package httpapi

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/fsm"
)

// Encoded forwarding (the peer protocol, see peer.go). A follower that
// receives a write it can validate itself (a campaign or lock acquisition
// without a wait, resign, lock release, proclaim, KV put and delete
// without a fence) checks the request and builds its command as the
// leader's handler would, then sends the encoded command (fsm.Command's
// Encode) to the leader's POST /v1/internal/apply instead of the client's
// whole HTTP request. The leader applies it (node.Apply: fsm.Check, Raft)
// and answers with the result (fsm.EncodeResult), from which the follower
// renders exactly the JSON the leader's handler would have rendered.
//
// The command goes through forwardRequest like any forward (it follows
// leadership, waits LeaderWait for a leader, is cancelled when the leader
// changes, is authenticated with the peer secret); it is resent to a new
// leader only if it may not have reached the lost one, or if it carries an
// idempotency key (resendable). It is used only without ACLs (the leader
// checks a token against the client's request), once this node has the
// peer secret, and unless Options.NoEncodedForwarding. A leader that
// refuses it (403: no shared secret yet, or ACLs on there), or does not
// know the endpoint (404/405: an older version, during a rolling upgrade),
// gets the client's request whole instead.

// peerApplyPath is the leader's endpoint for a follower's encoded commands.
const peerApplyPath = "/v1/internal/apply"

// peerApplyVersion is the first byte of the apply endpoint's answer.
const peerApplyVersion = 1

// peerApplyTypes are the command types a follower may send encoded: those
// whose handlers build them from a client's request.
var peerApplyTypes = map[fsm.CommandType]bool{
	fsm.CmdCampaign: true, fsm.CmdResign: true, fsm.CmdProclaim: true,
	fsm.CmdKVPut: true, fsm.CmdKVDelete: true,
}

// encodeApplyAnswer encodes the leader's answer to an encoded command:
// the version, the index of the election view (0 unless the command
// campaigns: then res.Election is the election as the leader's state has
// it after the command, which the campaign handler renders), then the
// result (fsm.EncodeResult).
func encodeApplyAnswer(res *fsm.Result, viewIndex uint64) []byte {
	buf := append(make([]byte, 0, 96), peerApplyVersion)
	buf = binary.AppendUvarint(buf, viewIndex)
	return append(buf, fsm.EncodeResult(res)...)
}

// decodeApplyAnswer decodes encodeApplyAnswer's output.
func decodeApplyAnswer(b []byte) (*fsm.Result, uint64, error) {
	if len(b) < 1 || b[0] != peerApplyVersion {
		return nil, 0, fmt.Errorf("%w: unknown version", errPeerDecode)
	}
	idx, k := binary.Uvarint(b[1:])
	if k <= 0 {
		return nil, 0, fmt.Errorf("%w: bad view index", errPeerDecode)
	}
	res, err := fsm.DecodeResult(b[1+k:])
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %w", errPeerDecode, err)
	}
	return res, idx, nil
}

// peerApply serves POST /v1/internal/apply on the leader: a command a
// follower validated and encoded (see above). Only nodes may call it, and
// only without ACLs (403 otherwise: the follower then forwards the
// client's request whole).
func (a *API) peerApply(w http.ResponseWriter, r *http.Request) {
	refused := ""
	if a.opts.ACL {
		refused = "ACLs are on"
	}
	body, ok := a.peerBody(w, r, refused)
	if !ok {
		return
	}
	if len(body) > 0 && body[0] == peerApplyBatchVersion {
		cmds, err := decodeApplyBatch(body)
		serveOnLeader(a, w, cmds, err, func(cmds [][]byte) { a.serveApplyBatch(w, r.Context(), cmds) })
		return
	}
	cmd, name, err := a.decodePeerCommand(body, r.Header.Get(api.HeaderIdempotencyKey), true)
	serveOnLeader(a, w, cmd, err, func(cmd fsm.Command) { a.serveApply(w, r.Context(), cmd, name) })
}

// decodePeerCommand decodes and checks a follower's encoded command: a
// type a handler builds, a payload that decodes and validates, the
// idempotency key the request's header names when checkKey (resendable
// decides on the header; a batch's commands are not checked against it).
// A campaign gets this leader's limits (leases per token,
// candidates per name), as its own handler would give it, so that the
// command and its request digest are the same whichever node the client
// asked; its name is returned for the answer.
func (a *API) decodePeerCommand(body []byte, key string, checkKey bool) (fsm.Command, string, error) {
	cmd, err := fsm.DecodeCommand(body)
	if err != nil {
		return fsm.Command{}, "", err
	}
	if !peerApplyTypes[cmd.Type] {
		return fsm.Command{}, "", fmt.Errorf("%w: command type %s is not forwarded encoded", errPeerDecode, cmd.Type)
	}
	if !checkKey {
		key = cmd.IdempotencyKey
	}
	if cmd.IdempotencyKey != key || len(key) > maxIdempotencyKey || !printable(key) {
		return fsm.Command{}, "", fmt.Errorf("%w: the command's idempotency key is not the request's", errPeerDecode)
	}
	p, err := fsm.DecodePayload(cmd)
	if err != nil {
		return fsm.Command{}, "", err
	}
	c, ok := p.(fsm.Campaign)
	if !ok {
		return cmd, "", nil
	}
	if c.Owner == "" && c.MaxLeases == a.opts.MaxLeasesPerToken && c.MaxCandidates == a.opts.MaxCandidates {
		return cmd, c.Name, nil // the follower has this leader's limits
	}
	c.Owner, c.MaxLeases, c.MaxCandidates = "", a.opts.MaxLeasesPerToken, a.opts.MaxCandidates
	out, err := fsm.NewCommand(c)
	if err != nil {
		return fsm.Command{}, "", err
	}
	out.IdempotencyKey = cmd.IdempotencyKey
	return out, c.Name, nil
}

// serveApply applies cmd here, on the leader, and writes the peer answer;
// campaign is the name cmd campaigns for ("" if it does not).
func (a *API) serveApply(w http.ResponseWriter, ctx context.Context, cmd fsm.Command, campaign string) {
	ctx, cancel := context.WithTimeout(ctx, a.opts.WriteTimeout)
	defer cancel()
	res, err := a.node.Apply(ctx, cmd)
	if err != nil {
		a.peerError(w, err)
		return
	}
	out, idx := *res, uint64(0)
	if campaign != "" {
		out.Election, idx, _ = a.node.State().WatchElection(campaign)
	}
	if out.Entry != nil && out.Entry.Value != nil {
		// A put is answered with the key's indexes, never its value.
		e := *out.Entry
		e.Value = nil
		out.Entry = &e
	}
	w.Header().Set(headerContentType, peerContentType)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(encodeApplyAnswer(&out, idx))
}

// encodedForward reports whether a write r, received by this follower from
// a client, may be forwarded as its encoded command (see above).
func (a *API) encodedForward(r *http.Request) bool {
	return !a.opts.ACL && !a.opts.NoEncodedForwarding && r.Header.Get(api.HeaderForwardedBy) == "" &&
		!a.node.IsLeader() && a.node.PeerSecret() != nil
}

// applyForwarded sends p's command, with the request's idempotency key, to
// the leader's POST /v1/internal/apply and answers the client: render
// writes the answer of a result without a domain error (for a campaign,
// res.Election is the election after it and idx its index), writeError
// one with, and an error answer of the leader (503 not_leader, no_leader,
// outcome_unknown, 4xx) is relayed as it came. It reports false, having
// written nothing, when the command is larger than a request this node
// accepts, or the leader refused it (403) or does not know the endpoint
// (an older version): the caller then forwards the client's request whole.
func (a *API) applyForwarded(w http.ResponseWriter, r *http.Request, p fsm.Payload, campaign string,
	render func(res *fsm.Result, idx uint64)) bool {
	cmd, err := fsm.NewCommand(p)
	if err != nil {
		writeError(w, err)
		return true
	}
	cmd.IdempotencyKey = r.Header.Get(api.HeaderIdempotencyKey) // no ACLs: keys are not scoped to a token
	body := cmd.Encode()
	if int64(len(body)) > a.opts.MaxRequestBytes {
		return false
	}
	a.metrics.encodedForwards.Inc()
	var rec *bufferedResponse
	if a.opts.NoWriteCoalescing {
		req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, peerApplyPath, nil)
		if err != nil {
			writeError(w, err)
			return true
		}
		req.Header.Set(headerContentType, peerContentType)
		if cmd.IdempotencyKey != "" {
			req.Header.Set(api.HeaderIdempotencyKey, cmd.IdempotencyKey)
		}
		rec = newBufferedResponse()
		local := func() { a.serveApply(rec, r.Context(), cmd, campaign) }
		a.forwardRequest(rec, req, body, nil, a.opts.WriteTimeout+time.Second, local)
		if !rec.wrote && r.Context().Err() != nil {
			return true // the client went away
		}
	} else {
		c := a.applyUnkeyed
		if cmd.IdempotencyKey != "" {
			c = a.applyKeyed
		}
		bound := a.opts.WriteTimeout + time.Second
		t := time.NewTimer(bound)
		defer t.Stop()
		aw := c.submit(body, campaign)
		select {
		case <-aw.done:
		case <-r.Context().Done():
			return true // the client went away; the batch goes on for the others
		case <-t.C:
			l, _ := a.node.Leader()
			writeErrorDetail(w, http.StatusServiceUnavailable, api.ErrorDetail{Code: api.CodeOutcomeUnknown, Leader: l.ID,
				Message: fmt.Sprintf("forwarding to leader %s: no answer within the request's deadline (the write may or may not have been applied: retry with the same Idempotency-Key, or read before retrying)", l.ID)})
			return true
		}
		rec = aw.rec
	}
	servedBy := rec.header.Get(api.HeaderServedBy)
	if servedBy == "" {
		servedBy = a.node.ID() // served here (local) or answered by this node
	}
	ok := rec.status == http.StatusOK && rec.header.Get(headerContentType) == peerContentType
	if !ok && (rec.status == http.StatusForbidden || lacksEndpoint(rec)) {
		// Only the leader's refusal answers 403 (no ACLs here); a leader
		// of an older version does not know the endpoint.
		a.metrics.encodedFallbacks.Inc()
		return false
	}
	if !ok {
		for k, vs := range rec.header {
			w.Header()[k] = vs
		}
		if servedBy != a.node.ID() {
			w.Header().Set(api.HeaderForwardedBy, a.node.ID())
		}
		w.WriteHeader(rec.status)
		_, _ = w.Write(rec.body.Bytes())
		return true
	}
	res, idx, err := decodeApplyAnswer(rec.body.Bytes())
	if err != nil {
		a.log.Error("encoded forward: bad answer from the leader", "leader", servedBy, "error", err)
		writeErrorDetail(w, http.StatusInternalServerError, api.ErrorDetail{Code: api.CodeInternal,
			Message: fmt.Sprintf("forwarding to leader %s: its answer could not be read (the write may or may not have been applied): %v", servedBy, err)})
		return true
	}
	w.Header().Set(api.HeaderServedBy, servedBy)
	if servedBy != a.node.ID() {
		w.Header().Set(api.HeaderForwardedBy, a.node.ID())
	}
	if res.Duplicate {
		w.Header().Set(api.HeaderReplayed, "true")
	}
	if res.Err != nil {
		writeError(w, res.Err)
		return true
	}
	render(res, idx)
	return true
}

// lacksEndpoint reports whether rec is a leader's answer that it has no
// such endpoint (a node of a version before encoded forwarding, during a
// rolling upgrade): 404 not_found or 405 method_not_allowed. The endpoint
// itself never answers either (a missing key or lease is a domain error
// inside a 200).
func lacksEndpoint(rec *bufferedResponse) bool {
	if rec.status != http.StatusNotFound && rec.status != http.StatusMethodNotAllowed {
		return false
	}
	var b api.ErrorBody
	return json.Unmarshal(rec.body.Bytes(), &b) == nil && (b.Error.Code == api.CodeNotFound || b.Error.Code == api.CodeMethod)
}

func newEncodedForwardMetrics(m *httpMetrics, reg *prometheus.Registry) {
	m.encodedForwards = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "coordd_forward_encoded_total",
		Help: "Writes this follower forwarded to the leader as encoded commands (POST /v1/internal/apply).",
	})
	m.encodedFallbacks = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "coordd_forward_encoded_fallbacks_total",
		Help: "Encoded commands the leader refused (403), whose client requests were then forwarded whole.",
	})
	m.encodedBatches = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "coordd_forward_encoded_batches_total",
		Help: "Batches of encoded commands this follower sent to the leader (each carries the writes of many client requests).",
	})
	for _, c := range []prometheus.Collector{m.encodedForwards, m.encodedFallbacks, m.encodedBatches} {
		if err := reg.Register(c); err != nil {
			panic(fmt.Sprintf("httpapi: register metrics: %v", err))
		}
	}
}
