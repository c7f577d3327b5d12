package httpapi

import (
	"container/list"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/coordd/coordd/api"
)

// Request limits: defaults for Options and the error codes of a refusal.
//
// Every limit refuses with a JSON error, never a crash or a stalled node:
// 413 too_large for anything too big (body, value, key, name, batch), 429
// rate_limited or too_many_watchers with Retry-After for load, 408
// request_timeout for a body that does not arrive in time.
const (
	// DefaultRateLimit is the sustained request rate allowed per client,
	// in requests per second.
	DefaultRateLimit = 10000
	// DefaultRateBurst is the burst allowed per client above the
	// sustained rate (twice DefaultRateLimit).
	DefaultRateBurst = 20000
	// DefaultRateClients bounds how many clients' buckets a node tracks.
	DefaultRateClients = 65536
	// DefaultMaxWatchers bounds the blocking queries (?index=N) and
	// Server-Sent Events streams one node serves at once.
	DefaultMaxWatchers = 10000
	// DefaultBodyReadTimeout bounds the time to receive a request body
	// (not a snapshot upload, which RestoreTimeout bounds).
	DefaultBodyReadTimeout = 30 * time.Second
)

// Reasons of coordd_http_refused_total.
const (
	refusedRate        = "rate_limited"
	refusedWatchers    = "too_many_watchers"
	refusedTooLarge    = "too_large"
	refusedBodyTimeout = "request_timeout"
)

// limits holds the per-node state of the request limits.
type limits struct {
	rate        *clientLimiter // nil: no rate limit
	maxWatchers int64          // <= 0: no cap
	watchers    atomic.Int64   // blocking queries and streams being served
	refused     *prometheus.CounterVec
	untrusted   prometheus.Counter // see peerauth.go
}

func newLimits(opts Options, reg *prometheus.Registry) *limits {
	l := &limits{maxWatchers: int64(opts.MaxWatchers)}
	if opts.RateLimit > 0 {
		l.rate = newClientLimiter(rate.Limit(opts.RateLimit), opts.RateBurst, opts.RateClients, time.Now)
	}
	l.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "coordd_http_refused_total",
		Help: "Requests refused by a limit, by reason: rate_limited, too_many_watchers, too_large, request_timeout.",
	}, []string{"reason"})
	for _, reason := range []string{refusedRate, refusedWatchers, refusedTooLarge, refusedBodyTimeout} {
		l.refused.WithLabelValues(reason) // export zeros
	}
	l.untrusted = newUntrustedCounter()
	cs := []prometheus.Collector{l.refused, l.untrusted,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "coordd_http_watchers",
			Help: "Blocking queries and Server-Sent Events streams this node is serving.",
		}, func() float64 { return float64(l.watchers.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "coordd_http_rate_limit_clients",
			Help: "Clients whose request rate this node is tracking.",
		}, func() float64 {
			if l.rate == nil {
				return 0
			}
			return float64(l.rate.len())
		}),
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			// Registering twice into one registry is a programming error.
			panic(fmt.Sprintf("httpapi: register limit metrics: %v", err))
		}
	}
	return l
}

// setLimitDefaults fills the zero limit options with their defaults and
// turns the negative ones ("disabled") into zeros.
func setLimitDefaults(o *Options) {
	switch {
	case o.RateLimit == 0:
		o.RateLimit = DefaultRateLimit
		if o.RateBurst <= 0 {
			o.RateBurst = DefaultRateBurst
		}
	case o.RateLimit < 0 || math.IsNaN(o.RateLimit):
		o.RateLimit, o.RateBurst = 0, 0
	case o.RateBurst <= 0:
		o.RateBurst = int(min(math.Ceil(2*o.RateLimit), math.MaxInt32))
	}
	if o.RateClients <= 0 {
		o.RateClients = DefaultRateClients
	}
	switch {
	case o.MaxWatchers == 0:
		o.MaxWatchers = DefaultMaxWatchers
	case o.MaxWatchers < 0:
		o.MaxWatchers = 0
	}
	switch {
	case o.BodyReadTimeout == 0:
		o.BodyReadTimeout = DefaultBodyReadTimeout
	case o.BodyReadTimeout < 0:
		o.BodyReadTimeout = 0
	}
}

func noRelease() {}

