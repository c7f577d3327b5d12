package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/coordd/coordd/api"
)

// Read shadowing (-read-shadow-rate): a sampled fraction of the single-key
// reads this node answers (GET /v1/kv/KEY, not blocking, not a prefix) is
// asked again of every shadow (non-voting) member as a ?stale read, once
// the client has its answer, and the two answers are compared. A
// difference is counted (coordd_read_shadow_differences_total, coordd
// shadow status) and logged; the shadow's answer is never returned.
//
// Two answers are comparable when they reflect the same last change of the
// key (equal X-Coordd-Index): then they must be equal, byte for byte. A
// shadow whose index for the key is lower is behind: it is asked again
// (up to readShadowTries times); if its applied index passed the primary's
// key index and its key index is still lower, it missed a change, which is
// a difference. A higher index means the key changed since: not compared.

const (
	readShadowTries = 20
	readShadowBody  = 64 << 10
	readShadowAtMax = 8 // mirrored reads in flight at most
)

type shadowTarget struct{ id, addr string }

// readShadower mirrors sampled reads to shadow members.
type readShadower struct {
	rate float64
	log  hclog.Logger
	s    *Server
	// scheme and client reach the shadows (the node's peer client).
	scheme string
	client *http.Client

	targets   atomic.Pointer[[]shadowTarget]
	targetsAt atomic.Int64
	inflight  chan struct{}

	mu    sync.Mutex
	tally map[string][2]uint64 // member -> compared, differed

	compared    prometheus.Counter
	differences prometheus.Counter
	skipped     *prometheus.CounterVec
}

func newReadShadower(cfg *Config) *readShadower {
	rs := &readShadower{rate: cfg.ReadShadowRate, log: cfg.Logger.Named("read-shadow"), tally: map[string][2]uint64{},
		inflight: make(chan struct{}, readShadowAtMax)}
	rs.compared = prometheus.NewCounter(prometheus.CounterOpts{Name: "coordd_read_shadow_compared_total",
		Help: "Reads mirrored to a shadow member whose answer was compared with this node's (read shadowing)."})
	rs.differences = prometheus.NewCounter(prometheus.CounterOpts{Name: "coordd_read_shadow_differences_total",
		Help: "Mirrored reads whose shadow answer differed from this node's at the same key index (logged; never returned)."})
	rs.skipped = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "coordd_read_shadow_skipped_total",
		Help: "Sampled reads not compared, by reason (busy, changed, behind, error)."}, []string{"reason"})
	return rs
}

func (rs *readShadower) collectors() []prometheus.Collector {
	return []prometheus.Collector{rs.compared, rs.differences, rs.skipped}
}

// shadowable reports whether r is a read that read shadowing compares.
func shadowable(r *http.Request) bool {
	if r.Method != http.MethodGet || !strings.HasPrefix(r.URL.Path, "/v1/kv/") || len(r.URL.Path) == len("/v1/kv/") ||
		r.Header.Get(api.HeaderForwardedBy) != "" {
		return false
	}
	q := r.URL.Query()
	return !q.Has("prefix") && !q.Has("index") && !q.Has("wait")
}

// serve answers r with next and, for a sampled read, mirrors it.
func (rs *readShadower) serve(next http.Handler, w http.ResponseWriter, r *http.Request) {
	if rs == nil || rs.rate <= 0 || !shadowable(r) || rand.Float64() >= rs.rate {
		next.ServeHTTP(w, r)
		return
	}
	targets := rs.shadows()
	if len(targets) == 0 {
		next.ServeHTTP(w, r)
		return
	}
	tee := &teeWriter{ResponseWriter: w, status: http.StatusOK}
	next.ServeHTTP(tee, r)
	if tee.status != http.StatusOK && tee.status != http.StatusNotFound || tee.over {
		return
	}
	idx, err := strconv.ParseUint(tee.Header().Get(api.HeaderIndex), 10, 64)
	if err != nil {
		return
	}
	select {
	case rs.inflight <- struct{}{}:
	default:
		rs.skipped.WithLabelValues("busy").Inc()
		return
	}
	primary := shadowAnswer{status: tee.status, body: tee.body.Bytes(), index: idx}
	auth := r.Header.Get("Authorization")
	path := r.URL.Path
	raw := r.URL.Query().Has("raw")
	go func() {
		defer func() { <-rs.inflight }()
		for _, t := range targets {
			rs.compare(t, path, raw, auth, primary)
		}
	}()
}

