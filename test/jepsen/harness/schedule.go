package harness

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// Fault is a kind of fault the nemesis injects. Targets named "leader" are
// resolved when the fault starts (the node that then says it leads, or a
// random node if none does); other choices are made by the seeded plan.
type Fault string

// Faults.
const (
	KillLeader Fault = "kill-leader" // SIGKILL the leader; heal: restart it on its data dir
	KillRandom Fault = "kill-random" // SIGKILL one node; heal: restart it
	KillAll    Fault = "kill-all"    // SIGKILL every node; heal: restart them all

	PauseLeader Fault = "pause-leader" // SIGSTOP the leader; heal: SIGCONT
	PauseRandom Fault = "pause-random" // SIGSTOP one node; heal: SIGCONT

	IsolateLeader Fault = "isolate-leader" // cut the leader from every peer, both ways
	Split         Fault = "split"          // a random minority (1 of 3, 2 of 5) against the majority
	OneWay        Fault = "one-way"        // the leader's outgoing (or incoming) Raft traffic is cut
	Ring          Fault = "ring"           // 5 nodes: each sees a different majority; 3 nodes: a one-way ring

	Slow  Fault = "slow"  // every link delayed (Delay ± Jitter)
	Lossy Fault = "lossy" // every link resets connections with probability Loss per chunk

	ClockJump Fault = "clock-jump" // jump one node's lease clock forward (the leader's, or a random node's)
	ClockRate Fault = "clock-rate" // make one node's lease clock run fast; heal: rate 1

	// FullDisk fills one node's data dir (the leader's, or a random
	// node's) until writes fail with ENOSPC; heal: free it. Opt-in: the
	// data dirs must be small mounts of their own (Scenario.DiskMiB, root
	// only); without them its rounds are skipped with the reason.
	FullDisk Fault = "full-disk"
)

// AllFaults lists every fault, in a fixed order.
var AllFaults = []Fault{KillLeader, KillRandom, KillAll, PauseLeader, PauseRandom,
	IsolateLeader, Split, OneWay, Ring, Slow, Lossy, ClockJump, ClockRate, FullDisk}

// Dur is a time.Duration that reads and writes as "1.5s" in JSON.
type Dur time.Duration

// MarshalJSON writes d as a Go duration string.
func (d Dur) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a Go duration string.
func (d *Dur) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	*d = Dur(v)
	return err
}

// Round is one round of a Plan: wait, inject the fault, hold it, heal.
type Round struct {
	N     int   `json:"round"`
	Fault Fault `json:"fault"`
	Wait  Dur   `json:"wait"` // before the fault, everything healthy
	Hold  Dur   `json:"hold"` // how long the fault lasts
	// Pick is a seeded choice among nodes (a random target, a minority).
	Pick int `json:"pick"`
	// Variant is a seeded choice of the fault's flavour (one-way: 0 the
	// leader goes deaf to nobody but mute to all, 1 the reverse; clock and
	// full disk: 0 the leader, 1 a random node).
	Variant int     `json:"variant"`
	Delay   Dur     `json:"delay,omitempty"`
	Jitter  Dur     `json:"jitter,omitempty"`
	Loss    float64 `json:"loss,omitempty"`
	Jump    Dur     `json:"jump,omitempty"`
	Rate    float64 `json:"rate,omitempty"`
}

// Plan is the whole fault schedule of a scenario, a pure function of its
// inputs: the same seed gives the same plan.
type Plan struct {
	Seed     uint64  `json:"seed"`
	Nodes    int     `json:"nodes"`
	LeaseTTL Dur     `json:"lease_ttl"`
	Warmup   Dur     `json:"warmup"`
	Rounds   []Round `json:"rounds"`
	// Settle is how long the workload keeps running after the final heal
	// and a leader is back.
	Settle Dur `json:"settle"`
}

// ElectionTimeout is coordd's default Raft election timeout; every fault
// lasts longer than it and than the workload's lease TTL.
const ElectionTimeout = 300 * time.Millisecond

// NewPlan draws rounds rounds from faults with a random source seeded with
// seed. Each fault of the list is used once, in a seeded order, before any
// is used again, so a short run still covers them all. A fault that needs
// more nodes than there are (none at the moment) is kept: the nemesis adapts
// it. Each fault is held for longer than both the election timeout and
// leaseTTL.
func NewPlan(seed uint64, nodes int, faults []Fault, rounds int, leaseTTL time.Duration) Plan {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	p := Plan{Seed: seed, Nodes: nodes, LeaseTTL: Dur(leaseTTL), Warmup: Dur(time.Second), Settle: Dur(1500 * time.Millisecond)}
	floor := max(ElectionTimeout, leaseTTL)
	var bag []Fault
	for i := range rounds {
		if len(bag) == 0 {
			bag = append(bag, faults...)
			rng.Shuffle(len(bag), func(a, b int) { bag[a], bag[b] = bag[b], bag[a] })
		}
		f := bag[0]
		bag = bag[1:]
		r := Round{
			N:       i + 1,
			Fault:   f,
			Wait:    Dur(500*time.Millisecond + time.Duration(rng.Int64N(int64(time.Second)))),
			Hold:    Dur(floor + 500*time.Millisecond + time.Duration(rng.Int64N(int64(time.Second)))),
			Pick:    rng.IntN(1 << 20),
			Variant: rng.IntN(2),
		}
		switch f {
		case Slow:
			r.Delay = Dur(time.Duration(20+rng.IntN(100)) * time.Millisecond)
			r.Jitter = r.Delay / 2
		case Lossy:
			r.Loss = 0.005 + 0.03*rng.Float64()
		case ClockJump:
			// Between half and twice the TTL: leases on that node's clock
			// reach their deadlines early.
			r.Jump = Dur(leaseTTL/2 + time.Duration(rng.Int64N(int64(3*leaseTTL/2)+1)))
		case ClockRate:
			r.Rate = 1.5 + 1.5*rng.Float64()
		}
		p.Rounds = append(p.Rounds, r)
	}
	return p
}

// Duration is the planned length of the schedule: warm-up, rounds and
// settling (not counting start-up, restarts, final reads and checks).
func (p Plan) Duration() time.Duration {
	d := time.Duration(p.Warmup + p.Settle)
	for _, r := range p.Rounds {
		d += time.Duration(r.Wait + r.Hold)
	}
	return d
}

// String is the plan as text, one round per line.
func (p Plan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d, %d nodes, lease TTL %s, warm-up %s, %d rounds, settle %s (about %s)\n",
		p.Seed, p.Nodes, time.Duration(p.LeaseTTL), time.Duration(p.Warmup), len(p.Rounds),
		time.Duration(p.Settle), p.Duration().Round(100*time.Millisecond))
	for _, r := range p.Rounds {
		fmt.Fprintf(&b, "round %2d: wait %-6s %-14s for %-6s", r.N, time.Duration(r.Wait).Round(time.Millisecond),
			r.Fault, time.Duration(r.Hold).Round(time.Millisecond))
		switch r.Fault {
		case Slow:
			fmt.Fprintf(&b, " delay %s±%s", time.Duration(r.Delay), time.Duration(r.Jitter))
		case Lossy:
			fmt.Fprintf(&b, " loss %.3f", r.Loss)
		case ClockJump:
			fmt.Fprintf(&b, " jump %s", time.Duration(r.Jump).Round(time.Millisecond))
		case ClockRate:
			fmt.Fprintf(&b, " rate %.2f", r.Rate)
		}
		b.WriteString("\n")
	}
	return b.String()
}
