package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/fsm"
)

// State digests (see docs/operations.md, "State digests and alarms").
//
// Every member takes a replica digest (fsm.State.ReplicaDigest) of its
// state at agreed indexes: every DigestInterval applied entries (more as
// the state grows: fsm.DigestEvery), at every
// digest point committed through the log (CmdDigestPoint), and of the
// state of every snapshot it takes or restores. The FSM goroutine only
// hands the immutable state at that index to a worker (two atomic loads
// and a channel send): hashing runs beside Apply and never stalls it. A
// worker that falls behind skips an agreed point rather than queue
// without bound.
//
// The leader asks every member for its digests (GET /v1/digests), groups
// them by index, and once a quorum of the voters agree on one digest at an
// index, checks every member's digest there against it. A member that
// differs is logged at ERROR with the index and the members, counted, and
// named in an alarm the leader commits through the log (fsm.AlarmRaise):
// every member then reports it (coordd_state_digest_mismatch, /v1/status,
// the console), and a member started with -corrupt-check=refuse that the
// alarm names stops serving reads and hands leadership away until an
// operator disarms it (coordctl alarm disarm).

// Defaults of the digest settings.
const (
	// DefaultDigestInterval is how many applied entries apart the agreed
	// points are.
	DefaultDigestInterval = 10000
	// DefaultDigestPoll is how often the leader collects digests.
	DefaultDigestPoll = time.Second
)

// CorruptCheck values.
const (
	CorruptCheckWarn   = "warn"
	CorruptCheckRefuse = "refuse"
)

const (
	// digestRing is how many digests a member keeps.
	digestRing = 256
	// digestQueue is how many states may wait for the digest worker.
	digestQueue = 8
	// digestWindow is how many agreed points the leader keeps comparing.
	digestWindow = 512
)

// digestDefaults fills the digest settings of c.
func (c *Config) digestDefaults() {
	if c.DigestInterval == 0 {
		c.DigestInterval = DefaultDigestInterval
	}
	if c.DigestPoll <= 0 {
		c.DigestPoll = DefaultDigestPoll
	}
	if c.CorruptCheck == "" {
		c.CorruptCheck = CorruptCheckWarn
	}
	if c.Shadow {
		c.NonVoter = true
	}
}

// validateDigest checks the digest settings of c.
func (c *Config) validateDigest() error {
	switch {
	case c.CorruptCheck != CorruptCheckWarn && c.CorruptCheck != CorruptCheckRefuse:
		return fmt.Errorf("%w: -corrupt-check %q: want warn or refuse", ErrConfig, c.CorruptCheck)
	case c.Shadow && len(c.Bootstrap) > 0:
		return fmt.Errorf("%w: a shadow member joins a running cluster (-join); it is never in a -bootstrap list", ErrConfig)
	case c.ReadShadowRate < 0 || c.ReadShadowRate > 1:
		return fmt.Errorf("%w: -read-shadow-rate %g: want a fraction from 0 to 1", ErrConfig, c.ReadShadowRate)
	}
	return nil
}

// digestJob is a state to digest.
type digestJob struct {
	index uint64
	kind  string
	state *fsm.State
}

// digester computes this member's digests and keeps the latest.
type digester struct {
	every uint64
	off   bool
	log   hclog.Logger
	jobs  chan digestJob
	// perturb is nil but in test builds (perturb_unsafe.go).
	perturb func(index uint64) *fsm.State

	mu   sync.Mutex
	ring []api.Digest // ascending index

	applyErrors atomic.Uint64
	skipped     atomic.Uint64

	computed *prometheus.CounterVec
	skips    prometheus.Counter
	seconds  prometheus.Histogram
}

