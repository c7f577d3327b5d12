package workload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/fencing"
	"github.com/coordd/coordd/test/jepsen/check"
	"github.com/coordd/coordd/test/jepsen/history"
	"github.com/coordd/coordd/test/jepsen/lockclient/agent"
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
	// lockMaxIterations bounds each client's loop, lockMaxAgents the agent
	// processes it starts.
	lockMaxIterations = 10000
	lockMaxAgents     = 20
	// lockProcessBase is the first process id of the lock clients.
	lockProcessBase = 1000
)

// fencedLock is the fenced-lock workload: clients take the lock, read the
// resource with their token, sometimes pause for up to 1.5 × TTL, write
// back what they read plus one element of their own with their token,
// release and revoke their lease. Each client is an agent process of its
// own (command test/jepsen/lockclient) that sends the client's requests
// and keeps its lease alive; a pause is a SIGSTOP of that process,
// keepalives and all, then a SIGCONT. The resource stays in the workload,
// served to the agents on a loopback listener.
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

// resource is the protected resource, held in the workload and served to
// the agents over HTTP (serve): a list of elements. One mutex covers the token check, the read or write and the
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

// The resource's HTTP interface, served to the agents on a loopback
// listener: POST /read and POST /write with a resourceRequest; the answer
// is a resourceAnswer, or 409 stale_token (an api.ErrorBody) if the
// token is refused.
type resourceRequest struct {
	Token uint64   `json:"token"`
	Elems []string `json:"elems,omitempty"` // write: the new elements
}

type resourceAnswer struct {
	Seq   uint64   `json:"seq"`
	Elems []string `json:"elems,omitempty"` // read: the elements
}

// serve serves the resource on 127.0.0.1 until stop; url is its base URL.
func (r *resource) serve() (url string, stop func(), err error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /read", r.handle(false))
	mux.HandleFunc("POST /write", r.handle(true))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: requestTimeout}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	return "http://" + l.Addr().String(), func() {
		srv.Close()
		<-done
	}, nil
}

func (r *resource) handle(write bool) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		var in resourceRequest
		if err := json.NewDecoder(req.Body).Decode(&in); err != nil {
			writeResourceError(w, http.StatusBadRequest, "bad_request", err)
			return
		}
		var out resourceAnswer
		var err error
		if write {
			out.Seq, err = r.write(in.Token, in.Elems)
		} else {
			out.Elems, out.Seq, err = r.read(in.Token)
		}
		switch {
		case errors.Is(err, fencing.ErrStaleToken):
			writeResourceError(w, http.StatusConflict, errStale, err)
		case err != nil:
			writeResourceError(w, http.StatusInternalServerError, "guard_error", err)
		default:
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(out)
		}
	}
}

func writeResourceError(w http.ResponseWriter, status int, code string, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(api.ErrorBody{Error: api.ErrorDetail{Code: code, Message: err.Error()}})
}

// lockStats counts what the clients did.
type lockStats struct {
	mu                                           sync.Mutex
	iterations, acquired, pauses, long, accepted int
	refused, unknown                             int
	agents, lost                                 int // agent processes started; lost (exited, stopped answering)
	keepalives                                   agent.KeepAliveStats
	leasesLost                                   int
}

func (st *lockStats) add(f func(st *lockStats)) {
	st.mu.Lock()
	defer st.mu.Unlock()
	f(st)
}

// lockRun is what the clients of one Run share.
type lockRun struct {
	env Env
	bin string // the agent command
	res string // the resource's base URL
	st  *lockStats
}

