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
	// AttemptTimeout bounds one attempt of a call that does not block,
	// unless the call's context ends sooner (default 2s). An attempt's
	// budget is what the call needs, not a fixed time: a Session's
	// keepalive gets what is left until its safe deadline, which is
	// shorter for short TTLs.
	AttemptTimeout time.Duration
	// HedgeAfter is how long an attempt of a call that does not block may
	// go unanswered before the client asks the other nodes who leads and,
	// when they name another node, sends the same call there too, keeping
	// whichever answer comes first (default 450ms: three heartbeats of the
	// default Raft timing). Only
	// calls that are safe to repeat are hedged: reads, keepalives, and
	// writes carrying an Idempotency-Key (every write of this client). A
	// call whose budget is short hedges sooner: after a quarter of it.
	HedgeAfter time.Duration
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

	// life is cancelled by Close (cause ErrClosed): every call and
	// background goroutine ends with it.
	life     context.Context
	kill     context.CancelCauseFunc
	bg       sync.WaitGroup // background goroutines (sessions, watchers, observers)
	mu       sync.Mutex
	closing  bool
	sessions map[*Session]struct{}

	dmu  sync.Mutex
	disc *discovery // the round of discover in flight
}

type endpoint struct {
	url     string
	id      atomic.Value // node id once seen (string)
	breaker *gobreaker.TwoStepCircuitBreaker[struct{}]
	// suspectUntil (unix nanoseconds): the node left an attempt
	// unanswered past the hedge delay; pick avoids it until then, or
	// until it answers anything.
	suspectUntil atomic.Int64
}

func (e *endpoint) suspect() bool { return time.Now().UnixNano() < e.suspectUntil.Load() }

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
	def(&cfg.AttemptTimeout, 2*time.Second)
	def(&cfg.HedgeAfter, 450*time.Millisecond)
	def(&cfg.RetryTimeout, 30*time.Second)
	def(&cfg.BreakerOpenFor, time.Second)
	if cfg.BreakerFailures == 0 {
		cfg.BreakerFailures = 3
	}
	c := &Client{cfg: cfg, sessions: map[*Session]struct{}{}}
	c.life, c.kill = context.WithCancelCause(context.Background())
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

// ErrClosed is returned by calls on (or interrupted by) a closed Client.
var ErrClosed = errors.New("coordd: client closed")

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

// closeRevokeTimeout bounds the revokes of Close.
const closeRevokeTimeout = 2 * time.Second

// Close ends every Session of the client (their keepalives stop and their
// leases are revoked, within a couple of seconds at most; Done closes with
// ErrSessionClosed), stops every background goroutine (watchers of held
// elections and locks, Watch, Observe), makes calls in flight and later
// calls fail with ErrClosed, and releases idle connections. It returns
// when all of that has ended.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closing = true
		ss := make([]*Session, 0, len(c.sessions))
		for s := range c.sessions {
			ss = append(ss, s)
		}
		c.mu.Unlock()
		var wg sync.WaitGroup
		for _, s := range ss {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(c.life, closeRevokeTimeout)
				defer cancel()
				_ = s.Close(ctx) // best effort: an unrevoked lease expires by its TTL
			}()
		}
		wg.Wait()
		c.kill(ErrClosed)
		c.bg.Wait()
		c.http.CloseIdleConnections()
	})
	return nil
}

// background runs f in a goroutine that Close waits for; false (and f does
// not run) when the client is closing.
func (c *Client) background(f func()) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return false
	}
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		f()
	}()
	return true
}

// bind returns ctx, also cancelled (cause ErrClosed) when the client
// closes.
func (c *Client) bind(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(c.life, func() { cancel(ErrClosed) })
	return ctx, func() { stop(); cancel(context.Canceled) }
}

// closedErr is ErrClosed when the client's closing ended ctx.
func closedErr(ctx context.Context, err error) error {
	if errors.Is(context.Cause(ctx), ErrClosed) {
		return fmt.Errorf("%w (%v)", ErrClosed, err)
	}
	return err
}

