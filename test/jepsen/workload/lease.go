package workload

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/test/jepsen/history"
)

// grantLease grants a lease of ttl through a random node and records the
// lease-grant op of process p. It returns the lease (0 if the grant did not
// succeed) and when the request was sent: the lease's deadline counts from
// then, at the latest.
func grantLease(ctx context.Context, env Env, c *http.Client, g *rng, p int, ttl time.Duration) (uint64, time.Time) {
	node := env.Nodes[g.intN(len(env.Nodes))]
	op := history.Op{Process: p, Kind: history.KindLeaseGrant, Node: nodeName(node)}
	sent := time.Now()
	op.Call = env.Rec.Now()
	r := do(ctx, c, http.MethodPost, node, "/v1/leases", api.LeaseGrantRequest{TTLMs: ttl.Milliseconds()}, requestTimeout)
	op.Return = env.Rec.Now()
	op.Status, op.Error = r.outcome(true)
	if r.ok() {
		var l api.Lease
		if err := r.decode(&l); err != nil || l.ID == 0 {
			op.Status, op.Error = history.StatusUnknown, "bad_answer"
		} else {
			op.Out.Lease = l.ID
		}
	}
	env.record(op)
	return op.Out.Lease, sent
}

// revokeLease revokes lease through a random node and records the
// lease-revoke op of process p. It reports the op's status and error code.
func revokeLease(ctx context.Context, env Env, c *http.Client, g *rng, p int, lease uint64) (history.Status, string) {
	node := env.Nodes[g.intN(len(env.Nodes))]
	op := history.Op{Process: p, Kind: history.KindLeaseRevoke, Node: nodeName(node), In: history.Values{Lease: lease}}
	op.Call = env.Rec.Now()
	r := do(ctx, c, http.MethodDelete, node, fmt.Sprintf("/v1/leases/%d", lease), nil, requestTimeout)
	op.Return = env.Rec.Now()
	op.Status, op.Error = r.outcome(true)
	env.record(op)
	return op.Status, op.Error
}

// keeper keeps a lease alive at TTL/3 through random nodes (keepalives are
// not recorded: the history has no kind for them). It notes whether the
// lease was lost (a keepalive answered lease_not_found) and whether it
// lapsed: whether, at some moment, a whole TTL had passed since the send
// time of the last successful keepalive (or of the grant), so that the
// cluster may rightly have expired it.
type keeper struct {
	env   Env
	c     *http.Client
	g     *rng
	lease uint64
	ttl   time.Duration

	mu     sync.Mutex
	lastOK time.Time
	lost   bool
	lapsed bool

	cancel context.CancelFunc
	done   chan struct{}
}

func newKeeper(env Env, c *http.Client, g *rng, lease uint64, ttl time.Duration, granted time.Time) *keeper {
	return &keeper{env: env, c: c, g: g, lease: lease, ttl: ttl, lastOK: granted}
}

// start starts keeping the lease alive, until halt or ctx is done.
func (k *keeper) start(ctx context.Context) {
	if k.done != nil {
		return
	}
	ctx, k.cancel = context.WithCancel(ctx)
	k.done = make(chan struct{})
	go func() {
		defer close(k.done)
		k.loop(ctx)
	}()
}

// halt stops the keepalives (a paused process sends none) and waits until
// they stopped.
func (k *keeper) halt() {
	if k.done == nil {
		return
	}
	k.cancel()
	<-k.done
	k.done, k.cancel = nil, nil
	k.checkLapse(time.Now())
}

func (k *keeper) checkLapse(now time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if now.Sub(k.lastOK) >= k.ttl {
		k.lapsed = true
	}
}

func (k *keeper) loop(ctx context.Context) {
	interval := k.ttl / 3
	timeout := min(requestTimeout, interval)
	path := fmt.Sprintf("/v1/leases/%d/keepalive", k.lease)
	for ctx.Err() == nil {
		k.checkLapse(time.Now())
		sent := time.Now()
		node := k.env.Nodes[k.g.intN(len(k.env.Nodes))]
		r := do(ctx, k.c, http.MethodPost, node, path, nil, timeout)
		switch {
		case r.ok():
			k.mu.Lock()
			if sent.After(k.lastOK) {
				k.lastOK = sent
			}
			k.mu.Unlock()
			k.checkLapse(sent)
			if !sleep(ctx, interval-time.Since(sent)) {
				return
			}
		case r.detail.Code == api.CodeLeaseNotFound:
			k.mu.Lock()
			k.lost = true
			k.mu.Unlock()
			return
		default:
			// Another node, soon.
			if !sleep(ctx, 50*time.Millisecond) {
				return
			}
		}
	}
}

// markLost notes that the cluster said the lease is gone.
func (k *keeper) markLost() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.lost = true
}

// state reports whether the lease was lost or lapsed.
func (k *keeper) state() (lost, lapsed bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.lost, k.lapsed
}
