// Package portowner finds the processes that listen on a local TCP port,
// so that "address already in use" can say who holds it. It reads Linux's
// /proc; elsewhere, or without the rights to see the other process, it
// finds nothing.
package portowner

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Owner is a process with a socket listening on the port.
type Owner struct {
	PID int
	// Cmdline is its command line, arguments separated by spaces.
	Cmdline string
}

// Find returns the processes listening on the TCP port of addr
// ("host:port"), whatever local address they bound it to.
func Find(addr string) ([]Owner, error) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return nil, fmt.Errorf("portowner: port %q: %w", p, err)
	}
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		if err := listeningInodes(f, port, inodes); err != nil && !os.IsNotExist(err) {
			return nil, err
		}
	}
	if len(inodes) == 0 {
		return nil, nil
	}
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	seen := map[int]bool{}
	var owners []Owner
	for _, fd := range fds {
		link, err := os.Readlink(fd)
		if err != nil || !strings.HasPrefix(link, "socket:[") {
			continue
		}
		if !inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] {
			continue
		}
		pid, err := strconv.Atoi(strings.Split(fd, "/")[2])
		if err != nil || seen[pid] {
			continue
		}
		seen[pid] = true
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		owners = append(owners, Owner{PID: pid, Cmdline: strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " "))})
	}
	return owners, nil
}

// listeningInodes adds the socket inodes of the table file (/proc/net/tcp
// layout) that listen on port.
func listeningInodes(file string, port int, into map[string]bool) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // the header
	for sc.Scan() {
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[3] != "0A" { // 0A: LISTEN
			continue
		}
		i := strings.LastIndexByte(fields[1], ':')
		if p, err := strconv.ParseUint(fields[1][i+1:], 16, 16); err == nil && int(p) == port {
			into[fields[9]] = true
		}
	}
	return sc.Err()
}

// Describe says who holds addr's port, for an error message: "held by pid
// 1234 (coordd -id n1 ...)", or "" when that cannot be found out.
func Describe(addr string) string {
	owners, err := Find(addr)
	if err != nil || len(owners) == 0 {
		return ""
	}
	parts := make([]string, len(owners))
	for i, o := range owners {
		cmd := o.Cmdline
		if len(cmd) > 120 {
			cmd = cmd[:117] + "..."
		}
		parts[i] = fmt.Sprintf("pid %d (%s)", o.PID, cmd)
	}
	return "held by " + strings.Join(parts, ", ")
}