type shadowAnswer struct {
	status         int
	body           []byte
	index, applied uint64
}

// compare asks t for the same read and compares.
func (rs *readShadower) compare(t shadowTarget, path string, raw bool, auth string, primary shadowAnswer) {
	q := "?stale"
	if raw {
		q += "&raw"
	}
	for try := 0; try < readShadowTries; try++ {
		if try > 0 {
			time.Sleep(50 * time.Millisecond)
		}
		got, err := rs.ask(t, path+q, auth)
		if err != nil {
			rs.skipped.WithLabelValues("error").Inc()
			return
		}
		switch {
		case got.index > primary.index:
			rs.skipped.WithLabelValues("changed").Inc()
			return
		case got.index < primary.index && got.applied < primary.index:
			continue // behind: ask again
		}
		same := got.index == primary.index && got.status == primary.status && bytes.Equal(got.body, primary.body)
		rs.count(t.id, !same)
		if !same {
			rs.log.Warn("read shadowing: the shadow's answer differs from this node's (not returned to the client)",
				"shadow", t.id, "path", path, "index", primary.index, "shadow_index", got.index,
				"status", primary.status, "shadow_status", got.status,
				"body", clip(primary.body), "shadow_body", clip(got.body))
		}
		return
	}
	rs.skipped.WithLabelValues("behind").Inc()
}

func clip(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return strings.TrimSpace(string(b))
}

func (rs *readShadower) ask(t shadowTarget, pathQuery, auth string) (shadowAnswer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rs.scheme+"://"+t.addr+pathQuery, nil)
	if err != nil {
		return shadowAnswer{}, err
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := rs.client.Do(req)
	if err != nil {
		return shadowAnswer{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, readShadowBody))
	if err != nil {
		return shadowAnswer{}, err
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNotFound {
		return shadowAnswer{}, fmt.Errorf("%s", resp.Status)
	}
	idx, err := strconv.ParseUint(resp.Header.Get(api.HeaderIndex), 10, 64)
	if err != nil {
		return shadowAnswer{}, fmt.Errorf("no %s", api.HeaderIndex)
	}
	applied, _ := strconv.ParseUint(resp.Header.Get(api.HeaderAppliedIndex), 10, 64)
	return shadowAnswer{status: resp.StatusCode, body: body, index: idx, applied: applied}, nil
}

func (rs *readShadower) count(member string, differed bool) {
	rs.compared.Inc()
	if differed {
		rs.differences.Inc()
	}
	rs.mu.Lock()
	c := rs.tally[member]
	c[0]++
	if differed {
		c[1]++
	}
	rs.tally[member] = c
	rs.mu.Unlock()
}

// shadows are the non-voting members (refreshed every 2 s at most).
func (rs *readShadower) shadows() []shadowTarget {
	if p := rs.targets.Load(); p != nil && time.Since(time.Unix(0, rs.targetsAt.Load())) < 2*time.Second {
		return *p
	}
	var out []shadowTarget
	f := rs.s.raft.GetConfiguration()
	if f.Error() == nil {
		for _, srv := range f.Configuration().Servers {
			if srv.Suffrage == raft.Nonvoter && string(srv.ID) != rs.s.cfg.NodeID {
				if addr := rs.s.httpAddrOf(string(srv.ID)); addr != "" {
					out = append(out, shadowTarget{id: string(srv.ID), addr: addr})
				}
			}
		}
	}
	rs.targets.Store(&out)
	rs.targetsAt.Store(time.Now().UnixNano())
	return out
}

func (rs *readShadower) counts(member string) (compared, differed uint64) {
	if rs == nil {
		return 0, 0
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	c := rs.tally[member]
	return c[0], c[1]
}

// teeWriter passes an answer through and keeps a copy of its status and
// first readShadowBody bytes.
type teeWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
	body   bytes.Buffer
	over   bool
}

func (t *teeWriter) WriteHeader(code int) {
	if !t.wrote {
		t.status, t.wrote = code, true
	}
	t.ResponseWriter.WriteHeader(code)
}

func (t *teeWriter) Write(p []byte) (int, error) {
	t.wrote = true
	if t.body.Len()+len(p) <= readShadowBody {
		t.body.Write(p)
	} else {
		t.over = true
	}
	return t.ResponseWriter.Write(p)
}

// Flush passes a flush through.
func (t *teeWriter) Flush() {
	if f, ok := t.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (t *teeWriter) Unwrap() http.ResponseWriter { return t.ResponseWriter }