// sleep waits d or until ctx ends (then its error).
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Endpoints returns the normalized endpoint URLs.
func (c *Client) Endpoints() []string {
	out := make([]string, len(c.endpoints))
	for i, e := range c.endpoints {
		out[i] = e.url
	}
	return out
}

// refreshLeader asks the nodes who leads, all at once (a stalled node
// delays nothing), and remembers which endpoint that is (when the leader's
// HTTP address is among the endpoints).
func (c *Client) refreshLeader(ctx context.Context) {
	c.discover(ctx, nil, c.cfg.DialTimeout)
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
	if c.life.Err() != nil {
		return ErrClosed
	}
	ctx, unbind := c.bind(ctx)
	defer unbind()
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RetryTimeout+blockingExtra(rq))
	defer cancel()
	var (
		last  error
		reply *reply
	)
	attempt := 0
	tlsRefused := map[*endpoint]bool{}
	op := func() (struct{}, error) {
		ep := c.pick(rq.stale, attempt)
		attempt++
		if ep == nil {
			if last == nil || !tlsMismatch(last) { // keep the reason
				last = ErrUnavailable
			}
			return struct{}{}, ErrUnavailable
		}
		r, err := c.hedged(ctx, ep, rq)
		if err == nil {
			reply = r
			return struct{}{}, nil
		}
		last = err
		var se *Error
		switch {
		case errors.As(err, &se) && se.retryable():
			if se.Code == api.CodeNotLeader || se.Code == api.CodeNoLeader {
				c.leader.Store(-1)
				if se.Code == api.CodeNotLeader && se.Leader != "" {
					c.rememberID(se.Leader) // the leader hint of the answer
				}
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
			if tlsMismatch(err) {
				// Retrying cannot make a certificate trusted: give up
				// once every endpoint has refused this client so.
				tlsRefused[ep] = true
				if len(tlsRefused) == len(c.endpoints) {
					return struct{}{}, backoff.Permanent(err)
				}
			}
			return struct{}{}, err
		case ctx.Err() != nil:
			return struct{}{}, backoff.Permanent(err)
		default: // sent, then the connection failed or the attempt ran out: ambiguous
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
	// little. backoff.Retry sleeps on ctx: a cancelled call ends at once.
	eb.InitialInterval, eb.MaxInterval, eb.RandomizationFactor = 20*time.Millisecond, 100*time.Millisecond, 0.5
	_, err := backoff.Retry(ctx, op, backoff.WithBackOff(eb), backoff.WithMaxElapsedTime(0))
	if err == nil {
		return reply.decode(out)
	}
	if last != nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
		if ctx.Err() != nil && rq.method != http.MethodGet && !errors.Is(last, errNotSent) {
			return closedErr(ctx, fmt.Errorf("%w: %w (last attempt: %v)", ErrOutcomeUnknown, ctx.Err(), last))
		}
		return closedErr(ctx, fmt.Errorf("%w (last attempt: %w)", ctx.Err(), last))
	}
	return closedErr(ctx, err)
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
// endpoints whose breaker is open and, while another is left, endpoints
// that recently left an attempt unanswered (a stalled node).
func (c *Client) pick(stale bool, attempt int) *endpoint {
	n := len(c.endpoints)
	if !stale && attempt == 0 {
		if i := c.leader.Load(); i >= 0 && c.endpoints[i].breaker.State() != gobreaker.StateOpen && !c.endpoints[i].suspect() {
			return c.endpoints[i]
		}
	}
	start := int(c.rr.Add(1))
	var fallback *endpoint
	for k := range n {
		ep := c.endpoints[(start+k)%n]
		if ep.breaker.State() == gobreaker.StateOpen {
			continue
		}
		if !ep.suspect() {
			return ep
		}
		if fallback == nil {
			fallback = ep
		}
	}
	return fallback
}

// hedgeDelay is how long an attempt may go unanswered before the call is
// hedged: HedgeAfter, or a quarter of what is left of the call's budget
// when that is shorter (a keepalive near its session's safe deadline), at
// least 20 ms.
func (c *Client) hedgeDelay(ctx context.Context) time.Duration {
	d := c.cfg.HedgeAfter
	if dl, ok := ctx.Deadline(); ok {
		d = min(d, time.Until(dl)/4)
	}
	return max(d, 20*time.Millisecond)
}

// maxHedges bounds the extra attempts of one hedged call.
const maxHedges = 3

// hedgeViaFollower is how many hedge delays a call waits, while the other
// nodes still name the silent node as leader, before it goes through one
// of them.
const hedgeViaFollower = 2

// hedged sends rq to ep. When ep leaves it unanswered past the hedge delay
// and rq is safe to repeat, it asks the other nodes who leads, and sends
// rq to the node they name when that is another node; it asks again every
// hedge delay, and sends rq once more when the answer changes. If they
// keep naming ep for hedgeViaFollower delays, rq goes through one of them
// (which forwards it). The first answer wins and the other attempts are
// cancelled. A call that
// blocks on purpose (a campaign's wait, a blocking read) is not hedged: its
// silence is expected.
func (c *Client) hedged(ctx context.Context, ep *endpoint, rq request) (*reply, error) {
	if rq.blocking || !rq.idempotent || len(c.endpoints) < 2 {
		return c.attempt(ctx, ep, rq)
	}
	hctx, cancel := context.WithCancel(ctx)
	type result struct {
		r   *reply
		err error
	}
	results := make(chan result, 1+maxHedges)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait() // the losing attempts end with hctx
	}()
	run := func(ep *endpoint) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := c.attempt(hctx, ep, rq)
			results <- result{r, err}
		}()
	}
	run(ep)
	timer := time.NewTimer(c.hedgeDelay(ctx))
	defer timer.Stop()
	type found struct {
		ep     *endpoint
		leader bool
	}
	hedge := make(chan found, 1)
	var (
		hedges      int
		ticks       int
		last        *endpoint
		lastLeader  bool
		discovering bool
	)
	for {
		select {
		case <-timer.C:
			ticks++
			if !discovering && hedges < maxHedges {
				discovering = true
				wg.Add(1)
				go func() {
					defer wg.Done()
					to, leader := c.discover(hctx, ep, c.hedgeDelay(hctx))
					hedge <- found{to, leader}
				}()
			}
		case f := <-hedge:
			discovering = false
			// Move to the leader the others name when it is another node.
			// While they still name ep (slow, not stalled: a loaded
			// leader, or an election not over yet), a copy through a
			// follower would only queue behind the first at the same
			// leader: wait, and ask again; only after hedgeViaFollower
			// delays does the call go through a follower (this client
			// may be the one cut off from the leader).
			switch {
			case f.ep == nil:
			case f.leader && (f.ep != last || !lastLeader), !f.leader && ticks >= hedgeViaFollower && last == nil:
				// ep proved slow: avoid it for a while.
				ep.suspectUntil.Store(time.Now().Add(c.cfg.BreakerOpenFor).UnixNano())
				c.leader.CompareAndSwap(c.index(ep), -1)
				run(f.ep)
				hedges++
				last, lastLeader = f.ep, f.leader
			}
			timer.Reset(c.hedgeDelay(ctx))
		case res := <-results:
			// The first answer ends the call, whatever it is: a failure
			// goes back to do, which retries on a node that is not
			// suspect (the other attempts are to nodes that already
			// proved slow).
			return res.r, res.err
		}
	}
}

