package workload

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/coordd/coordd/fencing"
	"github.com/coordd/coordd/httpapi"
	"github.com/coordd/coordd/test/jepsen/check"
	"github.com/coordd/coordd/test/jepsen/history"
)

// Fenced-lock workload parameters.
const (
	// LockName is the lock the fenced-lock workload takes, and the name of
	// the resource it protects.
	LockName = "jepsen-lock"
	// lockTTL is the TTL of the lock clients' leases.
	lockTTL     = time.Second
	lockClients = 4
	// lockWait is how long an acquire waits for the lock: longer than a
	// paused holder keeps it (1.5 × TTL plus the expiry).
	lockWait = 3 * time.Second
	// lockPauseChance is the chance that a holder pauses between its read
	// and its write, for a random time up to lockPauseMax.
	lockPauseChance = 0.3
	lockPauseMax    = lockTTL * 3 / 2
	// lockMaxIterations bounds each client's loop.
	lockMaxIterations = 10000
	// lockProcessBase is the first process id of the lock clients.
	lockProcessBase = 1000
)

// fencedLock is the fenced-lock workload: clients take the lock, read the
// resource with their token, sometimes pause (keepalives too) for up to
// 1.5 × TTL, write back what they read plus one element of their own with
// their token, release and revoke their lease.
type fencedLock struct {
	fenced bool
	res    *resource
}

// FencedLock returns the fenced-lock workload. With fenced, the resource is
// guarded by a fencing.Guard that checks the token of every read and write
// (a token below the highest one seen is refused); without, it accepts
// everything, and the history must show it (FencedLock's check must fail:
// pauses longer than the TTL make a deposed holder write over its
// successor's update).
func FencedLock(fenced bool) Workload {
	return &fencedLock{fenced: fenced, res: newResource(fenced)}
}

func (w *fencedLock) Name() string {
	if w.fenced {
		return "fenced-lock"
	}
	return "unfenced-lock"
}

func (w *fencedLock) LeaseTTL() time.Duration { return lockTTL }

// resource is the protected resource, held in the workload: a list of
// elements. One mutex covers the token check, the read or write and the
// Seq it gives every accepted access, as check.FencedLock assumes.
type resource struct {
	guard *fencing.Guard // nil: unfenced

	mu    sync.Mutex
	elems []string
	seq   uint64
}

func newResource(fenced bool) *resource {
	r := &resource{}
	if fenced {
		r.guard = fencing.NewGuard(fencing.NewMemoryStore())
	}
	return r
}

// errStale is the error code of a refused access.
const errStale = "stale_token"

func (r *resource) check(token uint64) error {
	if r.guard == nil {
		return nil
	}
	return r.guard.Check(context.Background(), LockName, fencing.Token(token))
}

// read returns the elements and the access's Seq, or an error if the token
// is refused.
func (r *resource) read(token uint64) ([]string, uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.check(token); err != nil {
		return nil, 0, err
	}
	r.seq++
	return slices.Clone(r.elems), r.seq, nil
}

// write replaces the elements, or returns an error if the token is refused.
func (r *resource) write(token uint64, elems []string) (uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.check(token); err != nil {
		return 0, err
	}
	r.seq++
	r.elems = slices.Clone(elems)
	return r.seq, nil
}

func (r *resource) snapshot() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string{}, r.elems...)
}

// lockStats counts what the clients did.
type lockStats struct {
	mu                                           sync.Mutex
	iterations, acquired, pauses, long, accepted int
	refused                                      int
}

func (w *fencedLock) Run(ctx context.Context, env Env) error {
	if len(env.Nodes) == 0 {
		return fmt.Errorf("%s: no nodes", w.Name())
	}
	c := newHTTPClient()
	defer c.CloseIdleConnections()
	var st lockStats
	var wg sync.WaitGroup
	for i := range lockClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.client(ctx, env, c, lockProcessBase+i, newRNG(env.Seed, uint64(200+i)), &st)
		}()
	}
	wg.Wait()
	env.logf("%s: %d iterations, %d acquired, %d pauses (%d longer than the TTL), %d writes accepted, %d refused",
		w.Name(), st.iterations, st.acquired, st.pauses, st.long, st.accepted, st.refused)
	return nil
}

// client runs one lock client until ctx is done.
func (w *fencedLock) client(ctx context.Context, env Env, c *http.Client, p int, g *rng, st *lockStats) {
	// An iteration started runs to its end (bounded by the timeouts and the
	// pause), so that its ops are not cut short.
	rctx := context.WithoutCancel(ctx)
	for it := 0; it < lockMaxIterations && ctx.Err() == nil; it++ {
		st.mu.Lock()
		st.iterations++
		st.mu.Unlock()
		lease, granted := grantLease(rctx, env, c, g, p, lockTTL)
		if lease == 0 {
			sleep(ctx, 100*time.Millisecond)
			continue
		}
		k := newKeeper(env, c, g, lease, lockTTL, granted)
		k.start(rctx)
		if token := w.acquire(rctx, env, c, g, p, lease); token != 0 {
			st.mu.Lock()
			st.acquired++
			st.mu.Unlock()
			w.critical(rctx, env, c, g, p, lease, token, k, st)
		} else {
			sleep(ctx, 50*time.Millisecond)
		}
		k.halt()
		revokeLease(rctx, env, c, g, p, lease)
	}
}

