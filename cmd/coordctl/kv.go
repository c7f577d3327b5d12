package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/coordd/coordd/client"
)

const kvSynopsis = `  coordctl kv get KEY [-stale] [-raw]
  coordctl kv put KEY VALUE [-cas N | -create] [-lease ID] [-fence NAME:TOKEN]   (VALUE "-" reads stdin)
  coordctl kv del KEY [-cas N | -prefix] [-fence NAME:TOKEN]
  coordctl kv ls [PREFIX]
  coordctl kv watch KEY
`

// optUint is a uint64 flag that remembers whether it was given.
type optUint struct {
	v   uint64
	set bool
}

func (o *optUint) String() string {
	if o == nil || !o.set {
		return ""
	}
	return strconv.FormatUint(o.v, 10)
}

func (o *optUint) Set(s string) error {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return fmt.Errorf("%q is not a non-negative integer", s)
	}
	o.v, o.set = v, true
	return nil
}

// parseID parses a positive integer argument such as a lease id or token.
func (e *env) parseID(what, s string) (uint64, bool) {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v == 0 {
		e.usagef("%s %q must be a positive integer", what, s)
		return 0, false
	}
	return v, true
}

func kvRow(kv *client.KV) []string {
	return []string{kv.Key, display(kv.Value), u64(kv.CreateIndex), u64(kv.ModifyIndex), u64(kv.Version)}
}

var kvHeader = []string{"KEY", "VALUE", "CREATE", "MODIFY", "VERSION"}

func cmdKVGet(e *env, args []string) int {
	fs := e.newFlags("kv get KEY [-stale] [-raw]")
	stale := fs.Bool("stale", false, "read from whichever node answers, without asking the leader (may be behind)")
	raw := fs.Bool("raw", false, "print only the value's bytes, exactly")
	pos, err := e.parseArgs(fs, args, 1, 1, "KEY")
	if err != nil {
		return parseDone(err)
	}
	return e.call(func(ctx context.Context, c *client.Client) int {
		var opts []client.ReadOption
		if *stale {
			opts = append(opts, client.Stale())
		}
		kv, err := c.Get(ctx, pos[0], opts...)
		if err != nil {
			return e.fail(err)
		}
		if *raw {
			if _, err := e.stdout.Write(kv.Value); err != nil {
				return e.fail(err)
			}
			return exitOK
		}
		e.show(kv, kvHeader, func() [][]string { return [][]string{kvRow(kv)} })
		return exitOK
	})
}

func cmdKVPut(e *env, args []string) int {
	fs := e.newFlags("kv put KEY VALUE [-cas N | -create] [-lease ID] [-fence NAME:TOKEN]")
	fence := fs.String("fence", "", "write only while `NAME:TOKEN` is a current holder's fencing token of lock or election NAME")
	var cas, lease optUint
	fs.Var(&cas, "cas", "write only if the key's modify index is `N` (0: only if absent)")
	create := fs.Bool("create", false, "write only if the key does not exist")
	fs.Var(&lease, "lease", "attach the key to lease `ID`: it is deleted with the lease")
	pos, err := e.parseArgs(fs, args, 2, 2, "KEY VALUE")
	if err != nil {
		return parseDone(err)
	}
	if cas.set && *create {
		return e.usagef("-cas and -create cannot be combined")
	}
	if lease.set && lease.v == 0 {
		return e.usagef("-lease 0: a lease id is a positive integer")
	}
	key, value := pos[0], []byte(pos[1])
	if pos[1] == "-" {
		if value, err = io.ReadAll(e.stdin); err != nil {
			return e.usagef("read the value from stdin: %v", err)
		}
	}
	var opts []client.PutOption
	switch {
	case *create:
		opts = append(opts, client.CreateOnly())
	case cas.set:
		opts = append(opts, client.WithCAS(cas.v))
	}
	if lease.set {
		opts = append(opts, client.WithLease(lease.v))
	}
	if *fence != "" {
		f, ok := e.parseFence(*fence)
		if !ok {
			return exitUsage
		}
		opts = append(opts, client.FencedBy(f))
	}
	return e.call(func(ctx context.Context, c *client.Client) int {
		res, err := c.Put(ctx, key, value, opts...)
		if err != nil {
			return e.fail(err)
		}
		e.show(res, []string{"KEY", "CREATE", "MODIFY", "VERSION"}, func() [][]string {
			return [][]string{{res.Key, u64(res.CreateIndex), u64(res.ModifyIndex), u64(res.Version)}}
		})
		return exitOK
	})
}