// discover asks every endpoint but slow who leads, at once, and returns the
// endpoint of the leader they name when it is not slow (leader true); else
// the first other endpoint that answered (it forwards to whoever leads, or
// says there is no leader); nil when none answered within the given time.
func (c *Client) discover(ctx context.Context, slow *endpoint, within time.Duration) (*endpoint, bool) {
	// Concurrent calls hedging away from the same node share one round
	// of questions.
	c.dmu.Lock()
	if d := c.disc; d != nil && d.slow == slow {
		c.dmu.Unlock()
		select {
		case <-d.done:
			return d.ep, d.leader
		case <-ctx.Done():
			return nil, false
		}
	}
	d := &discovery{slow: slow, done: make(chan struct{})}
	c.disc = d
	c.dmu.Unlock()
	// The round belongs to every call that shares it: it must not end
	// with the call that started it (bounded by within; Close ends it).
	if !c.background(func() {
		d.ep, d.leader = c.askWhoLeads(c.life, slow, within)
		c.dmu.Lock()
		c.disc = nil
		c.dmu.Unlock()
		close(d.done)
	}) {
		c.dmu.Lock()
		c.disc = nil
		c.dmu.Unlock()
		return nil, false // closing
	}
	select {
	case <-d.done:
		return d.ep, d.leader
	case <-ctx.Done():
		return nil, false
	}
}

