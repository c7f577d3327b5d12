package lease

import (
	"math/rand/v2"
	"testing"
	"time"
)

// The failover simulation drives Lessors the way the server does, against a
// model of the replicated state (with epochs, conditional checkpoints and
// expiries) and of the Raft log (FIFO commit with latency; on a failover a
// prefix of the uncommitted entries commits and the rest is lost), with
// several nodes whose wall clocks may disagree. Holders keep their leases
// alive for a while and then stop. It checks
//
//   - safety: no lease's expiry commits before a deadline promised to its
//     holder by an acknowledged keepalive (or grant);
//   - the bound: a lease whose holder's last keepalive reached a leader at t
//     expires by t + TTL + CheckpointInterval + Extension (+ slack for
//     commit latency and election time when those are not zero).

type simConfig struct {
	seed             uint64
	nodes, leases    int
	ttl, ci, ext     time.Duration
	skew             time.Duration    // each node's wall clock is off by up to ±skew
	latency          time.Duration    // commit latency, up to
	gap              time.Duration    // election time, up to
	life             [2]time.Duration // a leader lives this long (min, max)
	hold             time.Duration    // a holder keeps alive for up to this long
	checkBound       bool
	boundSlack       time.Duration
	minFailovers     int
	checkpointsCount bool // expect checkpoints to be committed
}

type simProposal struct {
	kind     byte // 'g' grant, 'r' renew, 'c' checkpoint, 'x' expire
	id       uint64
	epoch    uint64
	rem      time.Duration
	stamp    int64
	sent     int64 // when the client sent the request (grant, renew)
	commitAt int64
	gen      int
}

type simHolder struct {
	ttl      time.Duration
	granted  bool
	lost     bool  // the lease expired (or keepalive said so)
	nextKA   int64 // next keepalive
	stopAt   int64 // stops keeping alive from then on
	lastKA   int64 // last keepalive that reached an active leader
	fo       int   // failovers before lastKA
	promised int64 // latest deadline acknowledged to the holder
	expired  int64 // when the expiry committed (0: not yet)
}

type sim struct {
	t   *testing.T
	cfg simConfig
	rng *rand.Rand
	clk *FakeClock

	offset  []int64   // wall clock offset of each node
	lessors []*Lessor // one per node

	state map[uint64]*Info
	index uint64
	log   []simProposal

	leader    int // -1 while there is none
	gen       int
	deathAt   int64
	promoteAt int64
	failovers int

	holders     map[uint64]*simHolder
	checkpoints int
	maxOver     time.Duration // largest expiry time beyond the bound's base t+TTL
}

func (s *sim) now() int64 { return int64(s.clk.Now().Sub(t0)) }

func (s *sim) wall(node int) int64 { return t0.UnixNano() + s.now() + s.offset[node] }

func (s *sim) rand(lo, hi time.Duration) int64 {
	if hi <= lo {
		return int64(lo)
	}
	return int64(lo) + s.rng.Int64N(int64(hi-lo)+1)
}

func (s *sim) propose(p simProposal) {
	p.gen = s.gen
	p.commitAt = s.now() + s.rand(0, s.cfg.latency)
	if n := len(s.log); n > 0 && s.log[n-1].commitAt > p.commitAt {
		p.commitAt = s.log[n-1].commitAt // the log commits in order
	}
	s.log = append(s.log, p)
}

// lessor returns the active leader's Lessor, or nil.
func (s *sim) lessor() *Lessor {
	if s.leader < 0 {
		return nil
	}
	return s.lessors[s.leader]
}