func newDigester(cfg *Config) *digester {
	d := &digester{every: cfg.DigestInterval, off: cfg.DigestsOff, log: cfg.Logger.Named("digest"), jobs: make(chan digestJob, digestQueue)}
	d.computed = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "coordd_state_digests_total",
		Help: "Replica digests this node computed, by why (interval, point, snapshot, restore)."}, []string{"kind"})
	d.skips = prometheus.NewCounter(prometheus.CounterOpts{Name: "coordd_state_digests_skipped_total",
		Help: "Agreed points this node did not digest because its digest worker was behind."})
	d.seconds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "coordd_state_digest_seconds",
		Help: "Time to compute one replica digest (beside Apply, not in its path).", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10)})
	return d
}

// afterApply runs on the FSM goroutine after each command: it notes a
// domain failure and hands the state at an agreed point to the worker.
func (d *digester) afterApply(prev, next *fsm.State, index uint64, res *fsm.Result) {
	if d == nil || d.off {
		return
	}
	if res != nil && res.Err != nil {
		d.applyErrors.Add(1)
	}
	if d.perturb != nil {
		if p := d.perturb(index); p != nil {
			next = p
		}
	}
	if b, after, ok := fsm.DigestBoundary(prev.Index(), index, d.every); ok {
		st := prev
		if after {
			st = next
		}
		if fsm.DigestAgreed(b, d.every, st) {
			d.enqueue(digestJob{index: b, kind: api.DigestInterval, state: st})
		}
	}
	if res != nil && res.Type == fsm.CmdDigestPoint {
		d.enqueue(digestJob{index: index, kind: api.DigestPoint, state: next})
	}
}

// beforeBatchEntry runs on the FSM goroutine before an entry of a batch
// applies: when the agreed point lies between the batch's state and the
// entry (prev < b < index: the entries in between were not commands), the
// state to digest is the one before the entry.
func (d *digester) beforeBatchEntry(b *fsm.Batch, prev, index uint64) {
	if d == nil || d.off {
		return
	}
	if at, after, ok := fsm.DigestBoundary(prev, index, d.every); ok && !after {
		if st := b.State(); fsm.DigestAgreed(at, d.every, st) {
			d.enqueue(digestJob{index: at, kind: api.DigestInterval, state: st})
		}
	}
}

// afterBatchEntry is afterApply for an entry of a batch: the state after
// the entry is taken from the batch (unpublished, committed) only at an
// agreed point.
func (d *digester) afterBatchEntry(b *fsm.Batch, prev, index uint64, res *fsm.Result) {
	if d == nil || d.off {
		return
	}
	if res != nil && res.Err != nil {
		d.applyErrors.Add(1)
	}
	var st *fsm.State
	if at, after, ok := fsm.DigestBoundary(prev, index, d.every); ok && after {
		st = b.State()
		if fsm.DigestAgreed(at, d.every, st) {
			d.enqueue(digestJob{index: at, kind: api.DigestInterval, state: st})
		}
	}
	if res != nil && res.Type == fsm.CmdDigestPoint {
		if st == nil {
			st = b.State()
		}
		d.enqueue(digestJob{index: index, kind: api.DigestPoint, state: st})
	}
}

// enqueue hands a job to the worker, or counts it skipped when the worker
// is behind: Apply never waits for a digest.
func (d *digester) enqueue(j digestJob) {
	select {
	case d.jobs <- j:
	default:
		d.skipped.Add(1)
		d.skips.Inc()
	}
}

// run digests queued states until stop is closed.
func (d *digester) run(stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case j := <-d.jobs:
			start := time.Now()
			sum := j.state.ReplicaDigest()
			d.seconds.Observe(time.Since(start).Seconds())
			d.computed.WithLabelValues(j.kind).Inc()
			d.record(api.Digest{Index: j.index, Digest: sum, Kind: j.kind})
		}
	}
}