// admit applies the per-client rate limit and the per-node watcher cap to
// a request as it arrives. When it refuses it has written the answer (429
// with a JSON error and Retry-After) and ok is false. release frees the
// request's watcher slot, if it took one; call it when the request is done
// (it is never nil).
//
// A request that another coordd node forwarded (X-Coordd-Forwarded-By) was
// rate-limited where it entered the cluster and is not limited again here:
// otherwise every client of a follower would share one bucket on the
// leader, keyed by the follower's address. The header is trusted only from
// a node (peerauth.go; docs/api.md, "Limits"). It still takes a watcher slot here, because
// its wait costs this node as much as any other.
func (a *API) admit(w http.ResponseWriter, r *http.Request) (release func(), ok bool) {
	l := a.limits
	a.trustForwarded(r) // from here on, the header is a node's
	switch r.URL.Path {
	case "/healthz", "/readyz", "/metrics":
		return noRelease, true
	}
	if l.rate != nil && r.Header.Get(api.HeaderForwardedBy) == "" {
		if ok, retry := l.rate.allow(a.rateKey(r)); !ok {
			l.refused.WithLabelValues(refusedRate).Inc()
			secs := int64(math.Ceil(retry.Seconds()))
			w.Header().Set(api.HeaderRetryAfter, strconv.FormatInt(max(secs, 1), 10))
			writeJSON(w, http.StatusTooManyRequests, api.ErrorBody{Error: api.ErrorDetail{Code: api.CodeRateLimited,
				Message: fmt.Sprintf("too many requests from this client: the limit is %g per second with bursts of %d; retry in %s",
					float64(l.rate.limit), l.rate.burst, retry.Round(time.Millisecond))}})
			return noRelease, false
		}
	}
	if !isWatch(r) {
		return noRelease, true
	}
	if n := l.watchers.Add(1); l.maxWatchers > 0 && n > l.maxWatchers {
		l.watchers.Add(-1)
		l.refused.WithLabelValues(refusedWatchers).Inc()
		writeErrorDetail(w, http.StatusTooManyRequests, api.ErrorDetail{Code: api.CodeTooManyWatchers,
			Message: fmt.Sprintf("node %s already serves %d blocking queries and event streams, its limit", a.node.ID(), l.maxWatchers)})
		return noRelease, false
	}
	var once sync.Once
	return func() { once.Do(func() { l.watchers.Add(-1) }) }, true
}

// observe counts, once the answer is known, the refusals decided deep in
// the handlers (413 and 408). Answers relayed from the leader were counted
// there.
func (l *limits) observe(w http.ResponseWriter, status int) {
	if w.Header().Get(api.HeaderForwardedBy) != "" {
		return
	}
	switch status {
	case http.StatusRequestEntityTooLarge:
		l.refused.WithLabelValues(refusedTooLarge).Inc()
	case http.StatusRequestTimeout:
		l.refused.WithLabelValues(refusedBodyTimeout).Inc()
	}
}

// isWatch reports whether r is a blocking query (GET with ?index=N, N > 0)
// or a Server-Sent Events stream of an election or lock: the requests that
// may hold a goroutine and a connection for minutes.
func isWatch(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if strings.Contains(r.URL.RawQuery, "index") {
		if n, err := strconv.ParseUint(r.URL.Query().Get("index"), 10, 64); err == nil && n > 0 {
			return true
		}
	}
	p := r.URL.Path
	return strings.Contains(r.Header.Get("Accept"), "text/event-stream") &&
		(strings.HasPrefix(p, "/v1/elections/") || strings.HasPrefix(p, "/v1/locks/"))
}