func (w *fencedLock) Run(ctx context.Context, env Env) error {
	if len(env.Nodes) == 0 {
		return fmt.Errorf("%s: no nodes", w.Name())
	}
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lockAgentBuildTimeout)
	bin, cleanup, err := buildLockAgent(bctx)
	cancel()
	if err != nil {
		return fmt.Errorf("%s: %w", w.Name(), err)
	}
	defer cleanup()
	res, stop, err := w.res.serve()
	if err != nil {
		return fmt.Errorf("%s: serving the resource: %w", w.Name(), err)
	}
	defer stop()
	run := lockRun{env: env, bin: bin, res: res, st: &lockStats{}}
	var wg sync.WaitGroup
	for i := range lockClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.client(ctx, run, lockProcessBase+i, newRNG(env.Seed, uint64(200+i)))
		}()
	}
	wg.Wait()
	st := run.st
	env.logf("%s: %d iterations, %d acquired, %d pauses (%d longer than the TTL), %d writes accepted, %d refused",
		w.Name(), st.iterations, st.acquired, st.pauses, st.long, st.accepted, st.refused)
	env.logf("%s: %d client processes (%d lost), paused with SIGSTOP/SIGCONT; %d writes of unknown outcome; keepalives: %d sent, %d ok, %d leases lost",
		w.Name(), st.agents, st.lost, st.unknown, st.keepalives.Sent, st.keepalives.OK, st.leasesLost)
	return nil
}

// client runs lock client p until ctx is done: the client is an agent
// process, replaced if it is lost (at most lockMaxAgents times), killed
// when the client ends.
func (w *fencedLock) client(ctx context.Context, run lockRun, p int, g *rng) {
	var a *lockAgent
	drop := func() {
		if a.lostReason() != "" {
			run.st.add(func(st *lockStats) { st.lost++ })
		}
		a.kill()
		a = nil
	}
	defer func() {
		if a != nil {
			drop()
		}
	}()
	starts := 0
	for it := 0; it < lockMaxIterations && ctx.Err() == nil; it++ {
		if a != nil && a.lostReason() != "" {
			drop()
		}
		if a == nil {
			if starts == lockMaxAgents {
				run.env.logf("%s: client p%d: %d agent processes started and lost: the client stops", w.Name(), p, starts)
				return
			}
			starts++
			var err error
			if a, err = startLockAgent(run.bin, p, run.env.logf); err != nil {
				run.env.logf("%s: %v", w.Name(), err)
				sleep(ctx, time.Second)
				continue
			}
			run.st.add(func(st *lockStats) { st.agents++ })
		}
		run.st.add(func(st *lockStats) { st.iterations++ })
		w.iteration(ctx, run, a, p, g)
	}
}

// iteration is one turn of a client: grant a lease and keep it alive
// from the agent, acquire the lock, the critical section, halt the
// keepalives, revoke the lease. An iteration started runs to its end
// (bounded by the timeouts and the pause), so that its ops are not cut
// short, unless the agent is lost.
func (w *fencedLock) iteration(ctx context.Context, run lockRun, a *lockAgent, p int, g *rng) {
	rctx := context.WithoutCancel(ctx)
	env, c := run.env, &http.Client{Transport: a}
	lease, _ := grantLease(rctx, env, c, g, p, lockTTL)
	if lease == 0 {
		sleep(ctx, 100*time.Millisecond)
		return
	}
	if err := a.keepAlive(lease, lockTTL, env.Nodes, uint64(g.intN(1<<62))); err != nil {
		return // the agent is lost: the lease expires
	}
	if token := w.acquire(rctx, env, c, g, p, lease); token != 0 {
		run.st.add(func(st *lockStats) { st.acquired++ })
		w.critical(rctx, run, a, c, g, p, lease, token)
	} else {
		sleep(ctx, 50*time.Millisecond)
	}
	ks, err := a.halt()
	if err != nil {
		return
	}
	run.st.add(func(st *lockStats) {
		st.keepalives.Sent += ks.Sent
		st.keepalives.OK += ks.OK
		if ks.Lost {
			st.leasesLost++
		}
	})
	revokeLease(rctx, env, c, g, p, lease)
}

