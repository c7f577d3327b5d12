package main

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// The scale modes (issue 21, "scale past one machine's worth of clients"):
// million (scale_million.go), watchers (scale_watchers.go) and big-expiry
// (scale_bigexpiry.go). Each starts its own cluster, with node flags that
// lift the per-client limits a single loopback client would hit (rate
// limit, watcher cap, leases per token). The unique-name churn figure is
// `make bench-churn`'s (issue 16), not rebuilt here.

// scaleConfig holds the flags of the scale modes.
type scaleConfig struct {
	holdLeasesSet bool          // -hold-leases given: million holds that many
	hold          time.Duration // million: hold period
	projectFrom   []int         // million: measure these sizes and project to -hold-leases

	watchers   int           // watchers: blocking queries
	streams    int           // watchers: SSE streams
	watchKeys  int           // watchers: keys (and elections) they watch
	writeRate  float64       // watchers: writes per second
	watchNode  string        // watchers: leader or follower
	watchFor   time.Duration // watchers: measured window
	bigLocks   int           // big-expiry: locks on the lease
	bigKeys    int           // big-expiry: keys on the lease
	probeRate  float64       // big-expiry: small requests per second
	probeConc  int           // big-expiry: most small requests in flight
	bigLeaseMs int           // big-expiry: TTL of the big lease (ms)
}

// register adds the scale flags to fs.
func (s *scaleConfig) register(fs *flag.FlagSet) {
	fs.DurationVar(&s.hold, "hold", time.Minute, "million: how long the leases are held (kept alive in batches) after the last grant")
	fs.Func("project-from", "million: measure these two sizes (e.g. 250000,500000) instead of -hold-leases and project their figures linearly to -hold-leases", func(v string) error {
		s.projectFrom = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 || n > 1_000_000 {
				return fmt.Errorf("want sizes in 1..1000000, comma-separated")
			}
			s.projectFrom = append(s.projectFrom, n)
		}
		if len(s.projectFrom) != 2 || s.projectFrom[0] >= s.projectFrom[1] {
			return errors.New("want two increasing sizes")
		}
		return nil
	})
	fs.IntVar(&s.watchers, "watchers", 10000, "watchers: concurrent blocking queries (GET ?index=&wait=) on one node")
	fs.IntVar(&s.streams, "streams", 1000, "watchers: concurrent Server-Sent Events streams of elections on that node")
	fs.IntVar(&s.watchKeys, "watch-keys", 100, "watchers: keys the blocking queries watch (and elections the streams watch), spread evenly")
	fs.Float64Var(&s.writeRate, "write-rate", 20, "watchers: writes per second to the watched keys (and as many proclaims to the elections)")
	fs.StringVar(&s.watchNode, "watch-node", "leader", "watchers: the node serving the watchers: leader (linearizable blocking queries) or follower (?stale, served there)")
	fs.DurationVar(&s.watchFor, "watch-for", 20*time.Second, "watchers: measured window")
	fs.IntVar(&s.bigLocks, "big-locks", 10000, "big-expiry: locks held by the big lease")
	fs.IntVar(&s.bigKeys, "big-keys", 10000, "big-expiry: keys attached to the big lease")
	fs.Float64Var(&s.probeRate, "probe-rate", 200, "big-expiry: small requests (half puts, half gets) per second while the big lease expires or is revoked")
	fs.IntVar(&s.probeConc, "probe-inflight", 256, "big-expiry: most small requests in flight (open loop up to that)")
	fs.IntVar(&s.bigLeaseMs, "big-ttl-ms", 2000, "big-expiry: TTL of the big lease in ms")
}

// applyQuick notes which flags were given and, with -quick, scales the
// modes down (flags given explicitly win).
func (s *scaleConfig) applyQuick(set map[string]bool, quick bool) {
	s.holdLeasesSet = set["hold-leases"]
	if !quick {
		return
	}
	small := map[string]func(){
		"hold":       func() { s.hold = 5 * time.Second },
		"watchers":   func() { s.watchers = 500 },
		"streams":    func() { s.streams = 50 },
		"watch-keys": func() { s.watchKeys = 10 },
		"watch-for":  func() { s.watchFor = 3 * time.Second },
		"big-locks":  func() { s.bigLocks = 500 },
		"big-keys":   func() { s.bigKeys = 500 },
	}
	for name, f := range small {
		if !set[name] {
			f()
		}
	}
}

// validate checks the scale flags.
func (s *scaleConfig) validate() error {
	switch {
	case s.hold <= 0 || s.watchFor <= 0:
		return errors.New("-hold and -watch-for must be positive")
	case s.watchers < 0 || s.streams < 0 || s.watchers+s.streams < 1 || s.watchers+s.streams > 100_000:
		return fmt.Errorf("-watchers %d -streams %d: want 0..100000 together, at least 1", s.watchers, s.streams)
	case s.watchKeys < 1 || s.watchKeys > 10_000:
		return fmt.Errorf("-watch-keys %d: want 1..10000", s.watchKeys)
	case s.writeRate <= 0 || s.writeRate > 1000 || s.probeRate <= 0 || s.probeRate > 10_000:
		return fmt.Errorf("-write-rate %g -probe-rate %g: want 0 < rate ≤ 1000 and ≤ 10000", s.writeRate, s.probeRate)
	case s.watchNode != "leader" && s.watchNode != "follower":
		return fmt.Errorf("-watch-node %q: want leader or follower", s.watchNode)
	case s.bigLocks < 0 || s.bigKeys < 0 || s.bigLocks+s.bigKeys < 1 || s.bigLocks+s.bigKeys > 1_000_000:
		return fmt.Errorf("-big-locks %d -big-keys %d: want 0..1000000 together, at least 1", s.bigLocks, s.bigKeys)
	case s.probeConc < 1 || s.probeConc > 4096:
		return fmt.Errorf("-probe-inflight %d: want 1..4096", s.probeConc)
	case s.bigLeaseMs < 500 || s.bigLeaseMs > 60_000:
		return fmt.Errorf("-big-ttl-ms %d: want 500..60000", s.bigLeaseMs)
	}
	return nil
}

// scaleNodeFlags lift the limits one loopback client (one IP, no token)
// would hit: the per-client rate limit, the watcher cap and the leases per
// token. -node-flags given by the user come after them and win.
func scaleNodeFlags(watchers int) []string {
	return []string{"-rate-limit", "0", "-max-watchers", strconv.Itoa(max(watchers+1000, 10000)),
		"-max-leases-per-token", "-1"}
}
