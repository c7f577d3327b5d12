package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/client"
)

const alarmSynopsis = `  coordctl alarm list                   the cluster's alarms (a member whose state differs)
  coordctl alarm disarm MEMBER | -all    clear an alarm once the member's data was replaced
`

const shadowSynopsis = `  coordctl shadow status [-all]          the leader's comparison of the shadow (non-voting)
                                         members' digests: agreement, apply errors, lag
`

// cmdCheckOrConsistency is check NAME TOKEN, or check consistency.
func cmdCheckOrConsistency(e *env, args []string) int {
	if len(args) > 0 && args[0] == "consistency" && (len(args) == 1 || strings.HasPrefix(args[1], "-")) {
		e.cmd = "check consistency"
		return cmdCheckConsistency(e, args[1:])
	}
	return cmdCheck(e, args)
}

// memberDigest is one row of check consistency.
type memberDigest struct {
	Member string `json:"member"`
	Voter  bool   `json:"voter"`
	Index  uint64 `json:"index"`
	Digest string `json:"digest,omitempty"`
	Match  string `json:"match"`
	Error  string `json:"error,omitempty"`
}

// cmdCheckConsistency commits a digest point (unless -no-point: then the
// latest index every member digested), asks every member for its digest
// there, and prints the table. Exit 1 if a member differs or does not
// answer.
func cmdCheckConsistency(e *env, args []string) int {
	fs := e.newFlags("check consistency [-no-point]")
	noPoint := fs.Bool("no-point", false, "commit nothing: compare at the latest index every member already digested")
	if _, err := e.parseArgs(fs, args, 0, 0, "no arguments"); err != nil {
		return parseDone(err)
	}
	return e.call(func(ctx context.Context, c *client.Client) int {
		ms, err := c.Members(ctx)
		if err != nil {
			return e.fail(err)
		}
		var at uint64
		if !*noPoint {
			if at, err = c.DigestPoint(ctx); err != nil {
				return e.fail(err)
			}
		}
		scheme := "http://"
		for _, ep := range e.endpoints {
			if strings.HasPrefix(ep, "https://") || e.tls != nil {
				scheme = "https://"
			}
		}
		rows := make([]memberDigest, len(ms))
		digests := make([]map[uint64]string, len(ms))
		var wg sync.WaitGroup
		for i, m := range ms {
			rows[i] = memberDigest{Member: m.ID, Voter: m.Voter}
			wg.Add(1)
			go func() {
				defer wg.Done()
				digests[i], rows[i].Error = e.memberDigests(ctx, scheme+m.HTTPAddr, at)
			}()
		}
		wg.Wait()
		if at == 0 {
			// The latest index every member that answered has.
			for idx := range digests[0] {
				common := true
				for _, d := range digests {
					if _, ok := d[idx]; d != nil && !ok {
						common = false
					}
				}
				if common && idx > at {
					at = idx
				}
			}
		}
		count := map[string]int{}
		for i := range rows {
			rows[i].Index = at
			rows[i].Digest = digests[i][at]
			if rows[i].Digest != "" {
				count[rows[i].Digest]++
			}
		}
		major, n := "", 0
		for d, k := range count {
			if k > n {
				major, n = d, k
			}
		}
		bad := 0
		for i := range rows {
			switch {
			case rows[i].Digest == "":
				rows[i].Match = "-"
				bad++
			case rows[i].Digest == major && n*2 > len(rows):
				rows[i].Match = "ok"
			default:
				rows[i].Match = "DIFFERS"
				bad++
			}
		}
		e.show(rows, []string{"MEMBER", "VOTER", "INDEX", "DIGEST", "MATCH", "ERROR"}, func() [][]string {
			out := make([][]string, len(rows))
			for i, r := range rows {
				d := r.Digest
				if len(d) > 16 {
					d = d[:16]
				}
				out[i] = []string{r.Member, fmt.Sprint(r.Voter), u64(r.Index), d, r.Match, r.Error}
			}
			return out
		})
		if at == 0 {
			e.warnf("no index that every member digested: run it without -no-point")
			return exitFailed
		}
		if bad > 0 {
			e.warnf("%d of %d members do not match the majority's digest at index %d", bad, len(rows), at)
			return exitFailed
		}
		return exitOK
	})
}

