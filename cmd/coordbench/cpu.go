package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/coordd/coordd/client"
)

// nodeProc is a node of the cluster under test whose CPU time can be read.
type nodeProc struct {
	id     string
	pid    int
	leader bool
}

// nodePIDs asks each endpoint for its node's pid (Status().PID). It returns
// nil and the reason when CPU cannot be measured: an endpoint is not
// loopback, does not answer, or its pid is not a coordd process here (say,
// in another container).
func (e *env) nodePIDs() ([]nodeProc, string) {
	var out []nodeProc
	for _, ep := range e.endpoints {
		if !isLoopback(ep) {
			return nil, fmt.Sprintf("endpoint %s is not loopback", ep)
		}
		c, err := client.New(e.ctx, client.Config{Endpoints: []string{ep}, RetryTimeout: 2 * time.Second})
		if err != nil {
			return nil, err.Error()
		}
		ctx, cancel := context.WithTimeout(e.ctx, 3*time.Second)
		st, err := c.Status(ctx)
		cancel()
		c.Close()
		if err != nil {
			return nil, fmt.Sprintf("status of %s: %v", ep, err)
		}
		ps, err := readProcStat(st.PID)
		if err != nil || !strings.Contains(ps.Comm, "coordd") {
			return nil, fmt.Sprintf("pid %d of %s is not a coordd process on this machine (%v)", st.PID, ep, err)
		}
		out = append(out, nodeProc{id: st.ID, pid: st.PID, leader: st.State == "Leader"})
	}
	return out, ""
}

// sampleCPU reads the CPU times of the nodes (nil if any read fails).
func sampleCPU(nodes []nodeProc) []procStat {
	if len(nodes) == 0 {
		return nil
	}
	out := make([]procStat, len(nodes))
	for i, n := range nodes {
		st, err := readProcStat(n.pid)
		if err != nil {
			return nil
		}
		out[i] = st
	}
	return out
}

// cpuFigures are the CPU of all nodes together and of the leader, in % of
// one core over window seconds; n/a when they could not be read.
func cpuFigures(nodes []nodeProc, before, after []procStat, window float64) []Figure {
	total := Figure{Key: "cpu_pct_one_core", Unit: "%", NA: true}
	leader := Figure{Key: "cpu_pct_leader", Unit: "%", NA: true}
	if before == nil || after == nil {
		return []Figure{total, leader}
	}
	total.NA = false
	for i, n := range nodes {
		p := cpuPercent(before[i], after[i], window)
		total.Value += p
		if n.leader {
			leader.Value, leader.NA = p, false
		}
	}
	return []Figure{total, leader}
}

// cpuWatch measures the CPU of the nodes and of coordbench itself over a
// window (begin, end), for the load modes: it shows who is saturated.
type cpuWatch struct {
	nodes []nodeProc

	mu               sync.Mutex
	t0, t1           time.Time
	nodes0, nodes1   []procStat
	self0, self1     procStat
	selfOK0, selfOK1 bool
}

// watchCPU returns a cpuWatch of the cluster under test (its node figures
// are n/a when the pids cannot be read here).
func (e *env) watchCPU() *cpuWatch {
	nodes, note := e.nodePIDs()
	if note != "" {
		e.logf("node CPU n/a: %s", note)
	}
	return &cpuWatch{nodes: nodes}
}

func (w *cpuWatch) begin() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t0, w.nodes0 = time.Now(), sampleCPU(w.nodes)
	st, err := readProcStat(os.Getpid())
	w.self0, w.selfOK0 = st, err == nil
}

func (w *cpuWatch) end() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.t1, w.nodes1 = time.Now(), sampleCPU(w.nodes)
	st, err := readProcStat(os.Getpid())
	w.self1, w.selfOK1 = st, err == nil
}

// figures: CPU of the nodes (all, leader) and of coordbench, % of one core.
func (w *cpuWatch) figures() []Figure {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.t0.IsZero() || w.t1.IsZero() {
		return []Figure{{Key: "cpu_pct_one_core", Unit: "%", NA: true}, {Key: "cpu_pct_leader", Unit: "%", NA: true},
			{Key: "cpu_pct_coordbench", Unit: "%", NA: true}}
	}
	window := w.t1.Sub(w.t0).Seconds()
	figs := cpuFigures(w.nodes, w.nodes0, w.nodes1, window)
	self := Figure{Key: "cpu_pct_coordbench", Unit: "%", NA: !w.selfOK0 || !w.selfOK1}
	if !self.NA {
		self.Value = cpuPercent(w.self0, w.self1, window)
	}
	return append(figs, self)
}