// apply applies one committed entry to the replicated state and, when its
// proposer still leads, tells its Lessor and answers the client.
func (s *sim) apply(p simProposal) {
	t := s.t
	now := s.now()
	l := s.lessor()
	live := l != nil && p.gen == s.gen // the proposer leads: hooks run and clients get answers
	info := s.state[p.id]
	h := s.holders[p.id]
	switch p.kind {
	case 'g':
		s.index++
		in := &Info{ID: p.id, TTL: h.ttl, Epoch: s.index}
		s.state[p.id] = in
		if live {
			l.Grant(*in)
			h.granted = true
			h.promised = p.sent + int64(h.ttl)
			h.nextKA = now + int64(h.ttl)/3
		}
	case 'r':
		if info == nil {
			return
		}
		s.index++
		info.Remaining, info.CheckpointStamp, info.Epoch = 0, 0, s.index
		if live {
			l.Renewed(p.id, s.index)
			h.promised = max(h.promised, p.sent+int64(h.ttl)) // acknowledged now
		}
	case 'c':
		if info == nil || info.Epoch != p.epoch {
			return // stale: ignored
		}
		s.index++
		// Stored in whole milliseconds, rounded down, as the server does.
		info.Remaining, info.CheckpointStamp, info.Epoch = max(p.rem.Truncate(time.Millisecond), time.Millisecond), p.stamp, s.index
		s.checkpoints++
		if live {
			l.Checkpointed(p.id, s.index)
		}
	case 'x':
		if info == nil || info.Epoch != p.epoch {
			return
		}
		s.index++
		delete(s.state, p.id)
		if live {
			l.Forget(p.id)
		}
		h.expired, h.lost = now, true
		if now < h.promised {
			t.Fatalf("lease %d expired at %v, %v before the deadline promised to its holder", p.id, time.Duration(now), time.Duration(h.promised-now))
		}
		over := time.Duration(now-h.lastKA) - h.ttl
		s.maxOver = max(s.maxOver, over)
		// Rounding remainders up to whole milliseconds adds at most 1ms per failover.
		bound := s.cfg.ci + s.cfg.ext + s.cfg.boundSlack + time.Duration(s.failovers-h.fo)*time.Millisecond
		if s.cfg.checkBound && over > bound {
			t.Fatalf("lease %d (TTL %v): last keepalive at %v, expired at %v: %v beyond TTL > bound %v (%d failovers)",
				p.id, h.ttl, time.Duration(h.lastKA), time.Duration(now), over, bound, s.failovers)
		}
	}
}

func (s *sim) failover() {
	// The leader dies: a prefix of its uncommitted entries commits anyway
	// (applied before the next leader's first entry of the term), the rest
	// is lost.
	s.lessors[s.leader].Demote()
	s.leader = -1
	keep := s.rng.IntN(len(s.log) + 1)
	for _, p := range s.log[:keep] {
		s.apply(p)
	}
	s.log = s.log[:0]
	s.failovers++
	s.promoteAt = s.now() + s.rand(0, s.cfg.gap)
}

func (s *sim) promote(node int) {
	s.leader = node
	s.gen++
	infos := make([]Info, 0, len(s.state))
	for _, in := range s.state {
		infos = append(infos, *in)
	}
	s.lessors[node].Promote(infos, s.wall(node))
	s.deathAt = s.now() + s.rand(s.cfg.life[0], s.cfg.life[1])
}

func (s *sim) duties() {
	l := s.lessor()
	if l == nil {
		return
	}
	for _, x := range l.Expired() {
		s.propose(simProposal{kind: 'x', id: x.ID, epoch: x.Epoch})
	}
	cps := l.DueCheckpoints()
	stamp := s.wall(s.leader) // read after DueCheckpoints returned
	for _, c := range cps {
		s.propose(simProposal{kind: 'c', id: c.ID, epoch: c.Epoch, rem: c.Remaining, stamp: stamp})
	}
}

func (s *sim) keepalives() {
	now := s.now()
	l := s.lessor()
	for id, h := range s.holders {
		if !h.granted || h.lost || now >= h.stopAt || h.nextKA > now {
			continue
		}
		if l == nil { // no leader: try again soon
			h.nextKA = now + int64(20*time.Millisecond)
			continue
		}
		_, needsCommit, err := l.Keepalive(id)
		if err != nil {
			h.lost = true // ErrExpired or ErrNotFound: the holder lost its lease
			continue
		}
		h.lastKA, h.fo = now, s.failovers
		if needsCommit {
			s.propose(simProposal{kind: 'r', id: id, sent: now})
		} else {
			h.promised = max(h.promised, now+int64(h.ttl))
		}
		h.nextKA = now + s.rand(h.ttl/4, h.ttl/3)
	}
}