// memberDigests asks one member for its digests: the one at index at
// (waiting until it has it), or every one it keeps when at is 0.
func (e *env) memberDigests(ctx context.Context, endpoint string, at uint64) (map[uint64]string, string) {
	c, err := client.New(ctx, client.Config{Endpoints: []string{endpoint}, RetryTimeout: min(e.timeout, 5*time.Second), Token: e.token, TLS: e.tls})
	if err != nil {
		return nil, err.Error()
	}
	defer c.Close()
	for {
		ds, err := c.Digests(ctx, 0, at)
		if err != nil {
			_, msg := classify(err)
			return nil, msg
		}
		out := map[uint64]string{}
		for _, d := range ds.Digests {
			out[d.Index] = d.Digest
		}
		if at == 0 || out[at] != "" {
			return out, ""
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Sprintf("no digest at %d yet (applied %d)", at, ds.AppliedIndex)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func cmdAlarmList(e *env, args []string) int {
	fs := e.newFlags("alarm list")
	if _, err := e.parseArgs(fs, args, 0, 0, "no arguments"); err != nil {
		return parseDone(err)
	}
	return e.call(func(ctx context.Context, c *client.Client) int {
		as, err := c.Alarms(ctx)
		if err != nil {
			return e.fail(err)
		}
		if as == nil {
			as = []api.Alarm{}
		}
		e.show(as, []string{"MEMBER", "KIND", "INDEX", "DIGEST", "EXPECTED", "RAISED_INDEX", "RAISED_AT", "DETAIL"}, func() [][]string {
			rows := make([][]string, len(as))
			for i, a := range as {
				rows[i] = []string{a.Member, a.Kind, u64(a.Index), short(a.Digest), short(a.Expected), u64(a.RaisedIndex),
					a.RaisedAt.Format(time.RFC3339), a.Detail}
			}
			return rows
		})
		return exitOK
	})
}

func short(d string) string {
	if len(d) > 16 {
		return d[:16]
	}
	return d
}

func cmdAlarmDisarm(e *env, args []string) int {
	fs := e.newFlags("alarm disarm MEMBER | -all")
	all := fs.Bool("all", false, "clear every alarm")
	pos, err := e.parseArgs(fs, args, 0, 1, "MEMBER")
	if err != nil {
		return parseDone(err)
	}
	if (len(pos) == 1) == *all {
		return e.usagef("alarm disarm needs one MEMBER or -all\nusage:\n%s", alarmSynopsis)
	}
	member := ""
	if len(pos) == 1 {
		member = pos[0]
	}
	return e.call(func(ctx context.Context, c *client.Client) int {
		n, err := c.DisarmAlarm(ctx, member)
		if err != nil {
			var ce *client.Error
			if errors.As(err, &ce) && ce.Code == api.CodeAlarmNotFound {
				e.warnf("no alarm names %s", member)
				return exitFailed
			}
			return e.fail(err)
		}
		e.show(map[string]any{"member": member, "disarmed": n}, []string{"MEMBER", "DISARMED"}, func() [][]string {
			name := member
			if name == "" {
				name = "(all)"
			}
			return [][]string{{name, fmt.Sprint(n)}}
		})
		return exitOK
	})
}

func cmdShadowStatus(e *env, args []string) int {
	fs := e.newFlags("shadow status [-all]")
	all := fs.Bool("all", false, "every member, voters too")
	if _, err := e.parseArgs(fs, args, 0, 0, "no arguments"); err != nil {
		return parseDone(err)
	}
	return e.call(func(ctx context.Context, c *client.Client) int {
		st, err := c.ShadowStatus(ctx, *all)
		if err != nil {
			return e.fail(err)
		}
		sort.SliceStable(st.Members, func(i, j int) bool { return st.Members[i].Shadow && !st.Members[j].Shadow })
		e.show(st, []string{"MEMBER", "SHADOW", "VOTER", "COMPARED", "AGREED", "MISMATCHES", "AGREED_ENTRIES", "LAST_AGREED", "APPLIED", "LAG", "APPLY_ERRORS", "READS_COMPARED", "READS_DIFFERED", "ERROR"}, func() [][]string {
			rows := make([][]string, len(st.Members))
			for i, m := range st.Members {
				rows[i] = []string{m.Member, fmt.Sprint(m.Shadow), fmt.Sprint(m.Voter), u64(m.Compared), u64(m.Agreed), u64(m.Mismatches),
					u64(m.AgreedEntries), u64(m.LastAgreedIndex), u64(m.AppliedIndex), u64(m.LagEntries), u64(m.ApplyErrors),
					u64(m.ReadsCompared), u64(m.ReadsDiffered), m.Error}
			}
			return rows
		})
		bad := false
		for _, m := range st.Members {
			bad = bad || m.Mismatches > 0 || m.ReadsDiffered > 0
		}
		if bad {
			e.warnf("a member's digests or answers differed from the majority's: do not upgrade; see coordctl alarm list")
			return exitFailed
		}
		return exitOK
	})
}