// clientKey names the client a request counts against: its bearer token
// when it sends one (hashed: the raw token is never kept), else its IP
// address (an IPv6 address by its /64, which one host usually owns whole).
func clientKey(r *http.Request) string {
	if tok, ok := bearer(r); ok {
		sum := sha256.Sum256([]byte(tok))
		return "token:" + hex.EncodeToString(sum[:16])
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return "addr:" + host
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is6() {
		if p, err := ip.Prefix(64); err == nil {
			return "ip:" + p.String()
		}
	}
	return "ip:" + ip.String()
}

// rateKey is clientKey, but with ACLs on a token the cluster does not know
// counts against the address it came from: made-up tokens cannot each get
// a bucket of their own.
func (a *API) rateKey(r *http.Request) string {
	if a.opts.ACL {
		if tok, ok := bearer(r); ok {
			if _, known := a.knownToken(r, tok); !known {
				r2 := *r
				r2.Header = http.Header{}
				return clientKey(&r2)
			}
		}
	}
	return clientKey(r)
}

// clientLimiter is a token bucket (golang.org/x/time/rate) per client, in
// bounded memory: at most max buckets, least recently used first out. A
// bucket left alone long enough to refill completely is dropped as soon as
// it reaches the back of the list, since a new bucket is the same.
type clientLimiter struct {
	limit rate.Limit
	burst int
	max   int
	idle  time.Duration // time for an empty bucket to refill
	now   func() time.Time

	mu      sync.Mutex
	clients map[string]*list.Element // of *clientBucket
	lru     list.List                // front: most recently seen
}

type clientBucket struct {
	key  string
	lim  *rate.Limiter
	seen time.Time
}

func newClientLimiter(limit rate.Limit, burst, maxClients int, now func() time.Time) *clientLimiter {
	idle := time.Duration(float64(burst) / float64(limit) * float64(time.Second))
	if idle <= 0 || idle > time.Hour {
		idle = time.Hour
	}
	return &clientLimiter{limit: limit, burst: burst, max: maxClients, idle: idle, now: now,
		clients: make(map[string]*list.Element)}
}

// allow takes a token from key's bucket. When there is none it returns
// false and how long until there is one.
func (c *clientLimiter) allow(key string) (ok bool, retry time.Duration) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.bucket(key, now)
	res := b.lim.ReserveN(now, 1)
	if !res.OK() {
		return false, time.Second
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return false, d
	}
	return true, 0
}

// bucket returns key's bucket, making it if need be, and marks it used.
// c.mu is held.
func (c *clientLimiter) bucket(key string, now time.Time) *clientBucket {
	// Drop a couple of full (long idle) buckets per call: amortised, every
	// bucket is dropped soon after it refills.
	for range 2 {
		e := c.lru.Back()
		if e == nil || now.Sub(e.Value.(*clientBucket).seen) < c.idle {
			break
		}
		c.remove(e)
	}
	if e, ok := c.clients[key]; ok {
		b := e.Value.(*clientBucket)
		b.seen = now
		c.lru.MoveToFront(e)
		return b
	}
	for len(c.clients) >= c.max && c.lru.Len() > 0 {
		c.remove(c.lru.Back())
	}
	b := &clientBucket{key: key, lim: rate.NewLimiter(c.limit, c.burst), seen: now}
	c.clients[key] = c.lru.PushFront(b)
	return b
}

func (c *clientLimiter) remove(e *list.Element) {
	delete(c.clients, e.Value.(*clientBucket).key)
	c.lru.Remove(e)
}

func (c *clientLimiter) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.clients)
}

// tooLarge is a 413 too_large error.
func tooLarge(format string, args ...any) error {
	return &apiError{status: http.StatusRequestEntityTooLarge, detail: api.ErrorDetail{Code: api.CodeTooLarge, Message: fmt.Sprintf(format, args...)}}
}

// bodyDeadline bounds the time left to read r's body to d (0: no bound)
// and returns the function that lifts the bound again, which must run once
// the whole body is read: a read deadline left on the connection would
// cancel the request's context while a long answer (a lock wait) is still
// due. After a failed read it must not run: the server drains the rest of
// the body after the handler, and the deadline bounds that too.
func bodyDeadline(w http.ResponseWriter, d time.Duration) (lift func()) {
	if d <= 0 {
		return noRelease
	}
	rc := http.NewResponseController(w)
	if err := rc.SetReadDeadline(time.Now().Add(d)); err != nil {
		return noRelease // not supported by this writer (tests): no bound
	}
	return func() { _ = rc.SetReadDeadline(time.Time{}) }
}

// bodyReadError turns a failure to read a request body into the error to
// answer: 413 over the limit, 408 past the deadline, 400 otherwise (the
// client went away or sent a malformed chunked body) rather than a 500.
func bodyReadError(err error, timeout time.Duration) error {
	var mbe *http.MaxBytesError
	var ne net.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &mbe):
		return err
	case errors.As(err, &ne) && ne.Timeout():
		return &apiError{status: http.StatusRequestTimeout, detail: api.ErrorDetail{Code: api.CodeRequestTimeout,
			Message: fmt.Sprintf("the request body did not arrive within %s", timeout)}}
	default:
		return badRequest("reading the request body: " + err.Error())
	}
}
