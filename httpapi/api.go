// Package httpapi serves coordd's HTTP API: JSON types, the error model,
// forwarding to the leader, linearizable and stale reads, and blocking
// queries. It talks to the node only through the Node interface, so handlers
// are tested without a cluster.
package httpapi

import (
	"fmt"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/fsm"
	"github.com/coordd/coordd/lease"
)

// Defaults for Options.
const (
	DefaultMaxRequestBytes = 1 << 20
	DefaultMaxValueBytes   = 512 << 10
	// DefaultMaxSnapshotBytes bounds a backup uploaded for restore.
	DefaultMaxSnapshotBytes = 4 << 30
	// RestoreTimeout bounds a restore request, upload included.
	RestoreTimeout = 15 * time.Minute
	// MaxKeyBytes bounds a key's length.
	MaxKeyBytes = 1024
	// DefaultWait is how long a blocking query waits when ?wait is absent.
	DefaultWait = 60 * time.Second
	// MaxWait caps ?wait.
	MaxWait = 10 * time.Minute
	// DefaultWriteTimeout bounds the wait for a write's commit (or a read
	// barrier).
	DefaultWriteTimeout = 10 * time.Second
	// DefaultMaxLeasesPerToken bounds the leases of one token.
	DefaultMaxLeasesPerToken = 250_000
	// DefaultMaxCandidates bounds the holders and waiters of one name.
	DefaultMaxCandidates = 10_000
	// DefaultLeaderWait is Options.LeaderWait's default: one election
	// timeout plus one heartbeat timeout at the default Raft timing.
	DefaultLeaderWait = 300 * time.Millisecond
	// DefaultForwardGrace is Options.ForwardGrace's default: one
	// heartbeat timeout at the default Raft timing.
	DefaultForwardGrace = 150 * time.Millisecond
)

// Options configures the API.
type Options struct {
	Logger          hclog.Logger
	MaxRequestBytes int64
	MaxValueBytes   int
	// MaxSnapshotBytes bounds a backup uploaded to POST /v1/snapshot.
	MaxSnapshotBytes int64
	// Registry receives the HTTP metrics and is served at /metrics. Nil
	// makes a private one.
	Registry *prometheus.Registry
	// Forwarder sends requests to the leader; nil uses a default client.
	Forwarder *http.Client
	// WriteTimeout bounds the wait for a commit or a read barrier, and a
	// forwarding hop of a request that does not block; 0 means
	// DefaultWriteTimeout.
	WriteTimeout time.Duration
	// LeaderWait is how long after losing its leader a node waits for a
	// new one before it answers no_leader: a request that finds no leader,
	// or whose forward was cancelled because the leader changed, waits
	// until the view is that old, then answers. 0 means DefaultLeaderWait.
	LeaderWait time.Duration
	// ForwardGrace is how long a forward in flight may still take once
	// this node sees that its target no longer leads, before it is
	// cancelled: a deposed leader that is alive answers by then (with the
	// outcome of a commit it was finishing), a stalled one does not. 0
	// means DefaultForwardGrace; negative, none.
	ForwardGrace time.Duration
	// PeerH2C says that the server serving this API accepts unencrypted
	// HTTP/2 with prior knowledge: every answer tells peers so, and their
	// forwards then share one multiplexed connection (peer.go).
	PeerH2C bool
	// NoKeepaliveCoalescing makes a follower forward each keepalive as it
	// came instead of coalescing them into batched renewals (peer.go).
	NoKeepaliveCoalescing bool
	// NoEncodedForwarding makes a follower forward every write as the
	// client's whole HTTP request instead of sending the validated,
	// encoded command to the leader's POST /v1/internal/apply
	// (peerapply.go).
	NoEncodedForwarding bool
	// NoWriteCoalescing makes a follower send each encoded command in a
	// request of its own instead of coalescing the commands that arrive
	// while a batch is in flight (peerbatch.go).
	NoWriteCoalescing bool
	// LeaseClock, when set, is this node's lease clock, exposed for fault
	// injection at /v1/debug/lease-clock. Nil (production) disables it.
	LeaseClock *lease.SkewClock
	// Stopping, when closed, makes blocking queries answer at once with
	// what they have, so that a graceful shutdown does not wait for them.
	Stopping <-chan struct{}
	// ACL turns access control on: every request but /healthz, /readyz
	// and POST /v1/acl/bootstrap needs a token whose rules allow it.
	ACL bool
	// MaxLeasesPerToken bounds the leases one token (all anonymous
	// requests together, without ACLs) may hold; 0 means
	// DefaultMaxLeasesPerToken, negative means no limit.
	MaxLeasesPerToken int
	// MaxCandidates bounds the holders plus waiting candidates of one
	// election or lock; 0 means DefaultMaxCandidates, negative no limit.
	MaxCandidates int

	// Request limits (limits.go). RateLimit is the sustained rate of
	// requests allowed per client, per second, and RateBurst the burst
	// above it: 0 takes DefaultRateLimit (and a burst of twice the rate),
	// a negative RateLimit disables the limit. RateClients bounds the
	// clients tracked (0: DefaultRateClients). MaxWatchers bounds the
	// blocking queries and event streams served at once (0:
	// DefaultMaxWatchers, negative: no bound). BodyReadTimeout bounds the
	// receipt of a request body (0: DefaultBodyReadTimeout, negative: no
	// bound).
	RateLimit       float64
	RateBurst       int
	RateClients     int
	MaxWatchers     int
	BodyReadTimeout time.Duration
}

