package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Crash safety: a SIGKILL at any moment loses nothing acknowledged. Three
// coordd processes run with aggressive snapshot settings (so that snapshots
// and log compaction happen all along and restarts restore from snapshots)
// while KV writers, lease grants and election rounds run through random
// nodes. Each round SIGKILLs one node (the leader or a follower) or all
// three at once, restarts them with the same data dirs, and then checks
// that every acknowledged write, lease and leadership is there and that
// fencing tokens only ever increased.
//
// `make test` runs crashDefaultRounds rounds; `make test-crash` runs 50
// (COORDD_CRASH_ROUNDS).

const (
	crashDefaultRounds = 6
	// crashLeaseTTL is far longer than any run: no lease may expire.
	crashLeaseTTL    = "1h"
	crashLeaseTTLMs  = int64(time.Hour / time.Millisecond)
	crashElections   = 3
	crashKVWriters   = 3
	crashReadyWithin = 20 * time.Second
	crashCheckWithin = 20 * time.Second
)

var crashSnapshotFlags = []string{"-snapshot-threshold", "64", "-trailing-logs", "32", "-snapshot-interval", "2s"}

func crashRounds(t *testing.T) int {
	t.Helper()
	v := os.Getenv("COORDD_CRASH_ROUNDS")
	if v == "" {
		return crashDefaultRounds
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("COORDD_CRASH_ROUNDS=%q: want a positive integer", v)
	}
	return n
}

// crashStartCluster is startCluster with extra flags for every node.
func crashStartCluster(t *testing.T, n int, extra ...string) []*proc {
	t.Helper()
	return startClusterWith(t, n, "debug", crashReadyWithin, extra...)
}

// crashKillAll SIGKILLs every process in ps at once (all signals first),
// then waits for every exit.
func crashKillAll(ps []*proc) {
	for _, p := range ps {
		if p.running() {
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		}
	}
	for _, p := range ps {
		if p.cmd != nil {
			<-p.exited
		}
	}
}

// crashDo sends one request and decodes a 200 answer into out. A transport
// error returns code 0.
func crashDo(ctx context.Context, method, url, body string, out any) (int, error) {
	return crashDoWith(ctx, httpc, method, url, body, out)
}

// crashCheckClient is for the checks, whose reads grow with the state.
var crashCheckClient = &http.Client{Timeout: 15 * time.Second}

// crashCheckDo is crashDo for the checks.
func crashCheckDo(method, url string, out any) (int, error) {
	return crashDoWith(context.Background(), crashCheckClient, method, url, "", out)
}

func crashDoWith(ctx context.Context, hc *http.Client, method, url, body string, out any) (int, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, err
	}
	if body != "" && method == http.MethodPost {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, fmt.Errorf("%s %s: %d %s", method, url, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: %v: %.200s", method, url, err, b)
		}
	}
	return resp.StatusCode, nil
}

type crashHolder struct {
	Lease uint64 `json:"lease"`
	Token uint64 `json:"token"`
}

type crashElectionJSON struct {
	Leader  *crashHolder `json:"leader"`
	Token   uint64       `json:"token"`
	Changes uint64       `json:"changes"`
}

type crashCampaignJSON struct {
	Leader   bool              `json:"leader"`
	Token    uint64            `json:"token"`
	Election crashElectionJSON `json:"election"`
}

type crashLeaseJSON struct {
	ID    uint64 `json:"id"`
	TTLMs int64  `json:"ttl_ms"`
}

type crashObs struct {
	at           time.Time
	round        int32
	source       string
	lease, token uint64 // lease 0: no leader
}

func (o crashObs) String() string {
	return fmt.Sprintf("%s round %d %s: lease %d token %d", o.at.Format("15:04:05.000"), o.round, o.source, o.lease, o.token)
}

// crashElection is the history of one election name. mu serialises every
// operation on the name (the campaign loop and the checks), so the order
// of obs is the real-time order of the operations.
type crashElection struct {
	name string

	mu         sync.Mutex
	obs        []crashObs
	maxToken   uint64
	last       crashHolder // last observed holder; Lease 0: none
	ack        *crashHolder
	ackAt      time.Time
	ackResign  bool // a resign of ack was sent (whatever its outcome)
	acks       int
	resigns    int
	seenHolder int // observations of the current holder
	violations []string
}

