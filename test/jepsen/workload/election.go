package workload

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/test/jepsen/check"
	"github.com/coordd/coordd/test/jepsen/history"
)

// Election workload parameters.
const (
	// ElectionName is the election the election workload campaigns on.
	ElectionName = "jepsen-election"
	// electionTTL is the TTL of the candidates' leases.
	electionTTL        = 2 * time.Second
	electionCandidates = 3
	// electionWait is how long a campaign waits to lead.
	electionWait = 2 * time.Second
	// electionHoldMax bounds how long a leader holds before it resigns.
	electionHoldMax = 500 * time.Millisecond
	// electionProclaimChance is the chance that a leader proclaims a new
	// value while it holds.
	electionProclaimChance = 0.3
	// electionAbandonChance is the chance that a leader, instead of
	// resigning, abandons its lease (a holder that crashed): no more
	// keepalives, no resign, no revoke; the lease expires after its TTL
	// and the next candidate leads.
	electionAbandonChance = 0.1
	// observeWait is the wait of an observer's blocking query.
	observeWait = 5 * time.Second
	// anchorTTL is the TTL of the lease of the last campaign of a run,
	// which is left holding the election so that the final state has a
	// leader whose durability is checked: long enough to outlive the heal
	// and the final reads.
	anchorTTL = 10 * time.Minute
	// electionMaxIterations bounds each candidate's and observer's loop.
	electionMaxIterations = 100000
	// Process ids: candidates from electionProcessBase, the anchor after
	// them, observers (one per node) from observerProcessBase.
	electionProcessBase = 2000
	observerProcessBase = 2100
)

// Lease bounds from docs/api.md, "Lease and failover bounds".
const (
	// LeaseCheckpointInterval is the server's LeaseCheckpointInterval.
	LeaseCheckpointInterval = 5 * time.Second
	// LeaseExtension is the extension a new leader gives every lease: 2 ×
	// the default election timeout.
	LeaseExtension = 600 * time.Millisecond
	// FailoverTime is the documented failover time ("about half a second"
	// with the default Raft timing), rounded up.
	FailoverTime = time.Second
)

// LeaseBound is docs/api.md's bound on when a lease of ttl that its holder
// stopped keeping alive expires, however many leader changes happen:
// TTL + LeaseCheckpointInterval + failover time + extension.
func LeaseBound(ttl time.Duration) time.Duration {
	return ttl + LeaseCheckpointInterval + FailoverTime + LeaseExtension
}

// election is the election workload: candidates with their own leases,
// kept alive, campaign with a value naming them, hold for a random time
// (sometimes proclaiming a new value), resign with their token and start
// again; one observer per node follows the election with blocking queries
// sent to that node, and records every answer as an observe op.
type election struct {
	// lapsed and lost are the leases whose keepalives lapsed (a TTL
	// without a successful keepalive) or that a keepalive found gone:
	// check.Durability cannot demand them.
	mu        sync.Mutex
	abandoned map[uint64]bool
	lapsed    map[uint64]bool
	lost      map[uint64]bool
	strict    bool
	// observers are the observer processes and their nodes.
	observers map[int]string
}

// Election returns the election workload: candidates campaign, hold,
// sometimes proclaim, resign (or abandon their lease, as a crashed holder
// would), while one observer per node watches; checked with check.Election
// (slack: LeaseBound of the candidates' TTL) and check.Durability of the
// leases and leaderships (see StrictLeaseDurability).
func Election() Workload {
	return &election{abandoned: map[uint64]bool{}, lapsed: map[uint64]bool{}, lost: map[uint64]bool{}, observers: map[int]string{}}
}

// StrictLeaseDurability returns w with a stricter durability check, for
// scenarios whose faults cannot expire a lease that is kept alive in time
// (no lease-clock jumps or rate changes): then a lease that a keepalive
// found gone although its keepalives never lapsed is checked like any
// other, and its loss is an anomaly. By default such leases are left out
// (with a note), since a clock fault may rightly expire them. Workloads
// other than Election are returned as they are.
func StrictLeaseDurability(w Workload) Workload {
	if e, ok := w.(*election); ok {
		e.strict = true
	}
	return w
}

func (w *election) Name() string { return "election" }

func (w *election) LeaseTTL() time.Duration { return electionTTL }

// Slack is the staleness allowed to an observation by the election check:
// the lease bound of the candidates' leases.
func (w *election) Slack() time.Duration { return LeaseBound(electionTTL) }

type electionStats struct {
	mu                                                     sync.Mutex
	campaigns, led, proclaims, resigns, abandons, observes int
}

func (s *electionStats) add(f *int) {
	s.mu.Lock()
	*f++
	s.mu.Unlock()
}