// API is the coordd HTTP handler.
type API struct {
	node Node
	opts Options
	log  hclog.Logger
	mux  *http.ServeMux
	fwd  *http.Client
	ka   *kaCoalescer
	// applyKeyed and applyUnkeyed batch encoded commands with and
	// without an idempotency key (peerbatch.go).
	applyKeyed, applyUnkeyed *applyCoalescer
	metrics                  *httpMetrics
	limits                   *limits
	// csrf refuses state-changing requests that a browser sends from a
	// page of another origin (Sec-Fetch-Site, or Origin against Host).
	// Requests without those headers — curl, the Go client, other nodes —
	// pass; so do GET, HEAD and OPTIONS, which change nothing here.
	csrf *http.CrossOriginProtection
}

// New returns the HTTP handler for node.
func New(node Node, opts Options) *API {
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if opts.MaxValueBytes <= 0 {
		opts.MaxValueBytes = DefaultMaxValueBytes
	}
	if opts.MaxSnapshotBytes <= 0 {
		opts.MaxSnapshotBytes = DefaultMaxSnapshotBytes
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = DefaultWriteTimeout
	}
	if opts.LeaderWait <= 0 {
		opts.LeaderWait = DefaultLeaderWait
	}
	if opts.ForwardGrace == 0 {
		opts.ForwardGrace = DefaultForwardGrace
	}
	opts.MaxLeasesPerToken = limitOption(opts.MaxLeasesPerToken, DefaultMaxLeasesPerToken)
	opts.MaxCandidates = limitOption(opts.MaxCandidates, DefaultMaxCandidates)
	setLimitDefaults(&opts)
	a := &API{node: node, opts: opts, log: opts.Logger, mux: http.NewServeMux(), fwd: opts.Forwarder,
		csrf: http.NewCrossOriginProtection()}
	if a.fwd == nil {
		a.fwd = &http.Client{Transport: newPeerTransport()}
	}
	a.ka = &kaCoalescer{a: a}
	a.applyKeyed, a.applyUnkeyed = &applyCoalescer{a: a, keyed: true}, &applyCoalescer{a: a}
	a.metrics = newHTTPMetrics(opts.Registry)
	a.limits = newLimits(opts, opts.Registry)

	a.mux.HandleFunc("GET /v1/kv/{key...}", a.kvGet)
	a.mux.HandleFunc("PUT /v1/kv/{key...}", a.kvPut)
	a.mux.HandleFunc("DELETE /v1/kv/{key...}", a.kvDelete)
	a.mux.HandleFunc("/v1/kv", a.kvNoKey)
	a.mux.HandleFunc("POST /v1/txn", a.txn)
	a.mux.HandleFunc("POST /v1/leases", a.leaseGrant)
	a.mux.HandleFunc("GET /v1/leases", a.leaseList)
	a.mux.HandleFunc("GET /v1/leases/{id}", a.leaseGet)
	a.mux.HandleFunc("DELETE /v1/leases/{id}", a.leaseRevoke)
	a.mux.HandleFunc("POST /v1/leases/{id}/keepalive", a.leaseKeepalive)
	a.mux.HandleFunc("POST /v1/leases/keepalive", a.leaseKeepaliveMany)
	a.mux.HandleFunc("POST "+peerKeepalivePath, a.peerKeepalive)
	a.mux.HandleFunc("POST "+peerApplyPath, a.peerApply)
	a.mux.HandleFunc("GET /v1/elections", a.electionList(fsm.KindElection))
	a.mux.HandleFunc("GET /v1/elections/{name}", a.electionGet)
	a.mux.HandleFunc("POST /v1/elections/{name}/campaign", a.campaign(fsm.KindElection))
	a.mux.HandleFunc("POST /v1/elections/{name}/resign", a.resign())
	a.mux.HandleFunc("POST /v1/elections/{name}/proclaim", a.proclaim())
	a.mux.HandleFunc("GET /v1/locks", a.electionList(fsm.KindLock))
	a.mux.HandleFunc("GET /v1/locks/{name}", a.electionGet)
	a.mux.HandleFunc("POST /v1/locks/{name}", a.campaign(fsm.KindLock))
	a.mux.HandleFunc("DELETE /v1/locks/{name}", a.resign())
	a.mux.HandleFunc("GET /v1/fencing/{name}", a.fencingCheck)
	a.mux.HandleFunc("GET /v1/snapshot", a.snapshotGet)
	a.mux.HandleFunc("POST /v1/snapshot", a.snapshotPost)
	a.mux.HandleFunc("GET /v1/debug/lease-clock", a.leaseClock)
	a.mux.HandleFunc("POST /v1/debug/lease-clock", a.leaseClock)
	a.mux.HandleFunc("GET /v1/status", a.status)
	a.mux.HandleFunc("GET /v1/cluster/members", a.membersList)
	a.mux.HandleFunc("POST /v1/cluster/members", a.membersJoin)
	a.mux.HandleFunc("DELETE /v1/cluster/members/{id}", a.membersRemove)
	a.mux.HandleFunc("POST /v1/cluster/transfer-leadership", a.transferLeadership)
	a.mux.HandleFunc("POST /v1/acl/bootstrap", a.aclBootstrap)
	a.mux.HandleFunc("GET /v1/acl/tokens", a.aclTokenList)
	a.mux.HandleFunc("POST /v1/acl/tokens", a.aclTokenCreate)
	a.mux.HandleFunc("GET /v1/acl/tokens/{accessor}", a.aclTokenGet)
	a.mux.HandleFunc("DELETE /v1/acl/tokens/{accessor}", a.aclTokenDelete)
	a.mux.HandleFunc("GET /v1/acl/token/self", a.aclTokenSelf)
	a.mux.HandleFunc("GET /healthz", a.healthz)
	a.mux.HandleFunc("GET /readyz", a.readyz)
	a.mux.Handle("GET /metrics", promhttp.HandlerFor(opts.Registry, promhttp.HandlerOpts{Registry: opts.Registry}))
	return a
}