// acquire takes the lock for lease, waiting up to lockWait, and records
// the acquire op; it returns the token, or 0.
func (w *fencedLock) acquire(ctx context.Context, env Env, c *http.Client, g *rng, p int, lease uint64) uint64 {
	node := env.Nodes[g.intN(len(env.Nodes))]
	op := history.Op{Process: p, Kind: history.KindAcquire, Key: LockName, Node: nodeName(node), In: history.Values{Lease: lease}}
	op.Call = env.Rec.Now()
	r := do(ctx, c, http.MethodPost, node, "/v1/locks/"+LockName,
		api.CampaignRequest{Lease: lease, Wait: lockWait.String()}, lockWait+blockingMargin)
	op.Return = env.Rec.Now()
	op.Status, op.Error = r.outcome(true)
	if r.ok() {
		var res api.CampaignResponse
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

// critical is the critical section: read the resource from the agent,
// maybe pause the agent's process (SIGSTOP, SIGCONT), write back from the
// agent, release. Each resource op is recorded from before its request
// goes to the agent until its answer is back: the access happened in
// between.
func (w *fencedLock) critical(ctx context.Context, run lockRun, a *lockAgent, c *http.Client, g *rng, p int, lease, token uint64) {
	env := run.env
	rd := history.Op{Process: p, Kind: history.KindResourceRead, Key: LockName, In: history.Values{Token: token}}
	rd.Call = env.Rec.Now()
	r := do(ctx, c, http.MethodPost, run.res, "/read", resourceRequest{Token: token}, requestTimeout)
	rd.Return = env.Rec.Now()
	rd.Status, rd.Error = r.outcome(false)
	var got resourceAnswer
	if r.ok() {
		if err := r.decode(&got); err != nil || got.Seq == 0 {
			rd.Status, rd.Error = history.StatusFail, "bad_answer"
		} else {
			rd.Out = history.Values{Seq: got.Seq, Values: got.Elems}
		}
	}
	env.record(rd)

	if g.float() < lockPauseChance {
		// The client's process pauses: no keepalive either.
		d := g.duration(0, lockPauseMax)
		run.st.add(func(st *lockStats) {
			st.pauses++
			if d > lockTTL {
				st.long++
			}
		})
		if err := a.pause(d); err != nil {
			env.logf("%s: client p%d: pause: %v", w.Name(), p, err)
		}
	}
	if a.lostReason() != "" {
		return
	}

	if rd.Status == history.StatusOK {
		elem := fmt.Sprintf("p%d-%d", p, got.Seq)
		wr := history.Op{Process: p, Kind: history.KindResourceWrite, Key: LockName, In: history.Values{Token: token, Value: elem}}
		wr.Call = env.Rec.Now()
		r := do(ctx, c, http.MethodPost, run.res, "/write", resourceRequest{Token: token, Elems: append(got.Elems, elem)}, requestTimeout)
		wr.Return = env.Rec.Now()
		wr.Status, wr.Error = r.outcome(true)
		if r.ok() {
			var res resourceAnswer
			if err := r.decode(&res); err != nil || res.Seq == 0 {
				wr.Status, wr.Error = history.StatusUnknown, "bad_answer"
			} else {
				wr.Out = history.Values{Seq: res.Seq}
			}
		}
		run.st.add(func(st *lockStats) {
			switch wr.Status {
			case history.StatusOK:
				st.accepted++
			case history.StatusFail:
				st.refused++
			default:
				st.unknown++
			}
		})
		env.record(wr)
		if a.lostReason() != "" {
			return
		}
	}

	node := env.Nodes[g.intN(len(env.Nodes))]
	rel := history.Op{Process: p, Kind: history.KindRelease, Key: LockName, Node: nodeName(node), In: history.Values{Lease: lease, Token: token}}
	rel.Call = env.Rec.Now()
	r = do(ctx, c, http.MethodDelete, node, "/v1/locks/"+LockName, api.HolderRequest{Lease: lease, Token: token}, requestTimeout)
	rel.Return = env.Rec.Now()
	rel.Status, rel.Error = r.outcome(true)
	env.record(rel)
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
		var e api.Election
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
func holderOf(e api.Election) history.Holder {
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
