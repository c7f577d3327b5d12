package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/sony/gobreaker/v2"

	"github.com/coordd/coordd/api"
)

// Config configures a Client. Zero fields take the defaults in their doc.
type Config struct {
	// Endpoints are the HTTP addresses of some or all nodes: "host:port",
	// "http://host:port" or "https://host:port".
	Endpoints []string
	// TLS, when set, is used for https endpoints.
	TLS *tls.Config
	// Token, when set, is sent as a bearer token.
	Token string
	// DialTimeout bounds connecting to a node (default 2s).
	DialTimeout time.Duration
	// AttemptTimeout bounds one attempt of a call that does not block
	// (default 12s, a little above the server's own write timeout).
	AttemptTimeout time.Duration
	// RetryTimeout bounds all attempts of one call, on top of its context
	// (default 30s).
	RetryTimeout time.Duration
	// BreakerFailures consecutive transport failures (or half of at least
	// 10 attempts in a sliding 10 s window) open an endpoint's breaker
	// (default 3); it half-opens after BreakerOpenFor (default 1s) and lets
	// one attempt through.
	BreakerFailures uint32
	BreakerOpenFor  time.Duration
}

// Client is safe for concurrent use.
type Client struct {
	cfg       Config
	endpoints []*endpoint
	http      *http.Client
	leader    atomic.Int32 // index into endpoints of the believed leader, -1 unknown
	rr        atomic.Uint32
	closeOnce sync.Once
}

type endpoint struct {
	url     string
	id      atomic.Value // node id once seen (string)
	breaker *gobreaker.TwoStepCircuitBreaker[struct{}]
}

// New returns a client for the given endpoints. It asks the nodes who leads,
// but does not fail when none answers: calls retry until their context or
// RetryTimeout ends.
func New(ctx context.Context, cfg Config) (*Client, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, fmt.Errorf("%w: no endpoints", ErrBadConfig)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.DialTimeout, 2*time.Second)
	def(&cfg.AttemptTimeout, 12*time.Second)
	def(&cfg.RetryTimeout, 30*time.Second)
	def(&cfg.BreakerOpenFor, time.Second)
	if cfg.BreakerFailures == 0 {
		cfg.BreakerFailures = 3
	}
	c := &Client{cfg: cfg}
	c.leader.Store(-1)
	for _, e := range cfg.Endpoints {
		u, err := normalize(e)
		if err != nil {
			return nil, err
		}
		ep := &endpoint{url: u}
		ep.id.Store("")
		ep.breaker = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
			Name:        u,
			MaxRequests: 1,
			Timeout:     cfg.BreakerOpenFor,
			// A sliding window of 10 s in 1 s buckets: open on a run of
			// failures, or when most recent attempts failed.
			Interval:     10 * time.Second,
			BucketPeriod: time.Second,
			ReadyToTrip: func(n gobreaker.Counts) bool {
				return n.ConsecutiveFailures >= cfg.BreakerFailures || n.Requests >= 10 && n.TotalFailures*2 >= n.Requests
			},
			// The caller giving up says nothing about the node.
			IsExcluded: func(err error) bool {
				return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
			},
		})
		c.endpoints = append(c.endpoints, ep)
	}
	c.http = &http.Client{Transport: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     cfg.TLS,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}}
	pctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	c.refreshLeader(pctx)
	return c, nil
}

// ErrBadConfig is wrapped by configuration errors of New.
var ErrBadConfig = errors.New("coordd: bad client config")

func normalize(e string) (string, error) {
	if !strings.Contains(e, "://") {
		e = "http://" + e
	}
	u, err := url.Parse(e)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", fmt.Errorf("%w: endpoint %q must be host:port or http(s)://host:port", ErrBadConfig, e)
	}
	return u.Scheme + "://" + u.Host, nil
}

// Close releases idle connections.
func (c *Client) Close() error {
	c.closeOnce.Do(c.http.CloseIdleConnections)
	return nil
}

// Endpoints returns the normalized endpoint URLs.
func (c *Client) Endpoints() []string {
	out := make([]string, len(c.endpoints))
	for i, e := range c.endpoints {
		out[i] = e.url
	}
	return out
}

// refreshLeader asks the nodes who leads and remembers which endpoint that
// is (when the leader's HTTP address is among the endpoints).
func (c *Client) refreshLeader(ctx context.Context) {
	for _, ep := range c.endpoints {
		var st Status
		if err := c.once(ctx, ep, http.MethodGet, "/v1/status", nil, nil, &st, nil); err != nil {
			continue
		}
		if st.Leader == nil {
			return
		}
		for i, cand := range c.endpoints {
			if strings.HasSuffix(cand.url, "://"+st.Leader.HTTPAddr) || cand.id.Load() == st.Leader.ID {
				c.leader.Store(int32(i))
				return
			}
		}
		return
	}
}