// ServeHTTP implements http.Handler: routing, JSON 404/405, panic recovery
// and request metrics.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			a.log.Error("panic in handler", "method", r.Method, "path", r.URL.Path, "panic", p, "stack", string(debug.Stack()))
			if !rec.wrote {
				writeErrorDetail(rec, http.StatusInternalServerError, api.ErrorDetail{Code: api.CodeInternal, Message: fmt.Sprint("internal error: ", p)})
			}
		}
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		a.metrics.requests.WithLabelValues(route, strconv.Itoa(rec.status)).Inc()
		a.metrics.duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
		a.limits.observe(rec, rec.status)
	}()
	rec.Header().Set(api.HeaderServedBy, a.node.ID())
	if a.opts.PeerH2C {
		rec.Header().Set(peerProtoHeader, "h2c")
	}
	if !isCleanPath(r.URL.Path) {
		// The mux would redirect; a key such as "a//b" or "a/../b" must
		// not silently become another key.
		writeErrorDetail(rec, http.StatusBadRequest, api.ErrorDetail{Code: api.CodeBadRequest,
			Message: "path " + strconv.Quote(r.URL.Path) + " has empty, '.' or '..' segments; keys cannot contain them"})
		return
	}
	if err := a.csrf.Check(r); err != nil {
		// Any web page a user visits could otherwise make the browser POST
		// (as text/plain, with no preflight) to a node on localhost or on
		// the user's network: revoke a lease, resign a holder, restore a
		// backup.
		writeErrorDetail(rec, http.StatusForbidden, api.ErrorDetail{Code: api.CodeCrossOrigin,
			Message: r.Method + " " + r.URL.Path + " from a web page of another origin is refused (" + err.Error() + "); send it from that page's own server, or through a proxy on this node's origin"})
		return
	}
	if k := r.Header.Get(api.HeaderIdempotencyKey); len(k) > maxIdempotencyKey || !printable(k) {
		writeErrorDetail(rec, http.StatusBadRequest, api.ErrorDetail{Code: api.CodeBadRequest,
			Message: fmt.Sprintf("Idempotency-Key must be at most %d printable ASCII characters", maxIdempotencyKey)})
		return
	}
	if a.opts.ACL {
		r = withLookup(r, a.node.State()) // once, for the rate limit and the ACL check
	}
	release, ok := a.admit(rec, r) // rate limit, watcher cap
	defer release()
	if !ok {
		return
	}
	h, pattern := a.mux.Handler(r)
	if pattern == "" {
		// The mux would answer 404/405 in plain text; answer JSON instead.
		probe := &statusRecorder{ResponseWriter: discardWriter{h: http.Header{}}, status: http.StatusOK}
		h.ServeHTTP(probe, r)
		switch probe.status {
		case http.StatusMethodNotAllowed:
			rec.Header().Set("Allow", probe.Header().Get("Allow"))
			writeErrorDetail(rec, http.StatusMethodNotAllowed, api.ErrorDetail{Code: api.CodeMethod, Message: "method " + r.Method + " not allowed on " + r.URL.Path})
		default:
			writeErrorDetail(rec, http.StatusNotFound, api.ErrorDetail{Code: api.CodeNotFound, Message: "no such endpoint: " + r.Method + " " + r.URL.Path})
		}
		return
	}
	r.Pattern = pattern // for the metrics above: the mux sets it on ar, a copy
	ar := a.authorize(rec, r, pattern)
	if ar == nil {
		return
	}
	a.mux.ServeHTTP(rec, ar)
}

