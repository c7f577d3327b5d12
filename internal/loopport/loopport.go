// Package loopport picks loopback TCP ports for the real-process clusters
// of tests and benchmarks.
//
// Ports come from below the kernel's ephemeral range: a port of that range
// (what port 0 gives) can be taken by any outgoing connection while the
// node that used it is down, and the node then cannot restart on it.
package loopport

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// handedOut remembers every port Free gave in this process, so that no two
// clusters of one process get the same one.
var handedOut sync.Map

// Free returns n distinct loopback ports that were free a moment ago,
// chosen by intN (e.g. rand.IntN, or a seeded source's IntN) below the
// ephemeral range, never one handed out before in this process.
func Free(n int, intN func(int) int) ([]int, error) {
	lo, hi := Range()
	var ports []int
	for tries := 0; len(ports) < n && tries < 1000*n; tries++ {
		p := lo + intN(hi-lo)
		if _, dup := handedOut.LoadOrStore(p, true); dup {
			continue
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		ln.Close()
		ports = append(ports, p)
	}
	if len(ports) < n {
		return nil, fmt.Errorf("loopport: found only %d free loopback ports of %d below the ephemeral range", len(ports), n)
	}
	return ports, nil
}

// Range is the range [lo, hi) ports are chosen from: from 20000 up to the
// first ephemeral port, or 10000–20000 if that leaves fewer than 1000.
func Range() (lo, hi int) {
	lo, hi = 20000, ephemeralLow()
	if hi-lo < 1000 {
		lo, hi = 10000, 20000
	}
	return lo, hi
}

// ephemeralLow is the first port of the kernel's ephemeral range (32768 if
// it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	v, err := strconv.Atoi(f[0])
	if err != nil {
		return 32768
	}
	return v
}
