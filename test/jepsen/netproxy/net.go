package netproxy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

type pair struct{ from, to string }

// Net is a full mesh of links between nodes: one Link for every ordered
// pair (from, to), through which from dials to, and one Direction for every
// ordered pair, shared by the two links that carry its bytes. It is safe for
// concurrent use; the set of nodes is fixed at creation.
type Net struct {
	nodes []string // sorted
	dirs  map[pair]*Direction
	links map[pair]*Link
}

// New starts the links between nodes, a map from node ID to the node's real
// Raft address (a loopback IP:port). The nodes need not be running yet: a
// connection to a node that is down is reset at once.
func New(nodes map[string]string) (*Net, error) {
	n := &Net{dirs: make(map[pair]*Direction), links: make(map[pair]*Link)}
	for id, addr := range nodes {
		if id == "" {
			return nil, fmt.Errorf("%w: empty node ID", ErrUnknownNode)
		}
		if err := checkLoopback(addr); err != nil {
			return nil, fmt.Errorf("node %s: %w", id, err)
		}
		n.nodes = append(n.nodes, id)
	}
	slices.Sort(n.nodes)
	for _, a := range n.nodes {
		for _, b := range n.nodes {
			if a != b {
				n.dirs[pair{a, b}] = NewDirection(a + "->" + b)
			}
		}
	}
	for _, a := range n.nodes {
		for _, b := range n.nodes {
			if a == b {
				continue
			}
			l, err := NewLink(nodes[b], n.dirs[pair{a, b}], n.dirs[pair{b, a}])
			if err != nil {
				_ = n.Close()
				return nil, fmt.Errorf("netproxy: link %s->%s: %w", a, b, err)
			}
			n.links[pair{a, b}] = l
		}
	}
	return n, nil
}

// Nodes returns the node IDs, sorted.
func (n *Net) Nodes() []string { return slices.Clone(n.nodes) }

// PeerAddrs returns, for node id, the address at which it must dial each
// peer: peer ID → address of link(id→peer). This is what coordd's
// Config.PeerRaftAddrs (a raft.ServerAddressProvider) takes.
func (n *Net) PeerAddrs(id string) (map[string]string, error) {
	if err := n.check(id); err != nil {
		return nil, err
	}
	m := make(map[string]string, len(n.nodes)-1)
	for _, p := range n.nodes {
		if p != id {
			m[p] = n.links[pair{id, p}].Addr()
		}
	}
	return m, nil
}

// Link returns the link through which from dials to.
func (n *Net) Link(from, to string) (*Link, error) {
	if err := n.checkPair(from, to); err != nil {
		return nil, err
	}
	return n.links[pair{from, to}], nil
}

// Direction returns the fault state of the bytes that from sends to.
func (n *Net) Direction(from, to string) (*Direction, error) {
	if err := n.checkPair(from, to); err != nil {
		return nil, err
	}
	return n.dirs[pair{from, to}], nil
}

// Set replaces the faults of the bytes from sends to.
func (n *Net) Set(from, to string, f Faults) error {
	return n.update(from, to, func(cur *Faults) { *cur = f })
}

// Faults returns the faults of the bytes from sends to.
func (n *Net) Faults(from, to string) (Faults, error) {
	d, err := n.Direction(from, to)
	if err != nil {
		return Faults{}, err
	}
	return d.Faults(), nil
}

// CutOneWay cuts the bytes that from sends to (to still reaches from).
// Other faults are kept.
func (n *Net) CutOneWay(from, to string) error {
	return n.update(from, to, func(f *Faults) { f.Cut = true })
}

// Cut cuts a and b from each other, both ways.
func (n *Net) Cut(a, b string) error {
	if err := n.CutOneWay(a, b); err != nil {
		return err
	}
	return n.CutOneWay(b, a)
}

// Isolate cuts id from every other node, both ways. Cuts between the other
// nodes are left as they are.
func (n *Net) Isolate(id string) error {
	if err := n.check(id); err != nil {
		return err
	}
	for _, p := range n.nodes {
		if p != id {
			if err := n.Cut(id, p); err != nil {
				return err
			}
		}
	}
	return nil
}

