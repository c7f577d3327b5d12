package client

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/coordd/coordd/api"
)

// Grant creates a lease with the given TTL (whole milliseconds, within the
// cluster's range).
func (c *Client) Grant(ctx context.Context, ttl time.Duration) (*Lease, error) {
	var l Lease
	if err := c.write(ctx, http.MethodPost, "/v1/leases", api.LeaseGrantRequest{TTLMs: ttl.Milliseconds()}, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// KeepAlive renews a lease once; ErrLeaseNotFound when it is gone. Safe to
// retry: a keepalive changes nothing but the deadline.
func (c *Client) KeepAlive(ctx context.Context, id uint64) (*Lease, error) {
	var l Lease
	rq := request{method: http.MethodPost, path: fmt.Sprintf("/v1/leases/%d/keepalive", id), idempotent: true}
	if err := c.do(ctx, rq, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// MaxKeepAliveBatch is the most ids one KeepAliveMany request carries;
// KeepAliveMany splits longer lists.
const MaxKeepAliveBatch = api.MaxKeepaliveBatch

// KeepAliveMany renews many leases with one request per MaxKeepAliveBatch
// ids, for clients that hold many leases: the leader renews them all in
// memory, as it does single keepalives. Safe to retry.
func (c *Client) KeepAliveMany(ctx context.Context, ids []uint64) (*KeepAliveManyResult, error) {
	out := &KeepAliveManyResult{Leases: make([]api.KeepaliveManyLease, 0, len(ids)), NotFound: []uint64{}}
	for len(ids) > 0 {
		n := min(len(ids), MaxKeepAliveBatch)
		b, err := jsonBody(api.KeepaliveManyRequest{IDs: ids[:n]})
		if err != nil {
			return nil, err
		}
		var part KeepAliveManyResult
		rq := request{method: http.MethodPost, path: "/v1/leases/keepalive", body: b, idempotent: true}
		if err := c.do(ctx, rq, &part); err != nil {
			return nil, err
		}
		out.Leases = append(out.Leases, part.Leases...)
		out.NotFound = append(out.NotFound, part.NotFound...)
		ids = ids[n:]
	}
	return out, nil
}

// Revoke deletes a lease and releases everything attached to it.
func (c *Client) Revoke(ctx context.Context, id uint64) error {
	return c.write(ctx, http.MethodDelete, fmt.Sprintf("/v1/leases/%d", id), nil, nil)
}

// TimeToLive returns a lease with its remaining time and attachments.
func (c *Client) TimeToLive(ctx context.Context, id uint64) (*Lease, error) {
	var l Lease
	if err := c.read(ctx, fmt.Sprintf("/v1/leases/%d", id), false, &l); err != nil {
		return nil, err
	}
	return &l, nil
}

// Leases lists every lease.
func (c *Client) Leases(ctx context.Context) ([]Lease, error) {
	var out []Lease
	if err := c.read(ctx, "/v1/leases", false, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// Status is the view of the cluster of whichever node answers.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var st Status
	if err := c.read(ctx, "/v1/status", true, &st); err != nil {
		return nil, err
	}
	return &st, nil
}

// Members lists the cluster's servers.
func (c *Client) Members(ctx context.Context) ([]Member, error) {
	var out []Member
	if err := c.read(ctx, "/v1/cluster/members", true, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// AddMember joins a server (as a voter unless nonVoter).
func (c *Client) AddMember(ctx context.Context, id, raftAddr, httpAddr string, nonVoter bool) ([]Member, error) {
	var out []Member
	voter := !nonVoter
	body := api.JoinRequest{ID: id, RaftAddr: raftAddr, HTTPAddr: httpAddr, Voter: &voter}
	if err := c.write(ctx, http.MethodPost, "/v1/cluster/members", body, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// RemoveMember removes a server.
func (c *Client) RemoveMember(ctx context.Context, id string) error {
	return c.write(ctx, http.MethodDelete, "/v1/cluster/members/"+id, nil, nil)
}

// TransferLeadership hands leadership to id, or to the most up-to-date voter
// when id is empty, and returns the new leader's id.
func (c *Client) TransferLeadership(ctx context.Context, id string) (string, error) {
	var out api.TransferResult
	if err := c.write(ctx, http.MethodPost, "/v1/cluster/transfer-leadership", api.TransferRequest{ID: id}, &out); err != nil {
		return "", err
	}
	return out.Leader, nil
}