// discovery is a round of questions in flight, shared by the calls that
// hedge away from the same node.
type discovery struct {
	slow   *endpoint
	done   chan struct{}
	ep     *endpoint
	leader bool
}

// askWhoLeads is one round of discover.
func (c *Client) askWhoLeads(ctx context.Context, slow *endpoint, within time.Duration) (*endpoint, bool) {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	type answer struct {
		ep *endpoint
		st *Status
	}
	// The questions outlive this call by up to within (bounded, and ended
	// by Close): the answers that come after the leader was found still
	// teach the client which node each endpoint is.
	sctx, scancel := context.WithTimeout(c.life, within)
	answers := make(chan answer, len(c.endpoints))
	var asking []*endpoint
	for _, ep := range c.endpoints {
		if ep != slow && ep.breaker.State() != gobreaker.StateOpen {
			asking = append(asking, ep)
		}
	}
	if !c.background(func() {
		var wg sync.WaitGroup
		for _, ep := range asking {
			wg.Go(func() {
				var st Status
				r, err := c.send(sctx, ep, http.MethodGet, "/v1/status", nil, nil)
				if err != nil || r.decode(&st) != nil {
					answers <- answer{ep, nil}
					return
				}
				answers <- answer{ep, &st}
			})
		}
		wg.Wait()
		scancel()
	}) {
		scancel()
		return nil, false // closing
	}
	var responsive *endpoint
	for range asking {
		var a answer
		select {
		case a = <-answers:
		case <-ctx.Done():
			return responsive, false
		}
		if a.st == nil {
			continue
		}
		a.ep.suspectUntil.Store(0)
		if responsive == nil {
			responsive = a.ep
		}
		if a.st.Leader == nil {
			continue
		}
		if i := c.indexOfNode(a.st.Leader.ID, a.st.Leader.HTTPAddr); i >= 0 && c.endpoints[i] != slow {
			c.leader.Store(int32(i))
			return c.endpoints[i], true
		}
	}
	return responsive, false
}

// index is ep's position in c.endpoints.
func (c *Client) index(ep *endpoint) int32 {
	for i, e := range c.endpoints {
		if e == ep {
			return int32(i)
		}
	}
	return -1
}

// indexOfNode is the endpoint of the node with that id or HTTP address
// (-1: none of ours).
func (c *Client) indexOfNode(id, httpAddr string) int {
	for i, cand := range c.endpoints {
		if (httpAddr != "" && strings.HasSuffix(cand.url, "://"+httpAddr)) || (id != "" && cand.servedBy() == id) {
			return i
		}
	}
	return -1
}

// rememberID makes the endpoint of node id (a leader hint) the believed
// leader, when it is one of ours and seen before.
func (c *Client) rememberID(id string) {
	if i := c.indexOfNode(id, ""); i >= 0 {
		c.leader.Store(int32(i))
	}
}

