// Package harness runs fault-injection scenarios against real coordd
// processes: it builds coordd once ([Build]), starts a [Cluster] of 3 or 5
// processes on loopback (each in its own process group, with its own data
// dir and log file, SIGKILLed if the harness dies), routes their Raft
// traffic through per-link proxies (package test/jepsen/netproxy) and runs a
// workload (package test/jepsen/workload) while a nemesis injects the faults
// of a seeded [Plan]: kills (the leader, a random node, all nodes) and
// restarts on the same data dir, pauses (SIGSTOP/SIGCONT), partitions
// (isolate the leader, a minority split, one-way cuts, a ring), slow and
// lossy links, jumps or rate changes of one node's lease clock (coordd
// -unsafe-lease-clock-control), and, opt-in, a full disk on one node (every
// data dir on a small tmpfs of its own, root only).
//
// [Run] then heals everything, waits for a leader, lets the workload read
// the final state, stops the cluster and checks the history with the
// workload's checkers, plus the harness's own: no panic, fatal error or data
// race in any node log, no node that exited by itself, final reads that
// succeeded. Everything it did lands in the scenario's folder (see the File
// constants): the same seed gives the same plan, so a failure can be re-run.
//
// The scenarios themselves are Go tests in package test/jepsen.
package harness