// record keeps a digest, oldest dropped first. Two digests of one index
// on this node must agree: if they do not, its own Apply is not
// deterministic, which is logged.
func (d *digester) record(g api.Digest) {
	d.mu.Lock()
	defer d.mu.Unlock()
	i := sort.Search(len(d.ring), func(i int) bool { return d.ring[i].Index >= g.Index })
	if i < len(d.ring) && d.ring[i].Index == g.Index {
		if d.ring[i].Digest != g.Digest {
			d.log.Error("two digests of the same index differ on this node", "index", g.Index,
				"first", d.ring[i].Digest, "first_kind", d.ring[i].Kind, "second", g.Digest, "second_kind", g.Kind)
		}
		return
	}
	d.ring = append(d.ring, api.Digest{})
	copy(d.ring[i+1:], d.ring[i:])
	d.ring[i] = g
	if len(d.ring) > digestRing {
		d.ring = append(d.ring[:0], d.ring[len(d.ring)-digestRing:]...)
	}
}

// since returns the digests above index after (all with after 0), or the
// one at exactly index at when at is not 0.
func (d *digester) since(after, at uint64) []api.Digest {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := []api.Digest{}
	for _, g := range d.ring {
		if g.Index > after && (at == 0 || g.Index == at) {
			out = append(out, g)
		}
	}
	return out
}

func (d *digester) last() *api.Digest {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.ring) == 0 {
		return nil
	}
	g := d.ring[len(d.ring)-1]
	return &g
}

// Snapshot digests the state it captures (on the FSM goroutine: one
// atomic load; the hash runs on the worker).
func (t *trackedFSM) Snapshot() (raft.FSMSnapshot, error) {
	st := t.FSM.State()
	snap, err := t.FSM.Snapshot()
	if err == nil {
		t.logBytes.snapshotTaken()
	}
	if err == nil && t.digests != nil && !t.digests.off && st.Index() > 0 {
		t.digests.enqueue(digestJob{index: st.Index(), kind: api.DigestSnapshot, state: st})
	}
	return snap, err
}

// Restore digests the state it read: at an agreed point as such, else as
// a restore digest.
func (t *trackedFSM) Restore(rc io.ReadCloser) error {
	if err := t.FSM.Restore(rc); err != nil {
		return err
	}
	t.logBytes.snapshotTaken() // the log behind an installed snapshot is gone
	if d := t.digests; d != nil && !d.off {
		st := t.FSM.State()
		kind := api.DigestRestore
		if d.every > 0 && st.Index()%d.every == 0 && fsm.DigestAgreed(st.Index(), d.every, st) {
			kind = api.DigestInterval
		}
		if st.Index() > 0 {
			d.enqueue(digestJob{index: st.Index(), kind: kind, state: st})
		}
	}
	return nil
}

// memberAgreement is what the leader knows of one member's digests.
type memberAgreement struct {
	api.ShadowStatus
	after uint64 // highest digest index received
}

// collector is the leader's comparison of the members' digests.
type collector struct {
	mu      sync.Mutex
	reports map[uint64]map[string]string // index -> member -> digest
	checked map[uint64]map[string]bool
	noMajor map[uint64]bool
	members map[string]*memberAgreement
	term    uint64

	compared   atomic.Uint64
	mismatches atomic.Uint64
	lastAgreed atomic.Uint64

	mismatchTotal *prometheus.CounterVec
	comparedTotal prometheus.Counter
}

func newCollector() *collector {
	c := &collector{}
	c.reset(0)
	c.mismatchTotal = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "coordd_state_digest_mismatches_total",
		Help: "On the leader: members whose digest at an agreed index differed from the majority's, by member."}, []string{"member"})
	c.comparedTotal = prometheus.NewCounter(prometheus.CounterOpts{Name: "coordd_state_digest_comparisons_total",
		Help: "On the leader: member digests compared with the majority's at an agreed index."})
	return c
}

// reset forgets everything (a new term: this node just became leader).
func (c *collector) reset(term uint64) {
	c.reports, c.checked, c.noMajor = map[uint64]map[string]string{}, map[uint64]map[string]bool{}, map[uint64]bool{}
	c.members, c.term = map[string]*memberAgreement{}, term
}