func cmdKVDel(e *env, args []string) int {
	fs := e.newFlags("kv del KEY [-cas N | -prefix] [-fence NAME:TOKEN]")
	fence := fs.String("fence", "", "delete only while `NAME:TOKEN` is a current holder's fencing token of lock or election NAME")
	var cas optUint
	fs.Var(&cas, "cas", "delete only if the key's modify index is `N`")
	prefix := fs.Bool("prefix", false, "delete every key under KEY as a prefix")
	pos, err := e.parseArgs(fs, args, 1, 1, "KEY")
	if err != nil {
		return parseDone(err)
	}
	if cas.set && *prefix {
		return e.usagef("-cas and -prefix cannot be combined")
	}
	if *prefix && pos[0] == "" {
		return e.usagef("refusing to delete every key: give a non-empty prefix")
	}
	var opts []client.DeleteOption
	switch {
	case *prefix:
		opts = append(opts, client.DeletePrefix())
	case cas.set:
		opts = append(opts, client.DeleteCAS(cas.v))
	}
	if *fence != "" {
		f, ok := e.parseFence(*fence)
		if !ok {
			return exitUsage
		}
		opts = append(opts, client.FencedBy(f))
	}
	return e.call(func(ctx context.Context, c *client.Client) int {
		res, err := c.Delete(ctx, pos[0], opts...)
		if err != nil {
			return e.fail(err)
		}
		e.show(res, []string{"DELETED", "INDEX"}, func() [][]string {
			return [][]string{{strconv.Itoa(res.Deleted), u64(res.Index)}}
		})
		return exitOK
	})
}

func cmdKVLs(e *env, args []string) int {
	fs := e.newFlags("kv ls [PREFIX] [-stale]")
	stale := fs.Bool("stale", false, "read from whichever node answers (may be behind)")
	pos, err := e.parseArgs(fs, args, 0, 1, "[PREFIX]")
	if err != nil {
		return parseDone(err)
	}
	prefix := ""
	if len(pos) == 1 {
		prefix = pos[0]
	}
	return e.call(func(ctx context.Context, c *client.Client) int {
		var opts []client.ReadOption
		if *stale {
			opts = append(opts, client.Stale())
		}
		kvs, _, err := c.List(ctx, prefix, opts...)
		if err != nil {
			return e.fail(err)
		}
		if kvs == nil {
			kvs = []client.KV{}
		}
		e.show(kvs, kvHeader, func() [][]string {
			rows := make([][]string, len(kvs))
			for i := range kvs {
				rows[i] = kvRow(&kvs[i])
			}
			return rows
		})
		return exitOK
	})
}

// watchJSON is one event of kv watch in JSON: KV is null when the key does
// not exist.
type watchJSON struct {
	Key   string     `json:"key"`
	Index uint64     `json:"index"`
	KV    *client.KV `json:"kv"`
}

func cmdKVWatch(e *env, args []string) int {
	fs := e.newFlags("kv watch KEY")
	pos, err := e.parseArgs(fs, args, 1, 1, "KEY")
	if err != nil {
		return parseDone(err)
	}
	key := pos[0]
	c, err := e.newClient(e.ctx)
	if err != nil {
		return e.fail(err)
	}
	defer c.Close()
	var lastErr string
	for ev := range c.Watch(e.ctx, key) {
		if ev.Err != nil {
			if msg := ev.Err.Error(); msg != lastErr {
				_, m := classify(ev.Err)
				e.warnf("%s (retrying)", m)
				lastErr = msg
			}
			continue
		}
		lastErr = ""
		switch {
		case e.json:
			e.printJSON(watchJSON{Key: key, Index: ev.Index, KV: ev.KV})
		case ev.KV == nil:
			e.printLine("%s: absent (index %d)", key, ev.Index)
		default:
			e.printLine("%s = %s (modify %d, version %d)", key, display(ev.KV.Value), ev.KV.ModifyIndex, ev.KV.Version)
		}
	}
	return exitInterrupted // the watch ends only with ctx
}

// parseFence parses NAME:TOKEN (the name may contain ':').
func (e *env) parseFence(s string) (client.Fence, bool) {
	i := strings.LastIndexByte(s, ':')
	if i <= 0 {
		e.usagef("-fence %q: want NAME:TOKEN", s)
		return client.Fence{}, false
	}
	tok, ok := e.parseID("-fence token", s[i+1:])
	return client.Fence{Name: s[:i], Token: tok}, ok
}
