package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// SaveSnapshot streams a consistent snapshot of the whole cluster state
// from the leader into w and returns its Raft index and size. It retries
// (no leader, a dead node) only while nothing has been written to w; after
// that a failure is returned and w holds a partial file, which readers
// refuse (its trailer is missing). Write to a temporary file and rename it
// once this returns nil.
func (c *Client) SaveSnapshot(ctx context.Context, w io.Writer) (index uint64, size int64, err error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RetryTimeout)
	defer cancel()
	delay := 20 * time.Millisecond
	for attempt := 0; ; attempt++ {
		ep := c.pick(false, attempt)
		if ep != nil {
			var started bool
			index, size, started, err = c.saveFrom(ctx, ep, w)
			if err == nil || started {
				return index, size, err
			}
		} else {
			err = ErrUnavailable
		}
		var se *Error
		if errors.As(err, &se) && !se.retryable() && !se.ambiguous() {
			return 0, 0, err
		}
		select {
		case <-ctx.Done():
			return 0, 0, fmt.Errorf("coordd: snapshot: %w (last attempt: %w)", ctx.Err(), err)
		case <-time.After(delay):
		}
		delay = min(2*delay, 200*time.Millisecond)
	}
}

// saveFrom asks one endpoint; started reports whether bytes reached w.
func (c *Client) saveFrom(ctx context.Context, ep *endpoint, w io.Writer) (uint64, int64, bool, error) {
	done, err := ep.breaker.Allow()
	if err != nil {
		return 0, 0, false, fmt.Errorf("%w: %s: breaker %v", errNotSent, ep.url, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ep.url+"/v1/snapshot", nil)
	if err != nil {
		done(nil)
		return 0, 0, false, err
	}
	if c.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.cfg.Token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		done(err)
		return 0, 0, false, fmt.Errorf("coordd: snapshot from %s: %w", ep.url, err)
	}
	defer resp.Body.Close()
	done(nil)
	if resp.StatusCode != http.StatusOK {
		var eb struct {
			Error Error `json:"error"`
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(b, &eb) != nil || eb.Error.Code == "" {
			eb.Error = Error{Code: "http_" + strconv.Itoa(resp.StatusCode), Message: string(b)}
		}
		eb.Error.Status = resp.StatusCode
		return 0, 0, false, &eb.Error
	}
	index, _ := strconv.ParseUint(resp.Header.Get("X-Coordd-Index"), 10, 64)
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return index, n, n > 0, fmt.Errorf("coordd: snapshot from %s cut after %d bytes: %w", ep.url, n, err)
	}
	return index, n, true, nil
}