func (w *election) Run(ctx context.Context, env Env) error {
	if len(env.Nodes) == 0 {
		return fmt.Errorf("election: no nodes")
	}
	c := newHTTPClient()
	defer c.CloseIdleConnections()
	var st electionStats
	// Observers run until the candidates are done and the anchor
	// campaigned, and a moment more to see the last change.
	octx, ostop := context.WithCancel(context.WithoutCancel(ctx))
	defer ostop()
	var owg sync.WaitGroup
	for i, node := range env.Nodes {
		p := observerProcessBase + i
		w.mu.Lock()
		w.observers[p] = node
		w.mu.Unlock()
		owg.Add(1)
		go func() {
			defer owg.Done()
			w.observer(octx, env, c, p, node, &st)
		}()
	}
	var cwg sync.WaitGroup
	for i := range electionCandidates {
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			w.candidate(ctx, env, c, electionProcessBase+i, newRNG(env.Seed, uint64(300+i)), &st)
		}()
	}
	cwg.Wait()
	w.anchor(context.WithoutCancel(ctx), env, c, electionProcessBase+electionCandidates, newRNG(env.Seed, 399))
	sleep(octx, time.Second)
	ostop()
	owg.Wait()
	env.logf("election: %d campaigns, %d led, %d proclaims, %d resigns, %d leases abandoned by their leader, %d observations",
		st.campaigns, st.led, st.proclaims, st.resigns, st.abandons, st.observes)
	return nil
}

// candidate campaigns, holds, resigns, again, until ctx is done; then it
// gives up its lease.
func (w *election) candidate(ctx context.Context, env Env, c *http.Client, p int, g *rng, st *electionStats) {
	rctx := context.WithoutCancel(ctx)
	var lease uint64
	var k *keeper
	// drop stops keeping the lease alive and, with revoke, revokes it
	// (retrying answers that say nothing was done). A lease that is
	// neither revoked nor lost is left to expire: it is noted as
	// abandoned, and so are lost and lapsed leases, for Check.
	drop := func(revoke bool) {
		if k == nil {
			return
		}
		k.halt()
		lost, lapsed := k.state()
		abandoned := !lost
		for try := 0; revoke && !lost && try < 10; try++ {
			status, code := revokeLease(rctx, env, c, g, p, lease)
			if status != history.StatusFail {
				abandoned = false
				break
			}
			if code == api.CodeLeaseNotFound {
				lost = true
				break
			}
			sleep(rctx, 200*time.Millisecond)
		}
		w.mu.Lock()
		if lost {
			w.lost[lease] = true
		}
		if lapsed {
			w.lapsed[lease] = true
		}
		if abandoned {
			w.abandoned[lease] = true
		}
		w.mu.Unlock()
		lease, k = 0, nil
	}
	defer drop(true)
	for it := 0; it < electionMaxIterations && ctx.Err() == nil; it++ {
		if k != nil {
			if lost, _ := k.state(); lost {
				drop(false)
			}
		}
		if k == nil {
			var granted time.Time
			lease, granted = grantLease(rctx, env, c, g, p, electionTTL)
			if lease == 0 {
				sleep(ctx, 100*time.Millisecond)
				continue
			}
			k = newKeeper(env, c, g, lease, electionTTL, granted)
			k.start(rctx)
		}
		value := fmt.Sprintf("c%d-%d", p, it)
		st.add(&st.campaigns)
		token, status, code := campaign(rctx, env, c, g, p, lease, value, electionWait)
		switch {
		case token != 0:
			st.add(&st.led)
		case code == api.CodeLeaseLost || code == api.CodeLeaseNotFound:
			k.markLost()
			drop(false)
			continue
		case status == history.StatusFail && notDone[code]:
			sleep(ctx, 100*time.Millisecond)
			continue
		default:
			// Queued, or an outcome not known: the lease may lead
			// later. Revoking it ends any such leadership.
			drop(true)
			continue
		}
		sleep(ctx, g.duration(0, electionHoldMax))
		if g.float() < electionProclaimChance {
			st.add(&st.proclaims)
			proclaim(rctx, env, c, g, p, lease, token, value+"-proclaimed")
			sleep(ctx, g.duration(0, electionHoldMax))
		}
		if g.float() < electionAbandonChance {
			st.add(&st.abandons)
			drop(false)
			continue
		}
		st.add(&st.resigns)
		if resign(rctx, env, c, g, p, lease, token) != history.StatusOK {
			drop(true)
		}
	}
}

// anchor is the run's last campaign: a lease that outlives the test leads
// (or waits), so that the final state has a leader to check.
func (w *election) anchor(ctx context.Context, env Env, c *http.Client, p int, g *rng) {
	lease, _ := grantLease(ctx, env, c, g, p, anchorTTL)
	if lease == 0 {
		return
	}
	campaign(ctx, env, c, g, p, lease, fmt.Sprintf("anchor-%d", p), electionWait)
}