// mismatch is one member found to differ.
type mismatch struct {
	index            uint64
	member           string
	digest, expected string
	agreeing         []string
}

// add records a member's digests.
func (c *collector) add(member string, ds []api.Digest) {
	m := c.members[member]
	if m == nil {
		return
	}
	for _, g := range ds {
		r := c.reports[g.Index]
		if r == nil {
			r = map[string]string{}
			c.reports[g.Index] = r
		}
		r[member] = g.Digest
		m.after = max(m.after, g.Index)
	}
}

// compare checks every member's digests against the quorum's, returning
// the mismatches found now. voters is the number of voters (the quorum is
// a majority of them); known are the members to expect.
func (c *collector) compare(voters int, known map[string]bool, log hclog.Logger) []mismatch {
	quorum := voters/2 + 1
	var out []mismatch
	idx := make([]uint64, 0, len(c.reports))
	for i := range c.reports {
		idx = append(idx, i)
	}
	sort.Slice(idx, func(a, b int) bool { return idx[a] < idx[b] })
	if len(idx) > digestWindow {
		for _, i := range idx[:len(idx)-digestWindow] {
			delete(c.reports, i)
			delete(c.checked, i)
			delete(c.noMajor, i)
		}
		idx = idx[len(idx)-digestWindow:]
	}
	for _, i := range idx {
		r := c.reports[i]
		count := map[string]int{}
		for _, g := range r {
			count[g]++
		}
		ref := ""
		for g, n := range count {
			if n >= quorum {
				ref = g
			}
		}
		if ref == "" {
			if len(count) > 1 && len(r) >= len(known) && !c.noMajor[i] {
				c.noMajor[i] = true
				log.Error("state digests differ and no majority agrees: cannot tell which member is odd", "index", i, "digests", r)
			}
			continue
		}
		chk := c.checked[i]
		if chk == nil {
			chk = map[string]bool{}
			c.checked[i] = chk
		}
		var agreeing []string
		for mem, g := range r {
			if g == ref {
				agreeing = append(agreeing, mem)
			}
		}
		sort.Strings(agreeing)
		allAgree := true
		for mem, g := range r {
			if g != ref {
				allAgree = false
			}
			if chk[mem] {
				continue
			}
			chk[mem] = true
			c.compared.Add(1)
			c.comparedTotal.Inc()
			m := c.members[mem]
			if m == nil {
				continue
			}
			m.Compared++
			if m.FirstIndex == 0 || i < m.FirstIndex {
				m.FirstIndex = i
			}
			if g == ref {
				m.Agreed++
				if i > m.LastAgreedIndex {
					m.LastAgreedIndex = i
				}
				continue
			}
			m.Mismatches++
			c.mismatches.Add(1)
			c.mismatchTotal.WithLabelValues(mem).Inc()
			out = append(out, mismatch{index: i, member: mem, digest: g, expected: ref, agreeing: agreeing})
		}
		if allAgree && len(r) >= len(known) && i > c.lastAgreed.Load() {
			c.lastAgreed.Store(i)
		}
	}
	return out
}

// runDigests runs the digest worker, and on the leader the collection
// and comparison; on every node it keeps the refuse mode in step with the
// alarms.
func (s *Server) runDigests() {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.digests.run(s.stop)
	}()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.runAlarmWatch()
	}()
	if s.cfg.DigestsOff {
		return
	}
	tick := time.NewTicker(s.cfg.DigestPoll)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
		if s.raft.State() != raft.Leader || !s.leaderReady.Load() {
			continue
		}
		s.collectDigests()
	}
}

