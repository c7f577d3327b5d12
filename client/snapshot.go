package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/coordd/coordd/api"
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
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return 0, 0, false, errorOf(resp, b)
	}
	index, _ := strconv.ParseUint(resp.Header.Get(api.HeaderIndex), 10, 64)
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return index, n, n > 0, fmt.Errorf("coordd: snapshot from %s cut after %d bytes: %w", ep.url, n, err)
	}
	return index, n, true, nil
}

// RestoreOptions adjust RestoreSnapshot.
type RestoreOptions struct {
	// Bump raises the cluster's index, and so every fencing token issued
	// after the restore, by this much above the backup's and the log's.
	// Use it when restoring into a new or wiped cluster, whose log knows
	// nothing of the tokens the old cluster issued after the backup.
	Bump uint64
}

// RestoreSnapshot replaces the whole state of the running cluster with the
// backup read from r (a file written by SaveSnapshot). The server verifies
// the whole file before changing anything: an unsound file is refused with
// an invalid_snapshot error (ErrBadRequest) and the cluster is left as it
// was. Restored holders keep their roles with fresh fencing tokens above
// every token issued before; restored leases get a fresh TTL.
//
// The backup is read into memory so that it can be sent again when the
// leader changes before it was accepted. A restore is not retried after an
// ambiguous failure (ErrOutcomeUnknown): check /v1/status's last_restore.
func (c *Client) RestoreSnapshot(ctx context.Context, r io.Reader, opts RestoreOptions) (*RestoreResult, error) {
	body, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("coordd: restore: read backup: %w", err)
	}
	path := "/v1/snapshot"
	if opts.Bump > 0 {
		path += "?bump=" + strconv.FormatUint(opts.Bump, 10)
	}
	var res RestoreResult
	// blocking: a large restore may take longer than one attempt's bound.
	if err := c.do(ctx, request{method: http.MethodPost, path: path, body: body, blocking: true}, &res); err != nil {
		return nil, err
	}
	return &res, nil
}