// request describes one call.
type request struct {
	method string
	path   string // with query
	body   []byte
	// idempotent: safe to retry after an ambiguous failure (reads, and
	// writes carrying an Idempotency-Key).
	idempotent bool
	key        string // Idempotency-Key
	// stale: may be served by any node (spread over them).
	stale bool
	// blocking: may legitimately take up to the server's max wait.
	blocking bool
}

// do runs a call with retries: on "nothing was done" answers and on
// transport failures always, on ambiguous outcomes only when the request is
// idempotent. It decodes a 2xx JSON answer into out.
func (c *Client) do(ctx context.Context, rq request, out any) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RetryTimeout+blockingExtra(rq))
	defer cancel()
	var last error
	attempt := 0
	op := func() (struct{}, error) {
		ep := c.pick(rq.stale, attempt)
		attempt++
		if ep == nil {
			last = ErrUnavailable
			return struct{}{}, ErrUnavailable
		}
		err := c.attempt(ctx, ep, rq, out)
		if err == nil {
			return struct{}{}, nil
		}
		last = err
		var se *Error
		switch {
		case errors.As(err, &se) && se.retryable():
			if se.Code == api.CodeNotLeader || se.Code == api.CodeNoLeader {
				c.leader.Store(-1)
			}
			return struct{}{}, err
		case errors.As(err, &se) && se.ambiguous():
			if rq.idempotent {
				return struct{}{}, err
			}
			return struct{}{}, backoff.Permanent(err)
		case errors.As(err, &se):
			return struct{}{}, backoff.Permanent(err) // a definite answer
		case errors.Is(err, errNotSent):
			c.leader.Store(-1)
			return struct{}{}, err
		case ctx.Err() != nil:
			return struct{}{}, backoff.Permanent(err)
		default: // sent, then the connection failed: ambiguous
			c.leader.Store(-1)
			if rq.idempotent {
				return struct{}{}, err
			}
			return struct{}{}, backoff.Permanent(fmt.Errorf("%w: %v", ErrOutcomeUnknown, err))
		}
	}
	eb := backoff.NewExponentialBackOff()
	// A short cap: a failover takes a few hundred milliseconds, and a
	// client should notice the new leader within a fraction of that. With a
	// cap of 200 ms (up to 300 ms with jitter) the longest write gap after a
	// leader was killed was up to 350 ms longer than the election itself
	// (coordbench leader-kill); retries at most every 150 ms cost a node
	// little.
	eb.InitialInterval, eb.MaxInterval, eb.RandomizationFactor = 20*time.Millisecond, 100*time.Millisecond, 0.5
	_, err := backoff.Retry(ctx, op, backoff.WithBackOff(eb), backoff.WithMaxElapsedTime(0))
	if err == nil {
		return nil
	}
	if last != nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
		if ctx.Err() != nil && rq.method != http.MethodGet && !errors.Is(last, errNotSent) {
			return fmt.Errorf("%w: %w (last attempt: %v)", ErrOutcomeUnknown, ctx.Err(), last)
		}
		return fmt.Errorf("%w (last attempt: %w)", ctx.Err(), last)
	}
	return err
}

func blockingExtra(rq request) time.Duration {
	if rq.blocking {
		return 11 * time.Minute
	}
	return 0
}

// errAttemptTimeout counts a hung attempt against the node's breaker.
var errAttemptTimeout = errors.New("coordd: attempt timed out")

// errNotSent marks transport failures that happened before the request
// reached a node (refused, breaker open): always safe to retry.
var errNotSent = errors.New("request not sent")

// pick chooses the endpoint for an attempt: the believed leader for
// leader-bound calls, round robin otherwise and after a failure, skipping
// endpoints whose breaker is open.
func (c *Client) pick(stale bool, attempt int) *endpoint {
	n := len(c.endpoints)
	if !stale && attempt == 0 {
		if i := c.leader.Load(); i >= 0 && c.endpoints[i].breaker.State() != gobreaker.StateOpen {
			return c.endpoints[i]
		}
	}
	start := int(c.rr.Add(1))
	for k := range n {
		ep := c.endpoints[(start+k)%n]
		if ep.breaker.State() != gobreaker.StateOpen {
			return ep
		}
	}
	return nil
}

