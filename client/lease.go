package client

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// Grant creates a lease with the given TTL (whole milliseconds, within the
// cluster's range).
func (c *Client) Grant(ctx context.Context, ttl time.Duration) (*Lease, error) {
	var l Lease
	if err := c.write(ctx, http.MethodPost, "/v1/leases", map[string]int64{"ttl_ms": ttl.Milliseconds()}, &l); err != nil {
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
	body := map[string]any{"id": id, "raft_addr": raftAddr, "http_addr": httpAddr, "voter": !nonVoter}
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
	var out struct {
		Leader string `json:"leader"`
	}
	var body any
	if id != "" {
		body = map[string]string{"id": id}
	}
	if err := c.write(ctx, http.MethodPost, "/v1/cluster/transfer-leadership", body, &out); err != nil {
		return "", err
	}
	return out.Leader, nil
}
