package main

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/coordd/coordd/client"
)

const leaseSynopsis = `  coordctl lease grant TTL               (e.g. 10s, 500ms; a bare number is seconds)
  coordctl lease keepalive ID [-once]
  coordctl lease revoke ID
  coordctl lease ls
  coordctl lease get ID
`

// parseTTL reads a TTL: a Go duration ("10s", "1m30s", "500ms") or a bare
// number of seconds.
func (e *env) parseTTL(what, s string) (time.Duration, bool) {
	d, err := time.ParseDuration(s)
	if err != nil {
		n, nerr := strconv.ParseUint(s, 10, 32)
		if nerr != nil {
			e.usagef("%s %q is not a duration (like 10s or 500ms)", what, s)
			return 0, false
		}
		d = time.Duration(n) * time.Second
	}
	if d < time.Millisecond {
		e.usagef("%s %q must be at least 1ms", what, s)
		return 0, false
	}
	return d, true
}

func leaseRow(l *client.Lease) []string {
	var att []string
	for _, a := range l.Attached {
		att = append(att, a.Kind+":"+a.Name)
	}
	return []string{u64(l.ID), l.TTL().String(), l.Remaining().String(), strings.Join(att, ",")}
}

var leaseHeader = []string{"ID", "TTL", "REMAINING", "ATTACHED"}

func cmdLeaseGrant(e *env, args []string) int {
	fs := e.newFlags("lease grant TTL")
	pos, err := e.parseArgs(fs, args, 1, 1, "TTL")
	if err != nil {
		return parseDone(err)
	}
	ttl, ok := e.parseTTL("TTL", pos[0])
	if !ok {
		return exitUsage
	}
	return e.call(func(ctx context.Context, c *client.Client) int {
		l, err := c.Grant(ctx, ttl)
		if err != nil {
			return e.fail(err)
		}
		e.show(l, leaseHeader[:3], func() [][]string { return [][]string{leaseRow(l)[:3]} })
		return exitOK
	})
}

func cmdLeaseKeepalive(e *env, args []string) int {
	fs := e.newFlags("lease keepalive ID [-once]")
	once := fs.Bool("once", false, "renew once and exit")
	pos, err := e.parseArgs(fs, args, 1, 1, "ID")
	if err != nil {
		return parseDone(err)
	}
	id, ok := e.parseID("lease ID", pos[0])
	if !ok {
		return exitUsage
	}
	c, err := e.newClient(e.ctx)
	if err != nil {
		return e.fail(err)
	}
	defer c.Close()
	report := func(l *client.Lease) {
		if e.json {
			e.printJSON(l)
			return
		}
		e.printLine("lease %d kept alive: ttl %s, remaining %s", l.ID, l.TTL(), l.Remaining())
	}
	if *once {
		ctx, cancel := e.oneShot()
		defer cancel()
		l, err := c.KeepAlive(ctx, id)
		if err != nil {
			return e.fail(err)
		}
		if e.json {
			e.printJSON(l)
		} else {
			e.printTable(leaseHeader[:3], [][]string{leaseRow(l)[:3]})
		}
		return exitOK
	}
	// The first keepalive says whether the lease exists at all.
	ctx, cancel := e.oneShot()
	sent := time.Now()
	l, err := c.KeepAlive(ctx, id)
	cancel()
	if err != nil {
		return e.fail(err)
	}
	report(l)
	// Count the deadline from the send time of the last keepalive that
	// succeeded: the lease cannot have been renewed before it was sent.
	deadline := sent.Add(l.Remaining())
	interval := max(l.TTL()/3, 10*time.Millisecond)
	next := time.NewTimer(interval)
	defer next.Stop()
	var lastErr string
	for {
		select {
		case <-e.ctx.Done():
			return exitInterrupted
		case <-next.C:
		}
		if time.Now().After(deadline) {
			e.warnf("lease %d lost: no keepalive succeeded before its deadline", id)
			return exitLost
		}
		kctx, kcancel := context.WithDeadline(e.ctx, deadline)
		sent := time.Now()
		l, err := c.KeepAlive(kctx, id)
		kcancel()
		switch {
		case err == nil:
			lastErr = ""
			deadline = sent.Add(l.Remaining())
			report(l)
			next.Reset(interval)
		case e.ctx.Err() != nil:
			return exitInterrupted
		case errors.Is(err, client.ErrLeaseNotFound):
			e.warnf("lease %d lost: it expired or was revoked", id)
			return exitLost
		default:
			if msg := err.Error(); msg != lastErr {
				_, m := classify(err)
				e.warnf("keepalive of lease %d failed: %s (retrying)", id, m)
				lastErr = msg
			}
			next.Reset(min(interval, 100*time.Millisecond))
		}
	}
}

func cmdLeaseRevoke(e *env, args []string) int {
	fs := e.newFlags("lease revoke ID")
	pos, err := e.parseArgs(fs, args, 1, 1, "ID")
	if err != nil {
		return parseDone(err)
	}
	id, ok := e.parseID("lease ID", pos[0])
	if !ok {
		return exitUsage
	}
	return e.call(func(ctx context.Context, c *client.Client) int {
		if err := c.Revoke(ctx, id); err != nil {
			return e.fail(err)
		}
		e.show(map[string]any{"id": id, "revoked": true}, []string{"ID", "REVOKED"}, func() [][]string {
			return [][]string{{u64(id), "true"}}
		})
		return exitOK
	})
}

func cmdLeaseLs(e *env, args []string) int {
	fs := e.newFlags("lease ls")
	if _, err := e.parseArgs(fs, args, 0, 0, "no arguments"); err != nil {
		return parseDone(err)
	}
	return e.call(func(ctx context.Context, c *client.Client) int {
		ls, err := c.Leases(ctx)
		if err != nil {
			return e.fail(err)
		}
		if ls == nil {
			ls = []client.Lease{}
		}
		e.show(ls, leaseHeader[:3], func() [][]string {
			rows := make([][]string, len(ls))
			for i := range ls {
				rows[i] = leaseRow(&ls[i])[:3]
			}
			return rows
		})
		return exitOK
	})
}

func cmdLeaseGet(e *env, args []string) int {
	fs := e.newFlags("lease get ID")
	pos, err := e.parseArgs(fs, args, 1, 1, "ID")
	if err != nil {
		return parseDone(err)
	}
	id, ok := e.parseID("lease ID", pos[0])
	if !ok {
		return exitUsage
	}
	return e.call(func(ctx context.Context, c *client.Client) int {
		l, err := c.TimeToLive(ctx, id)
		if err != nil {
			return e.fail(err)
		}
		e.show(l, leaseHeader, func() [][]string { return [][]string{leaseRow(l)} })
		return exitOK
	})
}