// acquire takes the lock for lease, waiting up to lockWait, and records
// the acquire op; it returns the token, or 0.
func (w *fencedLock) acquire(ctx context.Context, env Env, c *http.Client, g *rng, p int, lease uint64) uint64 {
	node := env.Nodes[g.intN(len(env.Nodes))]
	op := history.Op{Process: p, Kind: history.KindAcquire, Key: LockName, Node: nodeName(node), In: history.Values{Lease: lease}}
	op.Call = env.Rec.Now()
	r := do(ctx, c, http.MethodPost, node, "/v1/locks/"+LockName,
		httpapi.CampaignRequest{Lease: lease, Wait: lockWait.String()}, lockWait+blockingMargin)
	op.Return = env.Rec.Now()
	op.Status, op.Error = r.outcome(true)
	if r.ok() {
		var res httpapi.CampaignResponse
		switch err := r.decode(&res); {
		case err != nil:
			op.Status, op.Error = history.StatusUnknown, "bad_answer"
		case !res.Leader || res.Token == 0:
			// Still queued when the wait ran out: the lease may get
			// the lock later (until the client revokes it).
			op.Status, op.Error = history.StatusUnknown, "wait_expired"
		default:
			op.Out.Token = res.Token
		}
	}
	env.record(op)
	return op.Out.Token
}

// critical is the critical section: read, maybe pause, write back, release.
func (w *fencedLock) critical(ctx context.Context, env Env, c *http.Client, g *rng, p int, lease, token uint64, k *keeper, st *lockStats) {
	rd := history.Op{Process: p, Kind: history.KindResourceRead, Key: LockName, In: history.Values{Token: token}}
	rd.Call = env.Rec.Now()
	elems, seq, err := w.res.read(token)
	rd.Return = env.Rec.Now()
	if err != nil {
		rd.Status, rd.Error = history.StatusFail, accessError(err)
	} else {
		rd.Status, rd.Out = history.StatusOK, history.Values{Seq: seq, Values: elems}
	}
	env.record(rd)

	if g.float() < lockPauseChance {
		// The client's process pauses: no keepalive either.
		d := g.duration(0, lockPauseMax)
		st.mu.Lock()
		st.pauses++
		if d > lockTTL {
			st.long++
		}
		st.mu.Unlock()
		k.halt()
		time.Sleep(d)
		k.start(ctx)
	}

	if rd.Status == history.StatusOK {
		elem := fmt.Sprintf("p%d-%d", p, seq)
		wr := history.Op{Process: p, Kind: history.KindResourceWrite, Key: LockName, In: history.Values{Token: token, Value: elem}}
		wr.Call = env.Rec.Now()
		seq, err := w.res.write(token, append(elems, elem))
		wr.Return = env.Rec.Now()
		if err != nil {
			wr.Status, wr.Error = history.StatusFail, accessError(err)
		} else {
			wr.Status, wr.Out = history.StatusOK, history.Values{Seq: seq}
		}
		st.mu.Lock()
		if err != nil {
			st.refused++
		} else {
			st.accepted++
		}
		st.mu.Unlock()
		env.record(wr)
	}

	node := env.Nodes[g.intN(len(env.Nodes))]
	rel := history.Op{Process: p, Kind: history.KindRelease, Key: LockName, Node: nodeName(node), In: history.Values{Lease: lease, Token: token}}
	rel.Call = env.Rec.Now()
	r := do(ctx, c, http.MethodDelete, node, "/v1/locks/"+LockName, httpapi.HolderRequest{Lease: lease, Token: token}, requestTimeout)
	rel.Return = env.Rec.Now()
	rel.Status, rel.Error = r.outcome(true)
	env.record(rel)
}

func accessError(err error) string {
	if errors.Is(err, fencing.ErrStaleToken) {
		return errStale
	}
	return err.Error()
}

func (w *fencedLock) Final(ctx context.Context, env Env) (history.FinalState, error) {
	final := history.FinalState{Resources: map[string][]string{LockName: w.res.snapshot()}}
	if len(env.Nodes) == 0 {
		return final, fmt.Errorf("%s: no nodes", w.Name())
	}
	c := newHTTPClient()
	defer c.CloseIdleConnections()
	h, err := readHolder(ctx, env, c, "/v1/locks/"+LockName)
	if err != nil {
		return final, fmt.Errorf("%s: %w", w.Name(), err)
	}
	final.Elections = map[string]history.Holder{}
	if h.Token != 0 {
		final.Elections[LockName] = h
	}
	return final, nil
}

// readHolder reads the holder of an election or lock (path) with a
// linearizable read, retried through every node.
func readHolder(ctx context.Context, env Env, c *http.Client, path string) (history.Holder, error) {
	var h history.Holder
	var last reply
	attempt := 0
	ok := retry(ctx, func() bool {
		attempt++
		last = do(ctx, c, http.MethodGet, env.Nodes[attempt%len(env.Nodes)], path, nil, requestTimeout)
		if !last.ok() {
			return false
		}
		var e httpapi.ElectionJSON
		if err := last.decode(&e); err != nil {
			return false
		}
		h = holderOf(e)
		return true
	})
	if !ok {
		return h, fmt.Errorf("final read of %s: %s %v", path, last.code(), last.err)
	}
	return h, nil
}

// holderOf is the leader of an election answer (zero: none).
func holderOf(e httpapi.ElectionJSON) history.Holder {
	if e.Leader == nil {
		return history.Holder{}
	}
	return history.Holder{Lease: e.Leader.Lease, Value: e.Leader.Value, Token: e.Leader.Token}
}

func (w *fencedLock) Check(ops []history.Op, final history.FinalState, outDir string) []check.Result {
	var mine []history.Op
	for _, op := range ops {
		switch op.Kind {
		case history.KindAcquire, history.KindRelease, history.KindResourceRead, history.KindResourceWrite:
			if op.Key == LockName {
				mine = append(mine, op)
			}
		}
	}
	r := check.FencedLock(mine, final)
	r.Notes = append(r.Notes, "durability not checked: the lock clients' leases are left to expire (pauses), which check.Durability must not be given")
	return []check.Result{r}
}