// collectDigests asks every member for its new digests and compares.
func (s *Server) collectDigests() {
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	c := s.collector
	c.mu.Lock()
	if term := s.raft.CurrentTerm(); term != c.term {
		c.reset(term)
	}
	voters, known := 0, map[string]bool{}
	type ask struct {
		id, addr string
		after    uint64
	}
	var asks []ask
	for _, srv := range f.Configuration().Servers {
		id := string(srv.ID)
		known[id] = true
		m := c.members[id]
		if m == nil {
			m = &memberAgreement{ShadowStatus: api.ShadowStatus{Member: id}}
			c.members[id] = m
		}
		m.Voter = srv.Suffrage == raft.Voter
		if m.Voter {
			voters++
		}
		if id != s.cfg.NodeID {
			asks = append(asks, ask{id: id, addr: s.httpAddrOf(id), after: m.after})
		}
	}
	for id := range c.members {
		if !known[id] {
			delete(c.members, id)
		}
	}
	if self := c.members[s.cfg.NodeID]; self != nil {
		self.AppliedIndex, self.ApplyErrors = s.applied.load(), s.digests.applyErrors.Load()
		c.add(s.cfg.NodeID, s.digests.since(self.after, 0))
	}
	c.mu.Unlock()

	// Ask the others in parallel, without the lock.
	type answer struct {
		id  string
		ds  *api.Digests
		err error
	}
	answers := make(chan answer, len(asks))
	for _, a := range asks {
		go func() {
			ds, err := s.fetchDigests(a.addr, a.after)
			answers <- answer{id: a.id, ds: ds, err: err}
		}()
	}
	leaderApplied := s.applied.load()
	got := make([]answer, 0, len(asks))
	for range asks {
		got = append(got, <-answers)
	}

	c.mu.Lock()
	for _, a := range got {
		m := c.members[a.id]
		if m == nil {
			continue
		}
		if a.err != nil {
			m.Error = a.err.Error()
			continue
		}
		m.Error = ""
		m.Shadow, m.AppliedIndex, m.ApplyErrors = a.ds.Shadow, a.ds.AppliedIndex, a.ds.ApplyErrors
		m.LagEntries = 0
		if leaderApplied > a.ds.AppliedIndex {
			m.LagEntries = leaderApplied - a.ds.AppliedIndex
		}
		c.add(a.id, a.ds.Digests)
	}
	found := c.compare(voters, known, s.log.Named("digest"))
	c.mu.Unlock()

	st := s.fsm.State()
	for _, mm := range found {
		s.log.Error("state digest mismatch: a member's state differs from the majority's",
			"index", mm.index, "member", mm.member, "digest", mm.digest, "expected", mm.expected,
			"agreeing", strings.Join(mm.agreeing, ","))
		if _, ok := st.Alarm(mm.member); ok {
			continue
		}
		p := fsm.AlarmRaise{Alarm: fsm.Alarm{Member: mm.member, Kind: fsm.AlarmDigestMismatch, Index: mm.index,
			Digest: mm.digest, Expected: mm.expected, Detail: "agreeing: " + strings.Join(mm.agreeing, ",")}}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if _, err := s.propose(ctx, p); err != nil {
			s.log.Error("could not commit the alarm; retrying at the next comparison", "member", mm.member, "error", err)
			// Let the next round find it again.
			c.mu.Lock()
			if chk := c.checked[mm.index]; chk != nil {
				delete(chk, mm.member)
			}
			c.mu.Unlock()
		}
		cancel()
	}
}

