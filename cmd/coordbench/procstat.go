package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// clockTick is USER_HZ, the unit of utime and stime in /proc/PID/stat: 100
// on every Linux architecture Go supports (getconf CLK_TCK), and fixed by
// the kernel ABI whatever CONFIG_HZ is.
const clockTick = 100

// procStat is the part of /proc/PID/stat that coordbench reads.
type procStat struct {
	Comm  string // the executable's name, as the kernel shortens it
	State byte
	UTime int64 // clock ticks in user mode
	STime int64 // clock ticks in kernel mode
}

// parseProcStat parses the contents of /proc/PID/stat. The command name
// (field 2) is in parentheses and may itself hold spaces and parentheses,
// so the fields are counted from the last ')'.
func parseProcStat(b []byte) (procStat, error) {
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return procStat{}, fmt.Errorf("proc stat: no (comm) in %q", truncate(string(b), 80))
	}
	st := procStat{Comm: string(b[open+1 : end])}
	// After ") ": state(3) ppid(4) ... utime(14) stime(15).
	f := strings.Fields(string(b[end+1:]))
	if len(f) < 13 {
		return procStat{}, fmt.Errorf("proc stat: %d fields after comm, want at least 13", len(f))
	}
	st.State = f[0][0]
	var err error
	if st.UTime, err = strconv.ParseInt(f[11], 10, 64); err != nil {
		return procStat{}, fmt.Errorf("proc stat: utime %q: %w", f[11], err)
	}
	if st.STime, err = strconv.ParseInt(f[12], 10, 64); err != nil {
		return procStat{}, fmt.Errorf("proc stat: stime %q: %w", f[12], err)
	}
	return st, nil
}

// readProcStat reads /proc/PID/stat.
func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, fmt.Errorf("read cpu time of pid %d: %w", pid, err)
	}
	return parseProcStat(b)
}

// cpuPercent is the CPU a process used between two samples, in percent of
// one core, over elapsed seconds.
func cpuPercent(before, after procStat, elapsedSec float64) float64 {
	if elapsedSec <= 0 {
		return 0
	}
	ticks := (after.UTime + after.STime) - (before.UTime + before.STime)
	return float64(ticks) / clockTick / elapsedSec * 100
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
