package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/coordd/coordd/api"
)

// LockOptions configure a lock acquisition.
type LockOptions struct {
	// Limit > 1 makes the name a counting semaphore of that many holders.
	Limit int
	// LockDelay keeps the lock free for this long after a holder fails
	// (its lease expires or is revoked, not when it unlocks).
	LockDelay time.Duration
}

func namePath(kind, name string) string { return "/v1/" + kind + "/" + url.PathEscape(name) }

// serverWait is how long one blocking call may ask the server to wait:
// what is left of ctx (minus a margin for the answer to travel), at most max.
func serverWait(ctx context.Context, max time.Duration) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		max = min(max, time.Until(dl)-100*time.Millisecond)
	}
	return max.Truncate(time.Millisecond)
}

// Campaign queues lease as a candidate for name and waits up to wait to
// lead. Retried safely (the server queues a lease once).
func (c *Client) Campaign(ctx context.Context, name string, lease uint64, value string, wait time.Duration) (*CampaignResult, error) {
	return c.acquire(ctx, "elections", name, lease, 0, value, wait, LockOptions{})
}

// Lock queues lease for the lock and waits up to wait to hold it.
func (c *Client) Lock(ctx context.Context, name string, lease uint64, wait time.Duration, o LockOptions) (*CampaignResult, error) {
	return c.acquire(ctx, "locks", name, lease, 0, "", wait, o)
}

// CampaignNew grants a new lease of ttl and queues it as a candidate for
// name in one Raft entry (one round trip instead of Grant then Campaign),
// then waits up to wait to lead. The result's Lease is the new lease: keep
// it alive (KeepAlive, KeepAliveMany) or revoke it. Retried safely: a
// retry never grants a second lease.
func (c *Client) CampaignNew(ctx context.Context, name string, ttl time.Duration, value string, wait time.Duration) (*CampaignResult, error) {
	return c.acquire(ctx, "elections", name, 0, ttl, value, wait, LockOptions{})
}

// LockNew grants a new lease of ttl and queues it for the lock in one Raft
// entry, then waits up to wait to hold it; see CampaignNew.
func (c *Client) LockNew(ctx context.Context, name string, ttl, wait time.Duration, o LockOptions) (*CampaignResult, error) {
	return c.acquire(ctx, "locks", name, 0, ttl, "", wait, o)
}

func (c *Client) acquire(ctx context.Context, kind, name string, lease uint64, ttl time.Duration, value string, wait time.Duration, o LockOptions) (*CampaignResult, error) {
	body := api.CampaignRequest{Lease: lease, Value: value}
	if ttl > 0 {
		body.Lease, body.TTLMs = 0, ttl.Milliseconds()
	}
	if wait = serverWait(ctx, wait); wait > 0 {
		body.Wait = wait.String()
	}
	if o.Limit > 1 {
		body.Limit = o.Limit
	}
	if o.LockDelay > 0 {
		body.LockDelay = o.LockDelay.String()
	}
	path := namePath(kind, name)
	if kind == "elections" {
		path += "/campaign"
	}
	b, err := jsonBody(body)
	if err != nil {
		return nil, err
	}
	var out CampaignResult
	rq := request{method: http.MethodPost, path: path, body: b, idempotent: true, key: newKey(), blocking: wait > 0}
	if err := c.do(ctx, rq, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Resign gives up leadership (token 0 withdraws a waiting candidacy). The
// next candidate leads in the same Raft entry.
func (c *Client) Resign(ctx context.Context, name string, lease, token uint64) (*ElectionState, error) {
	var out ElectionState
	err := c.write(ctx, http.MethodPost, namePath("elections", name)+"/resign", api.HolderRequest{Lease: lease, Token: token}, &out)
	return &out, err
}

// Unlock releases a lock (token 0 withdraws a waiting acquisition).
func (c *Client) Unlock(ctx context.Context, name string, lease, token uint64) error {
	return c.write(ctx, http.MethodDelete, namePath("locks", name), api.HolderRequest{Lease: lease, Token: token}, nil)
}

// Proclaim sets the leader's value, keeping its token.
func (c *Client) Proclaim(ctx context.Context, name string, lease, token uint64, value string) (*ElectionState, error) {
	var out ElectionState
	err := c.write(ctx, http.MethodPost, namePath("elections", name)+"/proclaim",
		api.HolderRequest{Lease: lease, Token: token, Value: value}, &out)
	return &out, err
}

// Election reads an election; WaitIndex makes it a blocking read.
func (c *Client) Election(ctx context.Context, name string, opts ...ReadOption) (*ElectionState, error) {
	return c.readElection(ctx, "elections", name, opts...)
}

// LockState reads a lock; WaitIndex makes it a blocking read.
func (c *Client) LockState(ctx context.Context, name string, opts ...ReadOption) (*ElectionState, error) {
	return c.readElection(ctx, "locks", name, opts...)
}

func (c *Client) readElection(ctx context.Context, kind, name string, opts ...ReadOption) (*ElectionState, error) {
	var o readOpts
	for _, f := range opts {
		f(&o)
	}
	q := url.Values{}
	o.query(q)
	var out ElectionState
	rq := request{method: http.MethodGet, path: namePath(kind, name) + encodeQuery(q), idempotent: true, stale: o.stale, blocking: o.index > 0}
	if err := c.do(ctx, rq, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Elections lists the elections ("elections") or locks ("locks").
func (c *Client) Elections(ctx context.Context, kind string) ([]ElectionState, error) {
	var out []ElectionState
	if err := c.read(ctx, "/v1/"+kind, false, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// CheckToken asks whether token is a current holder's token for name
// (Chubby's CheckSequencer).
func (c *Client) CheckToken(ctx context.Context, name string, token uint64) (*FencingCheck, error) {
	var out FencingCheck
	if err := c.read(ctx, fmt.Sprintf("%s?token=%d", namePath("fencing", name), token), false, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
