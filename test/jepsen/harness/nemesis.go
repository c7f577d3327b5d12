package harness

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/coordd/coordd/test/jepsen/check"
)

// Event is one thing the nemesis did, at a time on the history's clock
// (nanoseconds since the Recorder started), so that it can be read beside
// the ops.
type Event struct {
	At     int64  `json:"at"`
	Round  int    `json:"round"` // 0: not part of a round (start-up, final heal)
	Fault  Fault  `json:"fault,omitempty"`
	Phase  string `json:"phase"` // "start", "heal", "skip", "info"
	Detail string `json:"detail"`
}

// String is the event on one line: "  12.345s round 3 isolate-leader start: cut n2 (leader) from n1 n3".
func (e Event) String() string {
	s := fmt.Sprintf("%9.3fs", float64(e.At)/1e9)
	if e.Round > 0 {
		s += fmt.Sprintf(" round %d", e.Round)
	}
	if e.Fault != "" {
		s += " " + string(e.Fault)
	}
	return s + " " + e.Phase + ": " + e.Detail
}

// nemesis injects the faults of a plan into a cluster.
type nemesis struct {
	c    *Cluster
	now  func() int64
	emit func(Event)
	// noDisk is why the full-disk fault is skipped ("": the nodes' data
	// dirs are mounts of their own, see mountDisks).
	noDisk string
	// filled lists the nodes whose disk is full.
	filled []string
	// hit lists the nodes the fault being injected affects (inject sets
	// it; a fault on every link affects every node); windows are the
	// times each was faulted, until ready again (for check.AnswerTime).
	hit     []string
	windows []check.Window
}

