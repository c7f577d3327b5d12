package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coordd/coordd/client"
)

// runHolderCrash: a child process (coordbench -child-holder) takes a lock
// with a new lease of -ttl (500 ms), keeps the lease alive every TTL/3 and
// prints each keepalive's send and ack times. A standby in this process
// waits for the lock in a blocking Lock. The child is SIGKILLed at a random
// moment. Measured per round: kill → the standby holds, and how far past
// the lease's real deadline that is. The real deadline lies between (last
// keepalive sent + TTL) and (its ack + TTL): the ack-based figure is a
// lower bound of the lateness, the send-based one an upper bound. A
// keepalive in flight at the kill may or may not have reached the leader:
// the ack-based figure then counts it as arriving at the kill, the
// send-based one ignores it, so both stay bounds. A send-based lateness
// below zero would mean the lock passed before a deadline the holder was
// promised (counted in "early_rounds": must be 0). With -target rr the
// standby talks to rr's first node and the holder child to its second (two
// followers); with leader both are given every endpoint.
func runHolderCrash(e *env, run int) (Result, error) {
	cfg := e.cfg
	rounds := cfg.rounds
	if rounds == 0 {
		rounds = 20
	}
	ttl := cfg.ttl
	if ttl == 0 {
		ttl = 500 * time.Millisecond
	}
	self, err := os.Executable()
	if err != nil {
		return Result{}, fmt.Errorf("holder-crash: find own executable: %w", err)
	}
	c, err := e.newClient()
	if err != nil {
		return Result{}, err
	}
	defer c.Close()
	holderEndpoints := e.nextEndpoints()
	ctx, cancel := e.bounded(30 * time.Second)
	standby, err := client.NewSession(ctx, c, 10*time.Second)
	cancel()
	if err != nil {
		return Result{}, fmt.Errorf("standby session: %w", err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = standby.Close(ctx)
	}()

	e.logf("holder-crash run %d: %d rounds, holder TTL %s (target %s)", run, rounds, ttl, e.target())
	var killTo, pastAck, pastSend []time.Duration
	inflight, early := 0, 0
	stamp := time.Now().UnixNano()
	for r := range rounds {
		if e.ctx.Err() != nil {
			return Result{}, e.ctx.Err()
		}
		name := fmt.Sprintf("coordbench/holder-crash/%d/%d", stamp, r)
		m, err := holderCrashRound(e, self, holderEndpoints, c, standby, name, ttl)
		if err != nil {
			return Result{}, fmt.Errorf("round %d: %w", r, err)
		}
		killTo = append(killTo, m.killToStandby)
		pastAck = append(pastAck, m.pastAck)
		pastSend = append(pastSend, m.pastSend)
		if m.inflight {
			inflight++
		}
		if (r+1)%5 == 0 && r+1 < rounds {
			e.logf("holder-crash run %d: %d/%d rounds", run, r+1, rounds)
		}
		if m.pastSend < 0 {
			early++
			e.logf("holder-crash: round %d: the standby held the lock %s BEFORE the deadline counted from the last keepalive's send",
				r, (-m.pastSend).Round(time.Microsecond))
		}
	}
	figs := latencyFigures("kill_to_standby_", killTo)
	figs = append(figs, latencyFigures("past_deadline_ack_", pastAck)...)
	figs = append(figs, latencyFigures("past_deadline_send_", pastSend)...)
	figs = append(figs,
		Figure{Key: "inflight_rounds", Unit: "count", Value: float64(inflight)},
		Figure{Key: "early_rounds", Unit: "count", Value: float64(early)})
	return Result{Workload: fmt.Sprintf("holder-crash ttl=%s", ttl) + e.label(), Run: run, Figures: figs,
		GoalSet: e.goalSet(goalSetIf(ttl == 500*time.Millisecond, "holder-crash")),
		Params:  map[string]any{"rounds": rounds, "ttl_ms": ttl.Milliseconds(), "target": e.target()}}, nil
}

// crashMeasure is one round's result.
type crashMeasure struct {
	killToStandby, pastAck, pastSend time.Duration
	inflight                         bool
}

// holderLog is what the child printed: send and ack times per keepalive
// sequence number (0 is the LockNew that granted the lease).
type holderLog struct {
	mu    sync.Mutex
	ready chan struct{}
	sends map[int]time.Time
	acks  map[int]time.Time
	lines []string
}

func (h *holderLog) read(r io.Reader, eof chan<- struct{}) {
	defer close(eof)
	sc := bufio.NewScanner(r)
	readyOnce := sync.Once{}
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		h.mu.Lock()
		if len(h.lines) < 1000 {
			h.lines = append(h.lines, line)
		}
		if len(f) >= 3 && (f[0] == "send" || f[0] == "ack") {
			seq, err1 := strconv.Atoi(f[1])
			ns, err2 := strconv.ParseInt(f[2], 10, 64)
			if err1 == nil && err2 == nil {
				if f[0] == "send" {
					h.sends[seq] = time.Unix(0, ns)
				} else {
					h.acks[seq] = time.Unix(0, ns)
				}
			}
		}
		h.mu.Unlock()
		if len(f) > 0 && f[0] == "ready" {
			readyOnce.Do(func() { close(h.ready) })
		}
	}
}

