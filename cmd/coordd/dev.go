package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/coordd/coordd/internal/portowner"
	"github.com/coordd/coordd/server"
)

// processStart is when this process started, as near as Go lets us know:
// the dev node reports how long it took to be ready from here.
var processStart = time.Now()

// devReadyWithin is how long a dev node waits to be ready before it says
// that it is not.
const devReadyWithin = 30 * time.Second

// setupDev turns o into a one-node cluster that bootstraps itself: the
// node id "dev" unless -id is given, a temporary data dir unless -data-dir
// is, and listeners bound here so that the bootstrap list names the real
// addresses (also for a port 0).
func setupDev(o *options) error {
	c := &o.cfg
	if len(c.Bootstrap) > 0 || c.Join != "" {
		return errors.New("-dev forms a one-node cluster of its own: drop -bootstrap and -join (or drop -dev)")
	}
	if c.NodeID == "" {
		c.NodeID = "dev"
	}
	var err error
	if c.RaftListener, err = listen(c.RaftAddr, "-raft-addr"); err != nil {
		return err
	}
	if c.HTTPListener, err = listen(c.HTTPAddr, "-http-addr"); err != nil {
		c.RaftListener.Close()
		return err
	}
	raftAddr, httpAddr := c.RaftAdvertise, c.HTTPAdvertise
	if raftAddr == "" {
		raftAddr = c.RaftListener.Addr().String()
	}
	if httpAddr == "" {
		httpAddr = c.HTTPListener.Addr().String()
	}
	c.Bootstrap = []server.Peer{{ID: c.NodeID, RaftAddr: raftAddr, HTTPAddr: httpAddr}}
	if c.DataDir == "" {
		if o.devDataDir, err = os.MkdirTemp("", "coordd-dev-"); err != nil {
			c.RaftListener.Close()
			c.HTTPListener.Close()
			return fmt.Errorf("-dev: temporary data dir: %w", err)
		}
		c.DataDir = o.devDataDir
	}
	return nil
}

// listen binds addr for flag, saying who holds the port if it is taken.
func listen(addr, flag string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err == nil {
		return ln, nil
	}
	if who := portowner.Describe(addr); who != "" {
		return nil, fmt.Errorf("%s %s: %w (%s); give another %s", flag, addr, err, who, flag)
	}
	return nil, fmt.Errorf("%s %s: %w", flag, addr, err)
}

// cleanupDev removes the dev node's temporary data dir.
func cleanupDev(o *options, stderr io.Writer) {
	if o.devDataDir == "" {
		return
	}
	if err := os.RemoveAll(o.devDataDir); err != nil {
		fmt.Fprintf(stderr, "coordd: removing the dev data dir: %v\n", err)
	}
}

// announceDev waits until the dev node is ready and prints its URL and how
// to reach it on stdout (the logs go to stderr), or says that it is not
// ready after devReadyWithin. It gives up when done closes.
func announceDev(srv *server.Server, o *options, stdout io.Writer, logger hclog.Logger, done <-chan struct{}) {
	deadline := time.NewTimer(devReadyWithin)
	defer deadline.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for srv.Ready() != nil {
		select {
		case <-done:
			return
		case <-deadline.C:
			logger.Warn("the dev node is not ready yet", "waited", devReadyWithin, "error", srv.Ready())
			return
		case <-tick.C:
		}
	}
	scheme := "http"
	if srv.TLSEnabled() {
		scheme = "https"
	}
	url := scheme + "://" + srv.HTTPAddr()
	data := o.cfg.DataDir
	if o.devDataDir != "" {
		data += " (removed on exit)"
	}
	fmt.Fprintf(stdout, `coordd dev node ready in %d ms: %s
  node %s, raft %s, pid %d, data in %s
  try:      curl -s %s/v1/status
  coordctl: export COORDCTL_ENDPOINTS=%s
Ctrl-C stops it.
`, time.Since(processStart).Milliseconds(), url, o.cfg.NodeID, srv.RaftAddr(), os.Getpid(), data, url, url)
}