// observe records what an answer (campaign, resign, read) said about the
// holder and checks it against everything observed before. e.mu is held.
func (e *crashElection) observe(round int32, source string, el crashElectionJSON) {
	o := crashObs{at: time.Now(), round: round, source: source}
	if el.Leader != nil {
		o.lease, o.token = el.Leader.Lease, el.Leader.Token
		if el.Token != el.Leader.Token {
			e.violate(fmt.Sprintf("%s: election token %d differs from the leader's token %d", o, el.Token, el.Leader.Token))
		}
	}
	e.obs = append(e.obs, o)
	if o.lease != 0 {
		switch {
		case o.token < e.maxToken:
			e.violate(fmt.Sprintf("token went backwards: %s after the highest token seen %d", o, e.maxToken))
		case o.lease != e.last.Lease && o.token <= e.maxToken:
			e.violate(fmt.Sprintf("new holder without a higher token: %s, previous holder lease %d token %d, highest token seen %d",
				o, e.last.Lease, e.last.Token, e.maxToken))
		case o.lease == e.last.Lease && o.token != e.last.Token && o.token <= e.maxToken:
			e.violate(fmt.Sprintf("holder's token changed without increasing: %s, was %d", o, e.last.Token))
		}
		e.maxToken = max(e.maxToken, o.token)
	}
	if o.lease == e.last.Lease && o.token == e.last.Token {
		e.seenHolder++
	} else {
		e.seenHolder = 1
	}
	e.last = crashHolder{Lease: o.lease, Token: o.token}
	if e.ack != nil && !e.ackResign && (o.lease != e.ack.Lease || o.token != e.ack.Token) {
		e.violate(fmt.Sprintf("acknowledged leadership lost: lease %d token %d (acknowledged %s, never resigned), but %s",
			e.ack.Lease, e.ack.Token, e.ackAt.Format("15:04:05.000"), o))
	}
}

// violate records a failed check with the observations that led to it.
func (e *crashElection) violate(msg string) {
	var recent []string
	for _, o := range e.obs[max(0, len(e.obs)-8):] {
		recent = append(recent, "\t"+o.String())
	}
	e.violations = append(e.violations, msg+"\n\tlatest observations:\n"+strings.Join(recent, "\n"))
}

// crashRun is the workload and its record of what was acknowledged.
type crashRun struct {
	procs []*proc
	round atomic.Int32
	// paused holds the KV writers and the lease granter during the checks,
	// so that the state (and the time to check it) grows with the rounds,
	// not with the time spent checking.
	paused atomic.Bool

	kvMu      sync.Mutex
	kvAcked   map[string]string
	kvUnknown int
	kvTried   [crashKVWriters]atomic.Int64

	leaseMu      sync.Mutex
	leases       map[uint64]time.Time
	leaseUnknown int

	elections []*crashElection
}

func crashKVKey(w, i int) string   { return fmt.Sprintf("crash/w%d/%06d", w, i) }
func crashKVValue(w, i int) string { return fmt.Sprintf("v-%d-%d", w, i) }

func (c *crashRun) pick(rng *rand.Rand) *proc { return c.procs[rng.IntN(len(c.procs))] }

func (c *crashRun) waitUnpaused(ctx context.Context) {
	for c.paused.Load() && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
}

func (c *crashRun) kvWriter(ctx context.Context, w, maxWrites int) {
	rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
	for i := range maxWrites {
		c.waitUnpaused(ctx)
		if ctx.Err() != nil {
			return
		}
		key, val := crashKVKey(w, i), crashKVValue(w, i)
		c.kvTried[w].Store(int64(i + 1))
		_, err := crashDo(ctx, http.MethodPut, c.pick(rng).url()+"/v1/kv/"+key, val, nil)
		c.kvMu.Lock()
		if err == nil {
			c.kvAcked[key] = val
		} else {
			c.kvUnknown++
		}
		c.kvMu.Unlock()
		if err != nil {
			time.Sleep(20 * time.Millisecond)
		} else {
			time.Sleep(time.Duration(rng.IntN(4)) * time.Millisecond)
		}
	}
}