// campaign records one campaign of lease with value; it returns the token
// if the lease leads, and the op's status and error code.
func campaign(ctx context.Context, env Env, c *http.Client, g *rng, p int, lease uint64, value string, wait time.Duration) (uint64, history.Status, string) {
	node := env.Nodes[g.intN(len(env.Nodes))]
	op := history.Op{Process: p, Kind: history.KindCampaign, Key: ElectionName, Node: nodeName(node), In: history.Values{Lease: lease, Value: value}}
	op.Call = env.Rec.Now()
	r := do(ctx, c, http.MethodPost, node, "/v1/elections/"+ElectionName+"/campaign",
		api.CampaignRequest{Lease: lease, Value: value, Wait: wait.String()}, wait+blockingMargin)
	op.Return = env.Rec.Now()
	op.Status, op.Error = r.outcome(true)
	if r.ok() {
		var res api.CampaignResponse
		if err := r.decode(&res); err != nil {
			op.Status, op.Error = history.StatusUnknown, "bad_answer"
		} else if res.Leader && res.Token != 0 {
			op.Out = history.Values{Leader: true, Token: res.Token}
		}
	}
	env.record(op)
	return op.Out.Token, op.Status, op.Error
}

func proclaim(ctx context.Context, env Env, c *http.Client, g *rng, p int, lease, token uint64, value string) history.Status {
	node := env.Nodes[g.intN(len(env.Nodes))]
	op := history.Op{Process: p, Kind: history.KindProclaim, Key: ElectionName, Node: nodeName(node), In: history.Values{Lease: lease, Token: token, Value: value}}
	op.Call = env.Rec.Now()
	r := do(ctx, c, http.MethodPost, node, "/v1/elections/"+ElectionName+"/proclaim",
		api.HolderRequest{Lease: lease, Token: token, Value: value}, requestTimeout)
	op.Return = env.Rec.Now()
	op.Status, op.Error = r.outcome(true)
	env.record(op)
	return op.Status
}

func resign(ctx context.Context, env Env, c *http.Client, g *rng, p int, lease, token uint64) history.Status {
	node := env.Nodes[g.intN(len(env.Nodes))]
	op := history.Op{Process: p, Kind: history.KindResign, Key: ElectionName, Node: nodeName(node), In: history.Values{Lease: lease, Token: token}}
	op.Call = env.Rec.Now()
	r := do(ctx, c, http.MethodPost, node, "/v1/elections/"+ElectionName+"/resign",
		api.HolderRequest{Lease: lease, Token: token}, requestTimeout)
	op.Return = env.Rec.Now()
	op.Status, op.Error = r.outcome(true)
	env.record(op)
	return op.Status
}

// observer follows the election through node with blocking queries until
// ctx is done, recording every answer.
func (w *election) observer(ctx context.Context, env Env, c *http.Client, p int, node string, st *electionStats) {
	var index uint64
	for it := 0; it < electionMaxIterations && ctx.Err() == nil; it++ {
		op, idx := observe(ctx, env, c, p, node, index, observeWait)
		if ctx.Err() != nil && op.Status != history.StatusOK {
			return // cut short by the end of the run: says nothing
		}
		env.record(op)
		if op.Status == history.StatusOK {
			st.add(&st.observes)
			index = idx
			continue
		}
		if !sleep(ctx, 100*time.Millisecond) {
			return
		}
	}
}

// observe makes one observation of the election through node: a blocking
// query past index (0: an immediate read). The op's Call is when the
// request was sent. It returns the index to block on next.
func observe(ctx context.Context, env Env, c *http.Client, p int, node string, index uint64, wait time.Duration) (history.Op, uint64) {
	op := history.Op{Process: p, Kind: history.KindObserve, Key: ElectionName, Node: nodeName(node)}
	path := "/v1/elections/" + ElectionName
	timeout := requestTimeout
	if index != 0 {
		path += "?index=" + strconv.FormatUint(index, 10) + "&wait=" + wait.String()
		timeout = wait + wait/16 + blockingMargin
	}
	op.Call = env.Rec.Now()
	r := do(ctx, c, http.MethodGet, node, path, nil, timeout)
	op.Return = env.Rec.Now()
	op.Status, op.Error = r.outcome(false)
	var next uint64
	if r.ok() {
		var e api.Election
		if err := r.decode(&e); err != nil {
			op.Status, op.Error = history.StatusFail, "bad_answer"
		} else {
			h := holderOf(e)
			op.Out = history.Values{Leader: h.Token != 0, Lease: h.Lease, Value: h.Value, Token: h.Token}
			next = e.Index
			if s := r.header.Get(api.HeaderIndex); s != "" {
				if v, err := strconv.ParseUint(s, 10, 64); err == nil {
					next = v
				}
			}
		}
	}
	return op, next
}