// fetchDigests asks a member at addr for its digests above after.
func (s *Server) fetchDigests(addr string, after uint64) (*api.Digests, error) {
	if addr == "" {
		return nil, errors.New("no HTTP address known")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s://%s/v1/digests?after=%d", s.httpScheme(), addr, after), nil)
	if err != nil {
		return nil, err
	}
	resp, err := s.peerClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("GET /v1/digests: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	var ds api.Digests
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&ds); err != nil {
		return nil, fmt.Errorf("GET /v1/digests: %w", err)
	}
	return &ds, nil
}

// localDigests is this node's answer to GET /v1/digests.
func (s *Server) localDigests(after, at uint64) api.Digests {
	return api.Digests{Member: s.cfg.NodeID, Shadow: s.cfg.Shadow, AppliedIndex: s.applied.load(), CommitIndex: s.raft.CommitIndex(),
		Interval: s.cfg.DigestInterval, Digests: s.digests.since(after, at), ApplyErrors: s.digests.applyErrors.Load(),
		Skipped: s.digests.skipped.Load()}
}

// shadowStatus is the leader's view of the members (non-voters only
// unless all).
func (s *Server) shadowStatus(all bool) api.ShadowStatusList {
	c := s.collector
	c.mu.Lock()
	defer c.mu.Unlock()
	out := api.ShadowStatusList{Leader: s.cfg.NodeID, AppliedIndex: s.applied.load(), Members: []api.ShadowStatus{}}
	for _, m := range c.members {
		if !all && m.Voter {
			continue
		}
		st := m.ShadowStatus
		if st.LastAgreedIndex > st.FirstIndex {
			st.AgreedEntries = st.LastAgreedIndex - st.FirstIndex
		}
		st.ReadsCompared, st.ReadsDiffered = s.readShadow.counts(m.Member)
		out.Members = append(out.Members, st)
	}
	sort.Slice(out.Members, func(i, j int) bool {
		a, b := out.Members[i], out.Members[j]
		if a.Shadow != b.Shadow {
			return a.Shadow
		}
		return a.Member < b.Member
	})
	return out
}

// integrityStatus fills the integrity part of /v1/status.
func (s *Server) integrityStatus(st *api.Status) {
	st.Integrity = &api.IntegrityStatus{CorruptCheck: s.cfg.CorruptCheck, Refusing: s.refusing.Load(), Shadow: s.cfg.Shadow,
		Interval: s.cfg.DigestInterval, LastDigest: s.digests.last(),
		Compared: s.collector.compared.Load(), Mismatches: s.collector.mismatches.Load(), LastAgreedIndex: s.collector.lastAgreed.Load()}
	st.Alarms = alarmsJSON(s.fsm.State().Alarms())
}

func alarmsJSON(as []fsm.Alarm) []api.Alarm {
	out := make([]api.Alarm, 0, len(as))
	for _, a := range as {
		out = append(out, api.Alarm{Member: a.Member, Kind: a.Kind.String(), Index: a.Index, Digest: a.Digest, Expected: a.Expected,
			Detail: a.Detail, RaisedIndex: a.RaisedIndex, RaisedAt: time.Unix(0, a.RaisedStamp).UTC()})
	}
	return out
}

// registerDigestMetrics adds the digest metrics to reg.
func (s *Server) registerDigestMetrics(reg *prometheus.Registry) error {
	cs := append(s.readShadow.collectors(),
		s.digests.computed, s.digests.skips, s.digests.seconds, s.collector.mismatchTotal, s.collector.comparedTotal,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "coordd_state_digest_mismatch",
			Help: "Members named by a digest-mismatch alarm (replicated: the same on every member; 0 when all agree)."},
			func() float64 { return float64(len(s.fsm.State().Alarms())) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "coordd_state_digest_index",
			Help: "Index of this node's latest replica digest."},
			func() float64 {
				if g := s.digests.last(); g != nil {
					return float64(g.Index)
				}
				return 0
			}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "coordd_state_refusing",
			Help: "1 while this node refuses to serve because an alarm names it (-corrupt-check=refuse)."},
			func() float64 { return b2f(s.refusing.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "coordd_shadow",
			Help: "1 on a shadow member (coordd -shadow)."},
			func() float64 { return b2f(s.cfg.Shadow) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "coordd_apply_lag_entries",
			Help: "Entries committed (as this node knows) but not yet applied here; on a shadow, its apply lag."},
			func() float64 {
				c, a := s.raft.CommitIndex(), s.applied.load()
				if c > a {
					return float64(c - a)
				}
				return 0
			}),
	)
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("server: register digest metrics: %w", err)
		}
	}
	return nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