// closeWindows records a window from start for every node the round's fault
// hit, ending when the node's /readyz answers 200 again (bounded; -1 if it
// never does).
func (m *nemesis) closeWindows(ctx context.Context, round int, start int64) {
	for _, id := range m.hit {
		n := m.c.Node(id)
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := m.c.waitReady(rctx, n)
		cancel()
		w := check.Window{Node: n.HTTPAddr, Start: start, End: m.now()}
		if err != nil {
			w.End = -1
		}
		m.windows = append(m.windows, w)
		m.emit(Event{At: m.now(), Round: round, Phase: "info", Detail: fmt.Sprintf("%s ready again (%v)", id, orNone(errString(err)))})
	}
	m.hit = nil
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// heal undoes one fault; it returns what it did.
type heal func(ctx context.Context) (string, error)

// leaderOr returns the current leader, or the node Pick chooses if none is
// found within a second (and says so).
func (m *nemesis) leaderOr(ctx context.Context, pick int) (id string, how string) {
	deadline := time.Now().Add(time.Second)
	for {
		if id := m.c.Leader(ctx); id != "" {
			return id, "leader"
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return m.c.Nodes[pick%len(m.c.Nodes)].ID, "no leader found: random node"
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (m *nemesis) random(pick int) string { return m.c.Nodes[pick%len(m.c.Nodes)].ID }

// inject starts round r's fault and returns its heal. A fault that cannot be
// injected in this setting returns a nil heal and the reason it was skipped.
func (m *nemesis) inject(ctx context.Context, r Round) (string, heal, error) {
	c := m.c
	ids := c.IDs()
	switch r.Fault {
	case KillLeader, KillRandom:
		id, how := m.random(r.Pick), "random"
		if r.Fault == KillLeader {
			id, how = m.leaderOr(ctx, r.Pick)
		}
		c.Node(id).Kill()
		m.hit = []string{id}
		return fmt.Sprintf("SIGKILL %s (%s)", id, how), m.restart(id), nil
	case KillAll:
		order := slices.Clone(ids)
		rotate(order, r.Pick)
		for _, id := range order {
			c.Node(id).Kill()
		}
		m.hit = order
		return "SIGKILL " + strings.Join(order, " "), m.restart(order...), nil
	case PauseLeader, PauseRandom:
		id, how := m.random(r.Pick), "random"
		if r.Fault == PauseLeader {
			id, how = m.leaderOr(ctx, r.Pick)
		}
		if err := c.Node(id).Pause(); err != nil {
			return "", nil, err
		}
		m.hit = []string{id}
		return fmt.Sprintf("SIGSTOP %s (%s)", id, how), func(context.Context) (string, error) {
			return "SIGCONT " + id, c.Node(id).Resume()
		}, nil
	case IsolateLeader:
		id, how := m.leaderOr(ctx, r.Pick)
		if err := c.Net.Isolate(id); err != nil {
			return "", nil, err
		}
		m.hit = []string{id}
		return fmt.Sprintf("isolate %s (%s)", id, how), m.healNet, nil
	case Split:
		order := slices.Clone(ids)
		rotate(order, r.Pick)
		minority := order[:(len(order)-1)/2]
		if err := c.Net.Partition(minority); err != nil {
			return "", nil, err
		}
		m.hit = slices.Clone(minority)
		leader := c.Leader(ctx)
		return fmt.Sprintf("partition %v | %v (leader before: %s)", minority, order[len(minority):], orNone(leader)), m.healNet, nil
	case OneWay:
		id, how := m.leaderOr(ctx, r.Pick)
		var cuts []string
		for _, p := range ids {
			if p == id {
				continue
			}
			from, to := id, p // variant 0: the others stop hearing it
			if r.Variant == 1 {
				from, to = p, id // variant 1: it stops hearing the others
			}
			if err := c.Net.CutOneWay(from, to); err != nil {
				return "", nil, err
			}
			cuts = append(cuts, from+"->"+to)
		}
		m.hit = []string{id}
		return fmt.Sprintf("one-way cuts around %s (%s): %s", id, how, strings.Join(cuts, " ")), m.healNet, nil
	case Ring:
		cuts, err := m.ring(r.Pick)
		if err != nil {
			return "", nil, err
		}
		m.hit = slices.Clone(ids)
		return "ring: cut " + strings.Join(cuts, " "), m.healNet, nil
	case Slow:
		if err := c.Net.SlowAll(time.Duration(r.Delay), time.Duration(r.Jitter)); err != nil {
			return "", nil, err
		}
		m.hit = slices.Clone(ids)
		return fmt.Sprintf("every link delayed %s±%s", time.Duration(r.Delay), time.Duration(r.Jitter)), m.healNet, nil
	case Lossy:
		if err := c.Net.LoseAll(r.Loss); err != nil {
			return "", nil, err
		}
		m.hit = slices.Clone(ids)
		return fmt.Sprintf("every link resets with probability %.3f per chunk", r.Loss), m.healNet, nil
	case ClockJump, ClockRate:
		id, how := m.random(r.Pick), "random"
		if r.Variant == 0 {
			id, how = m.leaderOr(ctx, r.Pick)
		}
		got, err := c.LeaseClock(ctx, c.Node(id), time.Duration(r.Jump), r.Rate)
		if err != nil {
			return "", nil, err
		}
		what := fmt.Sprintf("lease clock of %s (%s) jumped %s", id, how, time.Duration(r.Jump).Round(time.Millisecond))
		if r.Fault == ClockRate {
			what = fmt.Sprintf("lease clock of %s (%s) at rate %.2f", id, how, r.Rate)
		}
		return what + ": now " + got, m.healClocks, nil
	case FullDisk:
		if m.noDisk != "" {
			return m.noDisk, nil, nil
		}
		id, how := m.random(r.Pick), "random"
		if r.Variant == 0 {
			id, how = m.leaderOr(ctx, r.Pick)
		}
		n, err := fillDisk(c.Node(id).DataDir)
		m.filled = append(m.filled, id)
		m.hit = []string{id}
		if err != nil {
			return "", nil, err
		}
		return fmt.Sprintf("disk of %s (%s) filled: %.1f MiB written", id, how, float64(n)/(1<<20)), m.healDisks, nil
	}
	return "", nil, fmt.Errorf("harness: unknown fault %q", r.Fault)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// rotate rotates s left by k.
func rotate(s []string, k int) {
	if len(s) == 0 {
		return
	}
	k %= len(s)
	tmp := append(slices.Clone(s[k:]), s[:k]...)
	copy(s, tmp)
}

// RingCuts returns the directions to cut, as {from, to}, for the ring
// fault on ids rotated by pick. With 5 nodes or more it is the majorities
// ring: the nodes sit on a ring and each reaches (both ways) only its
// nearest neighbours, as many as make a majority with itself (for 5 nodes:
// i-1 and i+1), so each node sees a majority and no two see the same one.
// With fewer nodes it is a one-way ring: node i sends only to node i+1.
func RingCuts(ids []string, pick int) [][2]string {
	order := slices.Clone(ids)
	rotate(order, pick)
	n := len(order)
	reach := (n/2 + 1) / 2 // neighbours on each side
	var cuts [][2]string
	for i := range n {
		for j := range n {
			if i == j {
				continue
			}
			d := (j - i + n) % n
			keep := d == 1 // the one-way ring
			if n >= 5 {
				keep = min(d, n-d) <= reach
			}
			if !keep {
				cuts = append(cuts, [2]string{order[i], order[j]})
			}
		}
	}
	return cuts
}

func (m *nemesis) ring(pick int) ([]string, error) {
	var out []string
	for _, cut := range RingCuts(m.c.IDs(), pick) {
		if err := m.c.Net.CutOneWay(cut[0], cut[1]); err != nil {
			return nil, err
		}
		out = append(out, cut[0]+"->"+cut[1])
	}
	return out, nil
}

func (m *nemesis) healNet(context.Context) (string, error) {
	m.c.Net.Heal()
	return "network healed", nil
}

func (m *nemesis) healClocks(ctx context.Context) (string, error) {
	var errs []error
	var parts []string
	for _, n := range m.c.Nodes {
		// A restarted node has a fresh clock; a paused one is continued
		// first by healAll (a round heals only the clock it changed).
		if !n.Skewed() || n.Paused() {
			continue
		}
		got, err := m.c.LeaseClock(ctx, n, 0, 1)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		parts = append(parts, n.ID+": "+got)
	}
	return "lease clocks back to rate 1 (" + strings.Join(parts, "; ") + ")", errors.Join(errs...)
}

// healDisks frees every disk that was filled.
func (m *nemesis) healDisks(context.Context) (string, error) {
	var errs []error
	for _, id := range m.filled {
		errs = append(errs, freeDisk(m.c.Node(id).DataDir))
	}
	did := "disk freed on " + strings.Join(m.filled, " ")
	m.filled = nil
	return did, errors.Join(errs...)
}

func (m *nemesis) restart(ids ...string) heal {
	return func(context.Context) (string, error) {
		var errs []error
		for _, id := range ids {
			errs = append(errs, m.c.Node(id).Start())
		}
		return "restart " + strings.Join(ids, " "), errors.Join(errs...)
	}
}

// healAll undoes every fault, whatever the rounds did: network healed,
// paused nodes continued, stopped nodes restarted, lease clocks at rate 1.
func (m *nemesis) healAll(ctx context.Context) (string, error) {
	m.c.Net.Heal()
	var errs []error
	var did []string
	for _, n := range m.c.Nodes {
		switch {
		case !n.Running():
			errs = append(errs, n.Start())
			did = append(did, "restart "+n.ID)
		case n.Paused():
			errs = append(errs, n.Resume())
			did = append(did, "SIGCONT "+n.ID)
		}
	}
	clocks, err := m.healClocks(ctx)
	errs = append(errs, err)
	did = append(did, "network healed", clocks)
	if len(m.filled) > 0 {
		disks, err := m.healDisks(ctx)
		errs = append(errs, err)
		did = append(did, disks)
	}
	return strings.Join(did, "; "), errors.Join(errs...)
}