func runSim(t *testing.T, cfg simConfig) *sim {
	s := &sim{
		t: t, cfg: cfg,
		rng:     rand.New(rand.NewPCG(cfg.seed, 0x1ea5e)),
		clk:     NewFakeClock(t0),
		state:   map[uint64]*Info{},
		holders: map[uint64]*simHolder{},
		leader:  -1,
	}
	for range cfg.nodes {
		s.offset = append(s.offset, s.rand(-cfg.skew, cfg.skew))
		s.lessors = append(s.lessors, New(Config{Clock: s.clk, Extension: cfg.ext, CheckpointInterval: cfg.ci, MaxBatch: 1 << 20}))
	}
	s.promote(0)
	s.deathAt = max(s.deathAt, int64(cfg.latency)+1) // the grants commit
	for id := uint64(1); id <= uint64(cfg.leases); id++ {
		h := &simHolder{ttl: time.Duration(s.rand(cfg.ttl/2, cfg.ttl)), stopAt: s.rand(0, cfg.hold)}
		s.holders[id] = h
		s.propose(simProposal{kind: 'g', id: id, sent: s.now()})
	}
	limit := int64(cfg.hold + 20*(cfg.ttl+cfg.ci+cfg.ext+cfg.gap) + time.Minute)
	for {
		now := s.now()
		if now > limit {
			t.Fatalf("simulation did not finish: %d leases left", len(s.state))
		}
		// Apply what has committed.
		for len(s.log) > 0 && s.log[0].commitAt <= now {
			p := s.log[0]
			s.log = s.log[1:]
			s.apply(p)
		}
		if s.leader >= 0 && now >= s.deathAt {
			s.failover()
		}
		if s.leader < 0 && now >= s.promoteAt {
			s.promote((s.failovers + s.rng.IntN(cfg.nodes-1) + 1) % cfg.nodes)
		}
		s.keepalives()
		s.duties()

		done := len(s.state) == 0 && len(s.log) == 0
		for _, h := range s.holders {
			done = done && h.granted
		}
		if done {
			break
		}
		// Move the clock to the next event.
		next := int64(1<<63 - 1)
		if len(s.log) > 0 {
			next = s.log[0].commitAt
		}
		if s.leader >= 0 {
			next = min(next, s.deathAt)
			if at, ok := s.lessor().NextEvent(); ok {
				next = min(next, int64(at.Sub(t0)))
			}
		} else {
			next = min(next, s.promoteAt)
		}
		for _, h := range s.holders {
			if h.granted && !h.lost && h.nextKA < h.stopAt {
				next = min(next, h.nextKA)
			}
		}
		if next > now {
			s.clk.Advance(time.Duration(next - now))
		}
	}
	for id, h := range s.holders {
		if h.expired == 0 {
			t.Fatalf("lease %d never expired", id)
		}
	}
	if s.failovers < cfg.minFailovers {
		t.Fatalf("only %d failovers", s.failovers)
	}
	if cfg.checkpointsCount && s.checkpoints == 0 {
		t.Fatal("no checkpoint committed")
	}
	t.Logf("seed %d: %d failovers, %d checkpoints committed, latest expiry %v after last keepalive + TTL (bound %v)",
		cfg.seed, s.failovers, s.checkpoints, s.maxOver, cfg.ci+cfg.ext+cfg.boundSlack)
	return s
}

// TestFailoverBound: with clocks in sync, a lease whose holder stopped at t
// expires by t + TTL + CheckpointInterval + Extension however many
// failovers happen, as long as each leader lives long enough to commit the
// checkpoints it schedules on Promote. Instant commits and elections first,
// so the bound is exact; then with latency and election time.
func TestFailoverBound(t *testing.T) {
	base := simConfig{
		nodes: 3, leases: 40,
		ttl: 2 * sec, ci: 1 * sec, ext: 500 * ms,
		hold: 40 * sec, checkBound: true, checkpointsCount: true,
	}
	for _, tc := range []struct {
		name string
		mod  func(*simConfig)
	}{
		{"instant", func(c *simConfig) { c.life = [2]time.Duration{1, 3 * sec}; c.minFailovers = 15 }},
		// Leaders that live less than the extension: a dead lease is not
		// kept alive one Extension at a time.
		{"flapping", func(c *simConfig) { c.life = [2]time.Duration{1, 300 * ms}; c.minFailovers = 150 }},
		{"ttl-below-interval", func(c *simConfig) {
			c.ttl, c.ci = 800*ms, 2*sec
			c.life = [2]time.Duration{1, 3 * sec}
			c.minFailovers = 15
		}},
		{"latency", func(c *simConfig) {
			c.latency, c.gap = 20*ms, 300*ms
			c.life = [2]time.Duration{c.latency + 1, 3 * sec}
			c.boundSlack = 2*c.gap + 4*c.latency
			c.minFailovers = 15
		}},
	} {
		for seed := uint64(1); seed <= 3; seed++ {
			cfg := base
			cfg.seed = seed
			tc.mod(&cfg)
			t.Run(tc.name, func(t *testing.T) { runSim(t, cfg) })
		}
	}
}