// grant asks for a lease and records it when acknowledged.
func (c *crashRun) grant(ctx context.Context, p *proc) (uint64, error) {
	var l crashLeaseJSON
	_, err := crashDo(ctx, http.MethodPost, p.url()+"/v1/leases", `{"ttl":"`+crashLeaseTTL+`"}`, &l)
	c.leaseMu.Lock()
	defer c.leaseMu.Unlock()
	if err != nil {
		c.leaseUnknown++
		return 0, err
	}
	if l.ID == 0 {
		return 0, fmt.Errorf("grant answered lease id 0")
	}
	c.leases[l.ID] = time.Now()
	return l.ID, nil
}

func (c *crashRun) leaseGranter(ctx context.Context, maxGrants int) {
	rng := rand.New(rand.NewPCG(99, uint64(time.Now().UnixNano())))
	for range maxGrants {
		c.waitUnpaused(ctx)
		if ctx.Err() != nil {
			return
		}
		_, err := c.grant(ctx, c.pick(rng))
		if err != nil {
			time.Sleep(20 * time.Millisecond)
		} else {
			time.Sleep(time.Duration(10+rng.IntN(30)) * time.Millisecond)
		}
	}
}

// campaigner runs rounds of one election: when nobody leads, it grants a
// fresh lease and campaigns; when a lease leads, it reads the election a
// few times and then resigns it with its token, so that new tokens are
// issued all along.
func (c *crashRun) campaigner(ctx context.Context, e *crashElection, seed uint64, maxSteps int) {
	rng := rand.New(rand.NewPCG(seed, uint64(time.Now().UnixNano())))
	for range maxSteps {
		if ctx.Err() != nil {
			return
		}
		ok := c.campaignStep(ctx, e, rng)
		if !ok {
			time.Sleep(20 * time.Millisecond)
		} else {
			time.Sleep(time.Duration(5+rng.IntN(20)) * time.Millisecond)
		}
	}
}

func (c *crashRun) campaignStep(ctx context.Context, e *crashElection, rng *rand.Rand) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	round := c.round.Load()
	var el crashElectionJSON
	if _, err := crashDo(ctx, http.MethodGet, c.pick(rng).url()+"/v1/elections/"+e.name, "", &el); err != nil {
		return false
	}
	e.observe(round, "read", el)
	if el.Leader == nil {
		lease, err := c.grant(ctx, c.pick(rng))
		if err != nil {
			return false
		}
		var cr crashCampaignJSON
		body := fmt.Sprintf(`{"lease":%d,"value":"crash-%d"}`, lease, lease)
		if _, err := crashDo(ctx, http.MethodPost, c.pick(rng).url()+"/v1/elections/"+e.name+"/campaign", body, &cr); err != nil {
			return false
		}
		e.observe(round, "campaign", cr.Election)
		if cr.Leader {
			if cr.Election.Leader == nil || cr.Election.Leader.Lease != lease || cr.Election.Leader.Token != cr.Token {
				e.violate(fmt.Sprintf("round %d: campaign of lease %d answered leader with token %d but the election it returned is %+v",
					round, lease, cr.Token, cr.Election.Leader))
			}
			e.ack, e.ackAt, e.ackResign = &crashHolder{Lease: lease, Token: cr.Token}, time.Now(), false
			e.acks++
		}
		return true
	}
	// Somebody leads (ours, acknowledged or not): hold a little, then resign.
	if e.seenHolder < 2 || rng.IntN(2) == 0 {
		return true
	}
	h := *el.Leader
	if e.ack != nil && e.ack.Lease == h.Lease {
		e.ackResign = true
	}
	var after crashElectionJSON
	body := fmt.Sprintf(`{"lease":%d,"token":%d}`, h.Lease, h.Token)
	if _, err := crashDo(ctx, http.MethodPost, c.pick(rng).url()+"/v1/elections/"+e.name+"/resign", body, &after); err != nil {
		return false
	}
	e.resigns++
	e.observe(round, "resign", after)
	return true
}

func (c *crashRun) violations() []string {
	var out []string
	for _, e := range c.elections {
		e.mu.Lock()
		for _, v := range e.violations {
			out = append(out, e.name+": "+v)
		}
		e.mu.Unlock()
	}
	return out
}