// Final reads the election's holder and the leases, then has every
// observer observe once more through its node, until all agree with the
// holder read (which a lease expiring after the run may still change).
func (w *election) Final(ctx context.Context, env Env) (history.FinalState, error) {
	if len(env.Nodes) == 0 {
		return history.FinalState{}, fmt.Errorf("election: no nodes")
	}
	c := newHTTPClient()
	defer c.CloseIdleConnections()
	w.mu.Lock()
	observers := make(map[int]string, len(w.observers))
	for p, n := range w.observers {
		observers[p] = n
	}
	w.mu.Unlock()
	var final history.FinalState
	var err error
	deadline := time.Now().Add(finalTimeout)
	for round := 0; ; round++ {
		final, err = w.readFinal(ctx, env, c)
		if err != nil {
			return history.FinalState{}, err
		}
		want := final.Elections[ElectionName]
		agree := true
		for p := range len(env.Nodes) {
			p += observerProcessBase
			node, ok := observers[p]
			if !ok {
				continue
			}
			var op history.Op
			retry(ctx, func() bool {
				op, _ = observe(ctx, env, c, p, node, 0, 0)
				env.record(op)
				return op.Status == history.StatusOK
			})
			got := history.Holder{}
			if op.Out.Leader {
				got = history.Holder{Lease: op.Out.Lease, Value: op.Out.Value, Token: op.Out.Token}
			}
			if got != want {
				agree = false
			}
		}
		if agree || time.Now().After(deadline) || ctx.Err() != nil {
			if !agree {
				env.logf("election: the observers did not agree with the final state %+v within %s", want, finalTimeout)
			}
			return final, nil
		}
		sleep(ctx, 500*time.Millisecond)
	}
}

func (w *election) readFinal(ctx context.Context, env Env, c *http.Client) (history.FinalState, error) {
	h, err := readHolder(ctx, env, c, "/v1/elections/"+ElectionName)
	if err != nil {
		return history.FinalState{}, fmt.Errorf("election: %w", err)
	}
	final := history.FinalState{Elections: map[string]history.Holder{}, Leases: []uint64{}}
	if h.Token != 0 {
		final.Elections[ElectionName] = h
	}
	var last reply
	attempt := 0
	ok := retry(ctx, func() bool {
		attempt++
		last = do(ctx, c, http.MethodGet, env.Nodes[attempt%len(env.Nodes)], "/v1/leases", nil, requestTimeout)
		if !last.ok() {
			return false
		}
		var ls []api.Lease
		if err := last.decode(&ls); err != nil {
			return false
		}
		for _, l := range ls {
			final.Leases = append(final.Leases, l.ID)
		}
		return true
	})
	if !ok {
		return history.FinalState{}, fmt.Errorf("election: final read of the leases: %s %v", last.code(), last.err)
	}
	return final, nil
}

func (w *election) Check(ops []history.Op, final history.FinalState, outDir string) []check.Result {
	w.mu.Lock()
	excluded := make(map[uint64]bool)
	for l := range w.abandoned {
		excluded[l] = true
	}
	for l := range w.lapsed {
		excluded[l] = true
	}
	lost := 0
	if !w.strict {
		for l := range w.lost {
			if !excluded[l] {
				lost++
			}
			excluded[l] = true
		}
	}
	w.mu.Unlock()
	var mine, durable []history.Op
	dropped := 0
	for _, op := range ops {
		if op.Process < electionProcessBase || op.Process >= observerProcessBase+100 {
			continue
		}
		switch op.Kind {
		case history.KindCampaign, history.KindResign, history.KindProclaim, history.KindObserve:
			if op.Key != ElectionName {
				continue
			}
		case history.KindLeaseGrant, history.KindLeaseRevoke:
		default:
			continue
		}
		mine = append(mine, op)
		lease := op.In.Lease
		if op.Kind == history.KindLeaseGrant {
			lease = op.Out.Lease
		}
		if excluded[lease] && (op.Kind == history.KindLeaseGrant || op.Kind == history.KindCampaign) {
			dropped++
			continue
		}
		durable = append(durable, op)
	}
	el := check.Election(mine, final, w.Slack())
	// The election's final holder and the leases are all Durability
	// needs of the final state: no KV.
	df := history.FinalState{Leases: final.Leases, Elections: final.Elections}
	d := check.Durability(durable, df)
	if dropped > 0 {
		d.Notes = append(d.Notes, fmt.Sprintf("%d lease grants and campaigns of %d leases left out: leases abandoned on purpose, whose keepalives lapsed, or that a keepalive found gone (%d of them; StrictLeaseDurability checks these), which the cluster may rightly have expired",
			dropped, len(excluded), lost))
	}
	return []check.Result{el, d}
}