func holderCrashRound(e *env, self string, holderEndpoints []string, c *client.Client, standby *client.Session, name string, ttl time.Duration) (crashMeasure, error) {
	var m crashMeasure
	ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	defer cancel()
	cmd := exec.Command(self, "-child-holder", "-child-lock", name, "-ttl", ttl.String(),
		"-endpoints", strings.Join(holderEndpoints, ","))
	// A pipe of our own rather than StdoutPipe, which Wait (called as soon
	// as the child dies) would close before its last lines are read.
	out, w, err := os.Pipe()
	if err != nil {
		return m, fmt.Errorf("holder pipe: %w", err)
	}
	defer out.Close()
	cmd.Stdout = w
	stderr := &lockedWriter{w: &strings.Builder{}}
	cmd.Stderr = stderr
	p, err := startProc(cmd, nil)
	w.Close() // the child holds the only write end: EOF when it dies
	if err != nil {
		return m, fmt.Errorf("start holder: %w", err)
	}
	defer p.kill()
	h := &holderLog{ready: make(chan struct{}), sends: map[int]time.Time{}, acks: map[int]time.Time{}}
	eof := make(chan struct{})
	go h.read(out, eof)
	select {
	case <-h.ready:
	case <-eof:
		p.kill()
		return m, fmt.Errorf("holder exited before holding %s: %s", name, truncate(stderr.String(), 500))
	case <-ctx.Done():
		return m, fmt.Errorf("holder not holding %s: %w", name, ctx.Err())
	}

	type got struct {
		at  time.Time
		res *client.CampaignResult
		err error
	}
	done := make(chan got, 1)
	go func() {
		res, err := c.Lock(ctx, name, standby.Lease(), 10*time.Second, client.LockOptions{})
		done <- got{time.Now(), res, err}
	}()
	// The standby is queued before the kill.
	for {
		st, err := c.LockState(ctx, name)
		if err == nil && slices.ContainsFunc(st.Candidates, func(x client.Candidate) bool { return x.Lease == standby.Lease() }) {
			if st.Leader == nil || st.Leader.Lease == standby.Lease() {
				return m, fmt.Errorf("the holder child does not hold %s: %+v", name, st)
			}
			break
		}
		if ctx.Err() != nil {
			return m, fmt.Errorf("standby never queued on %s: %w", name, ctx.Err())
		}
		time.Sleep(2 * time.Millisecond)
	}
	time.Sleep(time.Duration(rand.Int64N(int64(ttl))))
	killed := time.Now()
	p.kill()
	select {
	case <-eof: // every line the child wrote before dying
	case <-time.After(2 * time.Second):
		return m, fmt.Errorf("holder's output not closed 2 s after its death")
	}
	var g got
	select {
	case g = <-done:
	case <-ctx.Done():
		return m, fmt.Errorf("standby did not get %s: %w", name, ctx.Err())
	}
	if g.err != nil {
		return m, fmt.Errorf("standby's lock: %w", g.err)
	}
	if !g.res.Leader {
		return m, fmt.Errorf("standby's lock returned without holding %s", name)
	}
	uctx, ucancel := context.WithTimeout(e.ctx, 5*time.Second)
	_ = c.Unlock(uctx, name, standby.Lease(), g.res.Token)
	ucancel()

	h.mu.Lock()
	defer h.mu.Unlock()
	lastAcked, lastSent := -1, -1
	for s := range h.acks {
		lastAcked = max(lastAcked, s)
	}
	for s := range h.sends {
		lastSent = max(lastSent, s)
	}
	if lastAcked < 0 {
		return m, fmt.Errorf("the holder printed no ack: %q", h.lines)
	}
	ackRef, sendRef := h.acks[lastAcked], h.sends[lastAcked]
	if lastSent > lastAcked {
		m.inflight = true
		ackRef = killed
	}
	m.killToStandby = g.at.Sub(killed)
	m.pastAck = g.at.Sub(ackRef.Add(ttl))
	m.pastSend = g.at.Sub(sendRef.Add(ttl))
	return m, nil
}

// lockedWriter serializes writes (exec copies stderr from a goroutine).
type lockedWriter struct {
	mu sync.Mutex
	w  *strings.Builder
}

// String returns what was written so far.
func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// childHolderMain is the holder process of holder-crash: it takes the lock
// -child-lock with a new lease of -ttl, prints "ready", then keeps the
// lease alive every TTL/3, printing "send SEQ UNIXNS" before and "ack SEQ
// UNIXNS" after each keepalive (SEQ 0 is the LockNew), until it is killed,
// loses the lease (exit 3), or 2 minutes pass.
func childHolderMain(cfg *config, stdout, stderr io.Writer) int {
	ttl := cfg.ttl
	if ttl == 0 {
		ttl = 500 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := client.New(ctx, client.Config{Endpoints: cfg.endpoints})
	if err != nil {
		fmt.Fprintln(stderr, "holder:", err)
		return 2
	}
	defer c.Close()
	now := func() int64 { return time.Now().UnixNano() }
	fmt.Fprintf(stdout, "send 0 %d\n", now())
	lctx, lcancel := context.WithTimeout(ctx, 10*time.Second)
	res, err := c.LockNew(lctx, cfg.childLock, ttl, 0, client.LockOptions{})
	lcancel()
	if err != nil || !res.Leader {
		fmt.Fprintf(stderr, "holder: lock %s: %+v %v\n", cfg.childLock, res, err)
		return 2
	}
	fmt.Fprintf(stdout, "ack 0 %d\n", now())
	fmt.Fprintf(stdout, "ready %d %d\n", res.Lease, res.Token)
	next := time.Now()
	for seq := 1; ctx.Err() == nil; seq++ {
		next = next.Add(ttl / 3)
		time.Sleep(time.Until(next))
		fmt.Fprintf(stdout, "send %d %d\n", seq, now())
		kctx, kcancel := context.WithTimeout(ctx, ttl)
		_, err := c.KeepAlive(kctx, res.Lease)
		kcancel()
		if err != nil {
			fmt.Fprintf(stderr, "holder: keepalive %d: %v\n", seq, err)
			if isNotFound(err) {
				return 3
			}
			continue
		}
		fmt.Fprintf(stdout, "ack %d %d\n", seq, now())
	}
	return 0
}
