package main

import (
	"context"
	"errors"
	"time"

	"github.com/coordd/coordd/client"
)

// closeTimeout bounds the clean-up calls (resign, unlock, revoke) made after
// the command's own context ended.
const closeTimeout = 5 * time.Second

// startSession grants the lease that elect and lock hold things with.
func (e *env) startSession(c *client.Client, ttl time.Duration) (*client.Session, int) {
	ctx, cancel := e.oneShot()
	defer cancel()
	s, err := client.NewSession(ctx, c, ttl)
	if err != nil {
		return nil, e.fail(err)
	}
	return s, exitOK
}

// closeSession stops the keepalives and revokes the lease, releasing what
// it still holds.
func (e *env) closeSession(s *client.Session) {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		e.warnf("close session (lease %d): %v", s.Lease(), err)
	}
}

// electJSON is an event of elect in JSON.
type electJSON struct {
	Event string `json:"event"` // "leading", "resigned", "lost"
	Name  string `json:"name"`
	Lease uint64 `json:"lease"`
	Token uint64 `json:"token"`
	Value string `json:"value,omitempty"`
	Error string `json:"error,omitempty"`
}

func cmdElect(e *env, args []string) int {
	fs := e.newFlags("elect NAME [VALUE] [-ttl 10s]")
	ttl := fs.Duration("ttl", 10*time.Second, "TTL of the session's lease")
	pos, err := e.parseArgs(fs, args, 1, 2, "NAME [VALUE]")
	if err != nil {
		return parseDone(err)
	}
	if *ttl <= 0 {
		return e.usagef("-ttl %s must be positive", *ttl)
	}
	name, value := pos[0], ""
	if len(pos) == 2 {
		value = pos[1]
	}
	c, err := e.newClient(e.ctx)
	if err != nil {
		return e.fail(err)
	}
	defer c.Close()
	s, code := e.startSession(c, *ttl)
	if s == nil {
		return code
	}
	defer e.closeSession(s)
	e.warnf("campaigning for %q with lease %d", name, s.Lease())
	l, err := client.NewElection(s, name).Campaign(e.ctx, value)
	if err != nil {
		// Campaign withdrew the candidacy if ctx ended; closing the session
		// revokes the lease in any case.
		return e.fail(err)
	}
	ev := electJSON{Event: "leading", Name: name, Lease: s.Lease(), Token: l.Token(), Value: value}
	if e.json {
		e.printJSON(ev)
	} else {
		e.printLine("leading %q: token %d, lease %d", name, l.Token(), s.Lease())
	}
	select {
	case <-e.ctx.Done():
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		defer cancel()
		if err := l.Resign(ctx); err != nil {
			// The session is revoked next, which ends the leadership anyway.
			e.warnf("resign: %v", err)
		}
		ev.Event = "resigned"
		if e.json {
			e.printJSON(ev)
		} else {
			e.printLine("resigned %q", name)
		}
		return exitInterrupted
	case <-l.Context().Done():
		cause := context.Cause(l.Context())
		ev.Event, ev.Error = "lost", cause.Error()
		if e.json {
			e.printJSON(ev)
		}
		e.warnf("leadership of %q lost: %v", name, cause)
		return exitLost
	}
}

// observeJSON is one event of observe in JSON: Leader is null when nobody
// leads.
type observeJSON struct {
	Name      string            `json:"name"`
	Leader    *client.Candidate `json:"leader"`
	Changes   uint64            `json:"changes"`
	Coalesced uint64            `json:"coalesced,omitempty"`
	Index     uint64            `json:"index"`
}

// cmdObserve needs no session: it only reads.
func cmdObserve(e *env, args []string) int {
	fs := e.newFlags("observe NAME")
	pos, err := e.parseArgs(fs, args, 1, 1, "NAME")
	if err != nil {
		return parseDone(err)
	}
	name := pos[0]
	c, err := e.newClient(e.ctx)
	if err != nil {
		return e.fail(err)
	}
	defer c.Close()
	var lastErr string
	var last *client.Candidate
	first := true
	for ev := range c.Observe(e.ctx, name) {
		if ev.Err != nil {
			if msg := ev.Err.Error(); msg != lastErr {
				code, m := classify(ev.Err)
				if code == exitUsage {
					return e.fail(ev.Err) // a bad name: retrying will not help
				}
				e.warnf("%s (retrying)", m)
				lastErr = msg
			}
			continue
		}
		lastErr = ""
		// Observe reports every change of the election, waiting candidates
		// included; print the changes of leader (or of its value).
		if !first && sameLeader(last, ev.Leader) && ev.Coalesced == 0 {
			continue
		}
		first, last = false, ev.Leader
		if e.json {
			e.printJSON(observeJSON{Name: name, Leader: ev.Leader, Changes: ev.Changes, Coalesced: ev.Coalesced, Index: ev.Index})
			continue
		}
		note := ""
		if ev.Coalesced > 0 {
			note = ", " + u64(ev.Coalesced) + " earlier changes coalesced"
		}
		if ev.Leader == nil {
			e.printLine("%s: no leader (index %d%s)", name, ev.Index, note)
			continue
		}
		e.printLine("%s: leader lease %d, token %d, value %s (index %d%s)", name,
			ev.Leader.Lease, ev.Leader.Token, display([]byte(ev.Leader.Value)), ev.Index, note)
	}
	if e.ctx.Err() == nil {
		return e.fail(errors.New("the observation ended unexpectedly"))
	}
	return exitInterrupted
}

func sameLeader(a, b *client.Candidate) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Lease == b.Lease && a.Token == b.Token && a.Value == b.Value
}