// attempt sends rq once to ep, through its breaker.
func (c *Client) attempt(ctx context.Context, ep *endpoint, rq request, out any) error {
	done, err := ep.breaker.Allow()
	if err != nil {
		return fmt.Errorf("%w: %s: breaker %v", errNotSent, ep.url, err)
	}
	actx := ctx
	if !rq.blocking {
		var cancel context.CancelFunc
		actx, cancel = context.WithTimeout(ctx, c.cfg.AttemptTimeout)
		defer cancel()
	}
	var direct bool
	err = c.once(actx, ep, rq.method, rq.path, rq.body, func(h http.Header) {
		if rq.key != "" {
			h.Set(api.HeaderIdempotencyKey, rq.key)
		}
	}, out, &direct)
	var se *Error
	switch {
	case err == nil || errors.As(err, &se):
		done(nil) // any answer, even an error, proves the node is alive
	case ctx.Err() != nil:
		done(ctx.Err()) // the caller gave up: excluded
	case actx.Err() != nil:
		done(errAttemptTimeout) // the node hung: a failure
	default:
		done(err)
	}
	if err == nil && !rq.stale && direct {
		c.remember(ep)
	}
	return err
}

// remember marks ep as the leader's endpoint: it answered a leader-bound
// call itself, without forwarding it.
func (c *Client) remember(ep *endpoint) {
	for i, e := range c.endpoints {
		if e == ep {
			c.leader.Store(int32(i))
			return
		}
	}
}

func (e *endpoint) servedBy() string {
	s, _ := e.id.Load().(string)
	return s
}

// once sends one HTTP request and decodes the answer. direct, when not nil,
// is set when ep answered itself rather than forwarding to the leader.
func (c *Client) once(ctx context.Context, ep *endpoint, method, path string, body []byte, hdr func(http.Header), out any, direct *bool) error {
	var rb io.Reader
	if body != nil {
		rb = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, ep.url+path, rb)
	if err != nil {
		return fmt.Errorf("coordd: build request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	}
	if hdr != nil {
		hdr(req.Header)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if isNotSent(err) {
			return fmt.Errorf("%w: %s: %v", errNotSent, ep.url, err)
		}
		return fmt.Errorf("coordd: %s %s: %w", method, ep.url+path, err)
	}
	defer resp.Body.Close()
	served, fwd := resp.Header.Get(api.HeaderServedBy), resp.Header.Get(api.HeaderForwardedBy)
	switch {
	case fwd != "":
		ep.id.Store(fwd) // ep forwarded to the leader, which served
	case served != "":
		ep.id.Store(served)
		if direct != nil {
			*direct = true
		}
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("coordd: read answer of %s: %w", ep.url, err)
	}
	if resp.StatusCode/100 != 2 {
		return errorOf(resp, b)
	}
	switch o := out.(type) {
	case nil:
	case *[]byte:
		*o = b
	case *answer:
		o.header = resp.Header
		if err := json.Unmarshal(b, o.body); err != nil {
			return fmt.Errorf("coordd: decode answer of %s: %w", ep.url, err)
		}
	default:
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("coordd: decode answer of %s: %w", ep.url, err)
		}
	}
	return nil
}

// answer decodes the body into body and keeps the headers.
type answer struct {
	body   any
	header http.Header
}

// index is the X-Coordd-Index of the answer.
func (a *answer) index() uint64 {
	i, _ := strconv.ParseUint(a.header.Get(api.HeaderIndex), 10, 64)
	return i
}

// isNotSent reports transport errors that mean the request never reached
// the node.
func isNotSent(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return strings.Contains(err.Error(), "connection refused")
}

// newKey returns a random Idempotency-Key.
func newKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func jsonBody(body any) ([]byte, error) {
	if body == nil {
		return nil, nil
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("coordd: encode request: %w", err)
	}
	return b, nil
}

// write is a mutating call with a fresh Idempotency-Key: retried safely
// whatever happens.
func (c *Client) write(ctx context.Context, method, path string, body any, out any) error {
	b, err := jsonBody(body)
	if err != nil {
		return err
	}
	return c.do(ctx, request{method: method, path: path, body: b, idempotent: true, key: newKey()}, out)
}

// read is a linearizable (or, with stale, local) read.
func (c *Client) read(ctx context.Context, path string, stale bool, out any) error {
	return c.do(ctx, request{method: http.MethodGet, path: path, idempotent: true, stale: stale}, out)
}

// EndpointHealth is the circuit breaker state of one endpoint.
type EndpointHealth struct {
	URL   string
	Node  string // node id, once seen
	State string // "closed" (healthy), "open" (skipped), "half-open" (being retried)
}

// Health reports the breaker state of every endpoint.
func (c *Client) Health() []EndpointHealth {
	out := make([]EndpointHealth, len(c.endpoints))
	for i, e := range c.endpoints {
		out[i] = EndpointHealth{URL: e.url, Node: e.servedBy(), State: e.breaker.State().String()}
	}
	return out
}
