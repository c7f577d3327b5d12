package client

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/coordd/coordd/api"
)

func kvPath(key string) string {
	parts := strings.Split(key, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return "/v1/kv/" + strings.Join(parts, "/")
}

// ReadOption adjusts a read.
type ReadOption func(*readOpts)

type readOpts struct {
	stale bool
	index uint64
	wait  time.Duration
}

// Stale serves the read from whichever node answers, without asking the
// leader: faster and available without a quorum, but possibly behind.
func Stale() ReadOption { return func(o *readOpts) { o.stale = true } }

// WaitIndex makes a blocking read: it answers once the key (or prefix)
// changed past index, or after wait.
func WaitIndex(index uint64, wait time.Duration) ReadOption {
	return func(o *readOpts) { o.index, o.wait = index, wait }
}

func (o readOpts) query(q url.Values) {
	if o.stale {
		q.Set("stale", "")
	}
	if o.index > 0 {
		q.Set("index", strconv.FormatUint(o.index, 10))
		if o.wait > 0 {
			q.Set("wait", o.wait.String())
		}
	}
}

func encodeQuery(q url.Values) string {
	if len(q) == 0 {
		return ""
	}
	// "stale=" and "prefix=" read as flags on the server.
	return "?" + strings.ReplaceAll(q.Encode(), "=&", "&")
}

// Get reads a key; ErrKeyNotFound when it does not exist.
func (c *Client) Get(ctx context.Context, key string, opts ...ReadOption) (*KV, error) {
	var o readOpts
	for _, f := range opts {
		f(&o)
	}
	q := url.Values{}
	o.query(q)
	var kv KV
	rq := request{method: http.MethodGet, path: kvPath(key) + encodeQuery(q), idempotent: true, stale: o.stale, blocking: o.index > 0}
	if err := c.do(ctx, rq, &kv); err != nil {
		return nil, err
	}
	return &kv, nil
}

// List reads every key under prefix, in key order, and the index to block
// on next.
func (c *Client) List(ctx context.Context, prefix string, opts ...ReadOption) ([]KV, uint64, error) {
	var o readOpts
	for _, f := range opts {
		f(&o)
	}
	q := url.Values{"prefix": {""}}
	o.query(q)
	var out []KV
	ans := &answer{body: &out}
	rq := request{method: http.MethodGet, path: kvPath(prefix) + encodeQuery(q), idempotent: true, stale: o.stale, blocking: o.index > 0}
	if err := c.do(ctx, rq, ans); err != nil {
		return nil, 0, err
	}
	return out, ans.index(), nil
}

// PutOption makes a put conditional or attaches it to a lease.
type PutOption func(q url.Values)

// WithCAS writes only if the key's modify index is index.
func WithCAS(index uint64) PutOption {
	return func(q url.Values) { q.Set("cas", strconv.FormatUint(index, 10)) }
}

// CreateOnly writes only if the key does not exist.
func CreateOnly() PutOption { return func(q url.Values) { q.Set("cas", "0") } }

// WithLease attaches the key to a lease: it is deleted with the lease.
func WithLease(id uint64) PutOption {
	return func(q url.Values) { q.Set("lease", strconv.FormatUint(id, 10)) }
}

// Put writes a key. A failed condition is ErrCASConflict, with the key's
// current index in the *Error.
func (c *Client) Put(ctx context.Context, key string, value []byte, opts ...PutOption) (*WriteResult, error) {
	q := url.Values{}
	for _, f := range opts {
		f(q)
	}
	var out WriteResult
	rq := request{method: http.MethodPut, path: kvPath(key) + encodeQuery(q), body: value, idempotent: true, key: newKey()}
	if err := c.do(ctx, rq, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// DeleteOption makes a delete conditional or recursive.
type DeleteOption func(q url.Values)

// DeleteCAS deletes only if the key's modify index is index.
func DeleteCAS(index uint64) DeleteOption {
	return func(q url.Values) { q.Set("cas", strconv.FormatUint(index, 10)) }
}

// DeletePrefix deletes every key under the given key as a prefix.
func DeletePrefix() DeleteOption { return func(q url.Values) { q.Set("prefix", "") } }

// Delete deletes a key (ErrKeyNotFound if it does not exist) or a prefix.
func (c *Client) Delete(ctx context.Context, key string, opts ...DeleteOption) (*DeleteResult, error) {
	q := url.Values{}
	for _, f := range opts {
		f(q)
	}
	var out DeleteResult
	if err := c.write(ctx, http.MethodDelete, kvPath(key)+encodeQuery(q), nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// WatchEvent is one state of a watched key: KV is nil when the key does not
// exist. Err reports a failed attempt; the watch goes on (retrying other
// nodes) until its context ends.
type WatchEvent struct {
	KV    *KV
	Index uint64
	Err   error
}

// Watch reports the key's state now and after every change, with blocking
// queries (linearizable, so never older than a state already reported).
// Changes in quick succession may be coalesced, but the latest state is
// always delivered. The channel closes when ctx ends.
func (c *Client) Watch(ctx context.Context, key string) <-chan WatchEvent {
	ch := make(chan WatchEvent, 1)
	send := func(ev WatchEvent) bool {
		select {
		case ch <- ev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	ctx, unbind := c.bind(ctx)
	started := c.background(func() {
		defer unbind()
		defer close(ch)
		var index uint64
		first := true
		for ctx.Err() == nil {
			q := url.Values{}
			if !first {
				q.Set("index", strconv.FormatUint(index, 10))
				q.Set("wait", "30s")
			}
			var kv KV
			ans := &answer{body: &kv}
			rq := request{method: http.MethodGet, path: kvPath(key) + encodeQuery(q), idempotent: true, blocking: !first}
			err := c.do(ctx, rq, ans)
			var ev WatchEvent
			switch {
			case err == nil:
				ev.KV, ev.Index = &kv, ans.index()
			case isCode(err, api.CodeKeyNotFound):
				var se *Error
				errors.As(err, &se)
				ev.Index, err = se.Index, nil
			}
			if err != nil {
				if ctx.Err() != nil || !send(WatchEvent{Err: err}) || sleep(ctx, 100*time.Millisecond) != nil {
					return
				}
				continue
			}
			if !first && ev.Index == index {
				continue // the wait ran out with nothing new
			}
			first, index = false, ev.Index
			if !send(ev) {
				return
			}
		}
	})
	if !started {
		unbind()
		close(ch)
	}
	return ch
}

func isCode(err error, code string) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == code
}
