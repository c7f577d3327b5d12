// Package fencedkv is the fenced resource of the container tests: one
// coordd key whose value starts with the fencing token of its last writer.
// Write refuses a token lower than the stored one, and the check and the
// write are one step because the write is a compare-and-swap on the modify
// index that was read: a deposed holder that wakes up after a newer holder
// wrote cannot overwrite it. (fencing.Guard does the same inside a resource
// server; here the resource is a coordd key so that the test needs no
// server of its own.)
package fencedkv

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/coordd/coordd/client"
)

// ErrStale is returned by Write when the key holds a higher token.
var ErrStale = errors.New("fencedkv: stale token")

// Write stores "TOKEN DATA" under key if the stored token is not higher
// than token. It returns the stored token it found.
func Write(ctx context.Context, c *client.Client, key string, token uint64, data string) (uint64, error) {
	for {
		kv, err := c.Get(ctx, key)
		var cur uint64
		opt := client.CreateOnly()
		switch {
		case errors.Is(err, client.ErrKeyNotFound):
		case err != nil:
			return 0, err
		default:
			cur, _ = Parse(kv.Value)
			if token < cur {
				return cur, fmt.Errorf("%w: %d < %d", ErrStale, token, cur)
			}
			opt = client.WithCAS(kv.ModifyIndex)
		}
		_, err = c.Put(ctx, key, []byte(fmt.Sprintf("%d %s", token, data)), opt)
		if errors.Is(err, client.ErrCASConflict) {
			continue // someone wrote in between: read again
		}
		return cur, err
	}
}

// Parse splits a stored value into its token and data.
func Parse(v []byte) (uint64, string) {
	tok, data, _ := strings.Cut(string(v), " ")
	n, _ := strconv.ParseUint(tok, 10, 64)
	return n, data
}
