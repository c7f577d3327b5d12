package client

import (
	"context"
	"fmt"
	"net/http"

	"github.com/coordd/coordd/api"
)

// Digests returns the replica digests of the node that answers (above
// index after; only the one at index at when at is not 0). To ask one
// node, give the client that node's endpoint alone.
func (c *Client) Digests(ctx context.Context, after, at uint64) (*api.Digests, error) {
	var out api.Digests
	if err := c.read(ctx, fmt.Sprintf("/v1/digests?after=%d&index=%d", after, at), true, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DigestPoint commits a digest point and returns its index: every member
// takes a replica digest there.
func (c *Client) DigestPoint(ctx context.Context) (uint64, error) {
	var out api.DigestPointResult
	if err := c.write(ctx, http.MethodPost, "/v1/digests", nil, &out); err != nil {
		return 0, err
	}
	return out.Index, nil
}

// Alarms lists the cluster's alarms.
func (c *Client) Alarms(ctx context.Context) ([]api.Alarm, error) {
	var out api.AlarmList
	if err := c.read(ctx, "/v1/alarms", true, &out); err != nil {
		return nil, err
	}
	return out.Alarms, nil
}

// DisarmAlarm clears the alarm naming member, or every alarm when member
// is empty, and returns how many it cleared.
func (c *Client) DisarmAlarm(ctx context.Context, member string) (int, error) {
	var out api.DisarmResult
	if err := c.write(ctx, http.MethodPost, "/v1/alarms/disarm", api.DisarmRequest{Member: member, All: member == ""}, &out); err != nil {
		return 0, err
	}
	return out.Disarmed, nil
}

// ShadowStatus returns the leader's comparison of the non-voting members'
// digests with the majority's (every member's with all).
func (c *Client) ShadowStatus(ctx context.Context, all bool) (*api.ShadowStatusList, error) {
	path := "/v1/shadow/status"
	if all {
		path += "?all"
	}
	var out api.ShadowStatusList
	if err := c.read(ctx, path, false, &out); err != nil {
		return nil, err
	}
	return &out, nil
}