// Partition sets every cut from scratch: two nodes reach each other (both
// ways) if and only if they are in the same group. Nodes listed in no group
// form one more group together. A node may be listed once. Delays and loss
// are kept. Partition() with no groups removes every cut.
func (n *Net) Partition(groups ...[]string) error {
	group := make(map[string]int, len(n.nodes))
	for g, members := range groups {
		for _, id := range members {
			if err := n.check(id); err != nil {
				return err
			}
			if _, dup := group[id]; dup {
				return fmt.Errorf("%w: node %s listed twice", ErrInvalidPartition, id)
			}
			group[id] = g
		}
	}
	rest := len(groups)
	for _, id := range n.nodes {
		if _, ok := group[id]; !ok {
			group[id] = rest
		}
	}
	for p, d := range n.dirs {
		cut := group[p.from] != group[p.to]
		if err := d.update(func(f *Faults) { f.Cut = cut }); err != nil {
			return err
		}
	}
	return nil
}

// Delay delays the bytes that from sends to by d plus a random [0, jitter).
// Other faults are kept; zero d and jitter remove the delay.
func (n *Net) Delay(from, to string, d, jitter time.Duration) error {
	return n.update(from, to, func(f *Faults) { f.Delay, f.Jitter = d, jitter })
}

// SlowAll delays every direction by d plus a random [0, jitter).
func (n *Net) SlowAll(d, jitter time.Duration) error {
	return n.updateAll(func(f *Faults) { f.Delay, f.Jitter = d, jitter })
}

// Loss makes the connections that carry the bytes from sends to lossy:
// each chunk resets its connection with probability p. Zero removes it.
func (n *Net) Loss(from, to string, p float64) error {
	return n.update(from, to, func(f *Faults) { f.Loss = p })
}

// LoseAll makes every direction lossy with probability p (see Loss).
func (n *Net) LoseAll(p float64) error {
	return n.updateAll(func(f *Faults) { f.Loss = p })
}

// Heal clears every fault of every direction. Connections that lost bytes
// to a cut are reset; new connections flow normally.
func (n *Net) Heal() {
	for _, d := range n.dirs {
		d.Heal()
	}
}

// ResetBetween resets every open connection between a and b, whoever
// dialed. Cut followed by ResetBetween makes peers fail fast (RST) instead
// of timing out on a silent connection; their new connections then meet
// the black hole.
func (n *Net) ResetBetween(a, b string) error {
	if err := n.checkPair(a, b); err != nil {
		return err
	}
	n.links[pair{a, b}].Reset()
	n.links[pair{b, a}].Reset()
	return nil
}

// ResetAll resets every open connection of every link.
func (n *Net) ResetAll() {
	for _, l := range n.links {
		l.Reset()
	}
}

// Describe lists the directions that have faults, sorted, one per line
// ("n1->n2: cut delay=50ms"), or "healthy".
func (n *Net) Describe() string {
	var lines []string
	for _, a := range n.nodes {
		for _, b := range n.nodes {
			if a == b {
				continue
			}
			if f := n.dirs[pair{a, b}].Faults(); !f.IsZero() {
				lines = append(lines, a+"->"+b+": "+f.String())
			}
		}
	}
	if len(lines) == 0 {
		return "healthy"
	}
	return strings.Join(lines, "\n")
}

// Stats sums the stats of every direction.
func (n *Net) Stats() Stats {
	var s Stats
	for _, d := range n.dirs {
		ds := d.Stats()
		s.Delivered += ds.Delivered
		s.Dropped += ds.Dropped
		s.Resets += ds.Resets
	}
	return s
}

// Close closes every link (listeners, connections, goroutines) and waits
// for them.
func (n *Net) Close() error {
	var errs []error
	for _, l := range n.links {
		errs = append(errs, l.Close())
	}
	return errors.Join(errs...)
}

func (n *Net) update(from, to string, fn func(*Faults)) error {
	d, err := n.Direction(from, to)
	if err != nil {
		return err
	}
	return d.update(fn)
}

// updateAll validates fn on a healthy Faults first, so that it either
// applies everywhere or nowhere.
func (n *Net) updateAll(fn func(*Faults)) error {
	var probe Faults
	fn(&probe)
	if err := probe.Validate(); err != nil {
		return err
	}
	for _, d := range n.dirs {
		if err := d.update(fn); err != nil {
			return err
		}
	}
	return nil
}

func (n *Net) check(id string) error {
	if _, ok := slices.BinarySearch(n.nodes, id); !ok {
		return fmt.Errorf("%w: %q", ErrUnknownNode, id)
	}
	return nil
}

func (n *Net) checkPair(from, to string) error {
	if err := n.check(from); err != nil {
		return err
	}
	if err := n.check(to); err != nil {
		return err
	}
	if from == to {
		return fmt.Errorf("%w: %q to itself", ErrUnknownNode, from)
	}
	return nil
}