// attempt sends rq once to ep, through its breaker, within the attempt's
// budget: AttemptTimeout or what is left of ctx.
func (c *Client) attempt(ctx context.Context, ep *endpoint, rq request) (*reply, error) {
	done, err := ep.breaker.Allow()
	if err != nil {
		return nil, fmt.Errorf("%w: %s: breaker %v", errNotSent, ep.url, err)
	}
	actx := ctx
	if !rq.blocking {
		var cancel context.CancelFunc
		actx, cancel = context.WithTimeout(ctx, c.cfg.AttemptTimeout)
		defer cancel()
	}
	r, err := c.send(actx, ep, rq.method, rq.path, rq.body, func(h http.Header) {
		if rq.key != "" {
			h.Set(api.HeaderIdempotencyKey, rq.key)
		}
	})
	var se *Error
	switch {
	case err == nil || errors.As(err, &se):
		done(nil) // any answer, even an error, proves the node is alive
		ep.suspectUntil.Store(0)
	case ctx.Err() != nil:
		done(ctx.Err()) // the caller gave up (or a hedge won): excluded
	case actx.Err() != nil:
		done(errAttemptTimeout) // the node hung: a failure
	default:
		done(err)
	}
	if err == nil && !rq.stale && r.direct {
		c.remember(ep)
	}
	return r, err
}

// remember marks ep as the leader's endpoint: it answered a leader-bound
// call itself, without forwarding it.
func (c *Client) remember(ep *endpoint) {
	if i := c.index(ep); i >= 0 {
		c.leader.Store(i)
	}
}

func (e *endpoint) servedBy() string {
	s, _ := e.id.Load().(string)
	return s
}

// reply is a 2xx answer, not yet decoded (a hedged call decodes only the
// answer that wins).
type reply struct {
	ep     *endpoint
	header http.Header
	body   []byte
	// direct: ep answered itself rather than forwarding to the leader.
	direct bool
}

// decode decodes the answer into out: nil ignores it, *[]byte takes the
// raw bytes, *answer keeps the headers too, anything else is JSON.
func (r *reply) decode(out any) error {
	switch o := out.(type) {
	case nil:
	case *[]byte:
		*o = r.body
	case *answer:
		o.header = r.header
		if err := json.Unmarshal(r.body, o.body); err != nil {
			return fmt.Errorf("coordd: decode answer of %s: %w", r.ep.url, err)
		}
	default:
		if err := json.Unmarshal(r.body, out); err != nil {
			return fmt.Errorf("coordd: decode answer of %s: %w", r.ep.url, err)
		}
	}
	return nil
}

// send sends one HTTP request and reads the answer: a *reply for 2xx, an
// *Error for other statuses.
func (c *Client) send(ctx context.Context, ep *endpoint, method, path string, body []byte, hdr func(http.Header)) (*reply, error) {
	var rb io.Reader
	if body != nil {
		rb = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, ep.url+path, rb)
	if err != nil {
		return nil, fmt.Errorf("coordd: build request: %w", err)
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
			return nil, fmt.Errorf("%w: %s: %w", errNotSent, ep.url, err)
		}
		return nil, fmt.Errorf("coordd: %s %s: %w", method, ep.url+path, err)
	}
	defer resp.Body.Close()
	r := &reply{ep: ep, header: resp.Header}
	served, fwd := resp.Header.Get(api.HeaderServedBy), resp.Header.Get(api.HeaderForwardedBy)
	switch {
	case fwd != "":
		ep.id.Store(fwd) // ep forwarded to the leader, which served
	case served != "":
		ep.id.Store(served)
		r.direct = true
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("coordd: read answer of %s: %w", ep.url, err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, errorOf(resp, b)
	}
	r.body = b
	return r, nil
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
	// A TLS handshake that failed: the request was never written.
	return tlsMismatch(err) || strings.Contains(err.Error(), "connection refused")
}

// tlsMismatch reports a TLS handshake that failed because the two sides do
// not fit: a node certificate this client does not trust (or not for this
// address), a client certificate the node wants and did not get, or a node
// that does not speak TLS at all.
func tlsMismatch(err error) bool {
	var (
		verify *tls.CertificateVerificationError
		record tls.RecordHeaderError
	)
	return errors.As(err, &verify) || errors.As(err, &record) || strings.Contains(err.Error(), "remote error: tls: ")
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