// crashLeader returns the node that says it leads, waiting up to
// crashCheckWithin.
func crashLeader(t *testing.T, procs []*proc) *proc {
	t.Helper()
	deadline := time.Now().Add(crashCheckWithin)
	for time.Now().Before(deadline) {
		for _, p := range procs {
			if !p.running() {
				continue
			}
			if st, err := getStatus(p); err == nil && st.State == "Leader" {
				return p
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no leader within %s", crashCheckWithin)
	return nil
}

// crashLinearizable runs read against the leader until it answers 200
// (transport errors and refusals such as 503 are retried, never a 200 that
// lacks something).
func crashLinearizable(t *testing.T, procs []*proc, what string, read func(p *proc) (int, error)) {
	t.Helper()
	deadline := time.Now().Add(crashCheckWithin)
	for {
		p := crashLeader(t, procs)
		code, err := read(p)
		if err == nil {
			return
		}
		if code == http.StatusOK {
			t.Fatalf("%s through leader %s: %v", what, p.id, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no answer within %s: %v", what, crashCheckWithin, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// listKV reads every crash/ key from p and checks that each is a write that
// was tried, with its value.
func (c *crashRun) listKV(p *proc, stale bool) (map[string]string, int, error) {
	q := ""
	if stale {
		q = "&stale"
	}
	var got []kv
	code, err := crashCheckDo(http.MethodGet, p.url()+"/v1/kv/crash/?prefix"+q, &got)
	if err != nil {
		return nil, code, err
	}
	have := make(map[string]string, len(got))
	for _, e := range got {
		w, i, ok := crashParseKey(e.Key)
		if !ok || w >= crashKVWriters || e.Value != crashKVValue(w, i) || int64(i) >= c.kvTried[w].Load() {
			return nil, code, fmt.Errorf("%s: %s=%q was never written", p.id, e.Key, e.Value)
		}
		have[e.Key] = e.Value
	}
	return have, code, nil
}

// crashParseKey is the inverse of crashKVKey.
func crashParseKey(key string) (w, i int, ok bool) {
	rest, ok := strings.CutPrefix(key, "crash/w")
	if !ok {
		return 0, 0, false
	}
	ws, is, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, 0, false
	}
	w, err1 := strconv.Atoi(ws)
	i, err2 := strconv.Atoi(is)
	if err1 != nil || err2 != nil || w < 0 || i < 0 || key != crashKVKey(w, i) {
		return 0, 0, false
	}
	return w, i, true
}

func (c *crashRun) ackedKV() map[string]string {
	c.kvMu.Lock()
	defer c.kvMu.Unlock()
	out := make(map[string]string, len(c.kvAcked))
	for k, v := range c.kvAcked {
		out[k] = v
	}
	return out
}

func crashMissing(want, have map[string]string) (string, int) {
	first, n := "", 0
	for k, v := range want {
		if have[k] != v {
			if n == 0 || k < first {
				first = k
			}
			n++
		}
	}
	if n == 0 {
		return "", 0
	}
	return fmt.Sprintf("%s=%s (have %q)", first, want[first], have[first]), n
}

// checkKV: every write acknowledged before the check is in a linearizable
// read, and each node's own state catches up to hold all of them.
func (c *crashRun) checkKV(t *testing.T, round int) {
	t.Helper()
	want := c.ackedKV()
	crashLinearizable(t, c.procs, fmt.Sprintf("round %d: linearizable KV read", round), func(p *proc) (int, error) {
		have, code, err := c.listKV(p, false)
		if err != nil {
			return code, err
		}
		if first, n := crashMissing(want, have); n > 0 {
			return code, fmt.Errorf("%d of %d acknowledged writes missing, first %s", n, len(want), first)
		}
		return code, nil
	})
	for _, p := range c.procs {
		deadline := time.Now().Add(crashCheckWithin)
		for {
			have, code, err := c.listKV(p, true)
			if err == nil {
				first, n := crashMissing(want, have)
				if n == 0 {
					break
				}
				err = fmt.Errorf("%d of %d acknowledged writes missing, first %s", n, len(want), first)
			} else if code == http.StatusOK {
				t.Fatalf("round %d: stale KV read on %s: %v", round, p.id, err)
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: %s's local state did not catch up within %s: %v", round, p.id, crashCheckWithin, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// checkLeases: every acknowledged lease is still there, with its TTL.
func (c *crashRun) checkLeases(t *testing.T, round int) {
	t.Helper()
	c.leaseMu.Lock()
	want := make(map[uint64]time.Time, len(c.leases))
	for id, at := range c.leases {
		want[id] = at
	}
	c.leaseMu.Unlock()
	crashLinearizable(t, c.procs, fmt.Sprintf("round %d: lease list", round), func(p *proc) (int, error) {
		var got []crashLeaseJSON
		code, err := crashCheckDo(http.MethodGet, p.url()+"/v1/leases", &got)
		if err != nil {
			return code, err
		}
		have := make(map[uint64]int64, len(got))
		for _, l := range got {
			have[l.ID] = l.TTLMs
		}
		var missing []uint64
		for id := range want {
			if ttl, ok := have[id]; !ok || ttl != crashLeaseTTLMs {
				missing = append(missing, id)
			}
		}
		if len(missing) > 0 {
			slices.Sort(missing)
			return code, fmt.Errorf("%d of %d acknowledged leases missing or changed, first %d (granted %s)",
				len(missing), len(want), missing[0], want[missing[0]].Format("15:04:05.000"))
		}
		return code, nil
	})
}

// checkElections: with the campaign loop of each name paused, a
// linearizable read must show the last acknowledged leader (unless it was
// resigned since) with its token, and a token no lower than any seen
// before; then each node's own state catches up to the same holder.
func (c *crashRun) checkElections(t *testing.T, round int) {
	t.Helper()
	for _, e := range c.elections {
		c.checkElection(t, round, e)
	}
	if v := c.violations(); len(v) > 0 {
		t.Fatalf("round %d: elections:\n%s", round, strings.Join(v, "\n"))
	}
}

func (c *crashRun) checkElection(t *testing.T, round int, e *crashElection) {
	t.Helper()
	// Unlocked on t.Fatal too: the campaign loop must be able to stop.
	e.mu.Lock()
	defer e.mu.Unlock()
	var el crashElectionJSON
	crashLinearizable(t, c.procs, fmt.Sprintf("round %d: election %s", round, e.name), func(p *proc) (int, error) {
		return crashCheckDo(http.MethodGet, p.url()+"/v1/elections/"+e.name, &el)
	})
	// observe checks the token against all earlier ones and the holder
	// against the last acknowledged leadership.
	e.observe(int32(round), "check", el)
	for _, p := range c.procs {
		deadline := time.Now().Add(crashCheckWithin)
		for {
			var st crashElectionJSON
			_, err := crashCheckDo(http.MethodGet, p.url()+"/v1/elections/"+e.name+"?stale", &st)
			if err == nil {
				switch {
				case st.Changes > el.Changes:
					// A late outcome of an earlier unanswered request.
				case st.Changes < el.Changes:
					err = fmt.Errorf("%d holder changes, the leader's state has %d", st.Changes, el.Changes)
				case (st.Leader == nil) != (el.Leader == nil) || (st.Leader != nil && *st.Leader != *el.Leader):
					err = fmt.Errorf("holder %+v, the leader's state has %+v after %d changes", st.Leader, el.Leader, el.Changes)
				}
			}
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: election %s on %s did not catch up within %s: %v", round, e.name, p.id, crashCheckWithin, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func (c *crashRun) check(t *testing.T, round int) {
	t.Helper()
	if v := c.violations(); len(v) > 0 {
		t.Fatalf("round %d: elections:\n%s", round, strings.Join(v, "\n"))
	}
	c.checkKV(t, round)
	c.checkLeases(t, round)
	c.checkElections(t, round)
}

func crashCountInLogs(procs []*proc, needle string) int {
	n := 0
	for _, p := range procs {
		b, _ := os.ReadFile(p.logPath)
		n += strings.Count(string(b), needle)
	}
	return n
}

func Test_E2E_CrashRandomSIGKILLsUnderLoad_NothingAcknowledgedLost(t *testing.T) {
	rounds := crashRounds(t)
	start := time.Now()
	procs := crashStartCluster(t, 3, crashSnapshotFlags...)

	c := &crashRun{procs: procs, kvAcked: map[string]string{}, leases: map[uint64]time.Time{}}
	for i := range crashElections {
		c.elections = append(c.elections, &crashElection{name: fmt.Sprintf("crash-e%d", i)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute+time.Duration(rounds)*30*time.Second)
	var wg sync.WaitGroup
	stopWorkload := sync.OnceFunc(func() {
		cancel()
		wg.Wait()
	})
	// Registered after the cluster's cleanup, so it runs first: no request
	// is in flight when the processes are killed and the logs printed.
	t.Cleanup(stopWorkload)
	for w := range crashKVWriters {
		wg.Go(func() { c.kvWriter(ctx, w, 3000+1500*rounds) })
	}
	wg.Go(func() { c.leaseGranter(ctx, 200+100*rounds) })
	for i, e := range c.elections {
		wg.Go(func() { c.campaigner(ctx, e, uint64(i), 1000+500*rounds) })
	}

	rng := rand.New(rand.NewPCG(7, uint64(time.Now().UnixNano())))
	singles, alls := 0, 0
	for round := 1; round <= rounds; round++ {
		// Let the workload run (and snapshots happen) between faults.
		time.Sleep(time.Duration(500+rng.IntN(2000)) * time.Millisecond)
		c.round.Store(int32(round))
		var victims []*proc
		var what string
		if round%3 == 0 {
			victims, what = procs, "all three nodes"
			alls++
		} else {
			leader := crashLeader(t, procs)
			if singles%2 == 0 {
				victims, what = []*proc{leader}, "the leader "+leader.id
			} else {
				f := others(procs, leader)
				v := f[rng.IntN(len(f))]
				victims, what = []*proc{v}, "follower "+v.id
			}
			singles++
		}
		crashKillAll(victims)
		down := time.Duration(rng.IntN(500)) * time.Millisecond
		time.Sleep(down)
		restarted := time.Now()
		for _, p := range victims {
			p.start(t)
		}
		for _, p := range victims {
			waitReady(t, p, crashReadyWithin)
		}
		ready := time.Since(restarted)
		checkStart := time.Now()
		c.paused.Store(true)
		c.check(t, round)
		c.paused.Store(false)
		checked := time.Since(checkStart)
		c.kvMu.Lock()
		nkv, nunk := len(c.kvAcked), c.kvUnknown
		c.kvMu.Unlock()
		c.leaseMu.Lock()
		nleases := len(c.leases)
		c.leaseMu.Unlock()
		t.Logf("round %d: SIGKILLed %s, down %s, ready %s after restart; checked %d acknowledged writes (%d unanswered) and %d leases in %s",
			round, what, down, ready.Round(time.Millisecond), nkv, nunk, nleases, checked.Round(time.Millisecond))
	}

	// A last check after the workload has stopped and everything settled.
	stopWorkload()
	c.check(t, rounds+1)

	var acks, resigns, observed int
	var tokens []string
	for _, e := range c.elections {
		e.mu.Lock()
		acks, resigns, observed = acks+e.acks, resigns+e.resigns, observed+len(e.obs)
		tokens = append(tokens, fmt.Sprintf("%s≤%d", e.name, e.maxToken))
		e.mu.Unlock()
	}
	snaps := crashCountInLogs(procs, "snapshot complete up to")
	restores := crashCountInLogs(procs, "restored from snapshot")
	t.Logf("%d rounds (%d single-node, %d all-node SIGKILLs) in %s: %d writes and %d leases acknowledged and kept; %d leaderships acknowledged, %d resigns, %d election observations, tokens %s; %d snapshots taken, %d restarts restored from a snapshot",
		rounds, singles, alls, time.Since(start).Round(time.Millisecond), len(c.kvAcked), len(c.leases),
		acks, resigns, observed, strings.Join(tokens, " "), snaps, restores)
	if acks == 0 || len(c.kvAcked) == 0 || len(c.leases) == 0 {
		t.Errorf("the workload did too little to test anything: %d leaderships, %d writes, %d leases acknowledged", acks, len(c.kvAcked), len(c.leases))
	}
	if rounds >= 3 && restores == 0 {
		t.Errorf("no restart restored from a snapshot (%d snapshots taken): the test did not exercise recovery from snapshots", snaps)
	}
}