// TestFailoverSafety: with wall clocks apart by less than the extension,
// commit latency, lost and late entries and failovers at any time, no
// expiry ever commits before the deadline promised to an acknowledged
// holder (the safety rule).
func TestFailoverSafety(t *testing.T) {
	for seed := uint64(1); seed <= 6; seed++ {
		cfg := simConfig{
			seed: seed, nodes: 5, leases: 40,
			ttl: 2 * sec, ci: 700 * ms, ext: 400 * ms,
			skew:    199 * ms, // any two nodes within 398ms < Extension
			latency: 40 * ms, gap: 300 * ms,
			life: [2]time.Duration{1, 2 * sec}, // some leaders die before anything commits
			hold: 30 * sec, minFailovers: 15, checkpointsCount: true,
		}
		if seed%2 == 0 {
			cfg.ci = 150 * ms // checkpoints racing keepalives
		}
		t.Run("", func(t *testing.T) { runSim(t, cfg) })
	}
	// Keepalives racing checkpoints in flight: slow commits, frequent
	// checkpoints, a small extension, holders that stop at any moment.
	for seed := uint64(1); seed <= 4; seed++ {
		cfg := simConfig{
			seed: seed, nodes: 3, leases: 150,
			ttl: 2 * sec, ci: 100 * ms, ext: 60 * ms,
			skew:    29 * ms,
			latency: 150 * ms, gap: 100 * ms,
			life: [2]time.Duration{1, 1500 * ms},
			hold: 10 * sec, minFailovers: 10, checkpointsCount: true,
		}
		t.Run("racing", func(t *testing.T) { runSim(t, cfg) })
	}
}

// TestFailoverWithoutCheckpointsIsUnbounded shows what the checkpoints are
// for: without them every failover restarts a dead lease at a full TTL, and
// a leader every 1-1.5s keeps a 2s lease alive forever; with them the same
// run expires every lease.
func TestFailoverWithoutCheckpointsIsUnbounded(t *testing.T) {
	cfg := simConfig{
		seed: 1, nodes: 3, leases: 10,
		ttl: 2 * sec, ci: -1, ext: 500 * ms,
		life: [2]time.Duration{sec, 1500 * ms},
	}
	if s := runFor(t, cfg, time.Minute); len(s.state) != cfg.leases {
		t.Fatalf("without checkpoints, %d of %d dead leases expired", cfg.leases-len(s.state), cfg.leases)
	}
	cfg.ci = sec
	if s := runFor(t, cfg, time.Minute); len(s.state) != 0 {
		t.Fatalf("with checkpoints, %d dead leases left", len(s.state))
	}
}

// runFor runs the simulation for d with holders that never keep alive and
// returns it, without requiring the leases to expire.
func runFor(t *testing.T, cfg simConfig, d time.Duration) *sim {
	s := &sim{
		t: t, cfg: cfg,
		rng:     rand.New(rand.NewPCG(cfg.seed, 0x1ea5e)),
		clk:     NewFakeClock(t0),
		state:   map[uint64]*Info{},
		holders: map[uint64]*simHolder{},
		leader:  -1,
	}
	for range cfg.nodes {
		s.offset = append(s.offset, 0)
		s.lessors = append(s.lessors, New(Config{Clock: s.clk, Extension: cfg.ext, CheckpointInterval: cfg.ci}))
	}
	s.promote(0)
	for id := uint64(1); id <= uint64(cfg.leases); id++ {
		s.holders[id] = &simHolder{ttl: cfg.ttl}
		s.propose(simProposal{kind: 'g', id: id, sent: s.now()})
	}
	for s.now() < int64(d) {
		for len(s.log) > 0 && s.log[0].commitAt <= s.now() {
			p := s.log[0]
			s.log = s.log[1:]
			s.apply(p)
		}
		if s.leader >= 0 && s.now() >= s.deathAt {
			s.failover()
		}
		if s.leader < 0 && s.now() >= s.promoteAt {
			s.promote((s.failovers + 1) % cfg.nodes)
		}
		s.duties()
		s.clk.Advance(10 * ms)
	}
	return s
}