// limitOption maps an option's 0 to its default and a negative value to 0
// (no limit, as the FSM reads it).
func limitOption(v, def int) int {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

// maxIdempotencyKey bounds the Idempotency-Key header.
const maxIdempotencyKey = 256

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// isCleanPath reports whether p has no empty, "." or ".." segments (a
// trailing slash is allowed: "/v1/kv/" lists with ?prefix).
func isCleanPath(p string) bool {
	if p == "" || p[0] != '/' {
		return false
	}
	trimmed := strings.TrimSuffix(p[1:], "/")
	if trimmed == "" {
		return true
	}
	for _, seg := range strings.Split(trimmed, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

type statusRecorder struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.wrote {
		s.status, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(p []byte) (int, error) {
	s.wrote = true
	return s.ResponseWriter.Write(p)
}

// Flush lets streaming responses through the recorder.
func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

type discardWriter struct{ h http.Header }

func (d discardWriter) Header() http.Header         { return d.h }
func (d discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d discardWriter) WriteHeader(int)             {}

type httpMetrics struct {
	requests        *prometheus.CounterVec
	duration        *prometheus.HistogramVec
	forwarded       prometheus.Counter
	fencingRejected prometheus.Counter
	// Coalesced keepalives (peer.go).
	kaBatches       prometheus.Counter
	kaBatchLeases   prometheus.Histogram
	kaBatchRequests prometheus.Histogram
	// Encoded forwards (peerapply.go).
	encodedForwards  prometheus.Counter
	encodedFallbacks prometheus.Counter
	encodedBatches   prometheus.Counter
}

func newHTTPMetrics(reg *prometheus.Registry) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "coordd_http_requests_total", Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "coordd_http_request_duration_seconds", Help: "HTTP request latency by route.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"route"}),
		forwarded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "coordd_http_forwarded_total", Help: "Requests this node forwarded to the leader.",
		}),
		fencingRejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "coordd_fencing_check_stale_total", Help: "Fencing checks (GET /v1/fencing) that found the token no longer current.",
		}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.forwarded, m.fencingRejected} {
		if err := reg.Register(c); err != nil {
			// Registering twice into one registry is a programming error.
			panic(fmt.Sprintf("httpapi: register metrics: %v", err))
		}
	}
	newKeepaliveBatchMetrics(m, reg)
	newEncodedForwardMetrics(m, reg)
	return m
}
