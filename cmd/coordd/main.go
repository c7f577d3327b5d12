// Command coordd runs one node of a coordd cluster.
//
//	coordd -id ID -data-dir DIR [-raft-addr H:P] [-http-addr H:P] (-bootstrap LIST | -join H:P) [flags]
//	coordd -dev [flags]
//
// `coordd -dev` runs a single node for development: it bootstraps itself on
// loopback, keeps its data in a temporary directory (unless -data-dir is
// given) and prints its URL once it is ready.
//
// `coordd certs -dir DIR -nodes n1,n2,n3` writes a cluster CA and node and
// client certificates for TLS (-tls-cert, -tls-key, -tls-ca); SIGHUP makes
// a TLS node re-read those files.
//
// `coordd snapshot inspect FILE` verifies a snapshot file (a backup from
// GET /v1/snapshot, or state.bin in a node's snapshots directory) and prints
// what is in it.
//
// `coordd version` prints the module version and the VCS revision the
// binary was built from; `coordd help` the usage.
//
// Every flag can also be set through an environment variable: COORDD_ and
// the flag name in upper case with dashes as underscores (-data-dir is
// COORDD_DATA_DIR). A flag on the command line wins over the environment.
//
// SIGTERM and SIGINT stop a node gracefully (a leader hands leadership to
// another voter first); SIGUSR2 stops it as part of a stop of the whole
// cluster (no handover: see server.Server.ShutdownWithCluster).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/coordd/coordd/internal/buildinfo"
	"github.com/coordd/coordd/internal/gcpace"
	"github.com/coordd/coordd/internal/portowner"
	"github.com/coordd/coordd/internal/raftmetrics"
	"github.com/coordd/coordd/server"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// usageText is the head of `coordd help`; the flags follow it.
const usageText = `usage: coordd -id ID -data-dir DIR [-raft-addr H:P] [-http-addr H:P] (-bootstrap LIST | -join H:P) [flags]
       coordd -dev [flags]
       coordd certs -dir DIR -nodes n1,n2,n3 [-hosts H,...]
       coordd snapshot inspect [-v] [-o json] FILE
       coordd version | help

coordd runs one node of a coordd cluster.

Commands:
  (none)             run a node with the flags below
  certs              write a cluster CA, node and client certificates for TLS (coordd certs -h)
  snapshot inspect   verify a snapshot file or backup and print what is in it
  version            print the module version and the VCS revision of this build
  help               this text

Starting a node:
  -dev               one node for development: it bootstraps itself on 127.0.0.1 (HTTP 7101,
                     Raft 7201 unless -http-addr, -raft-addr), keeps its data in a temporary
                     directory removed on exit (unless -data-dir) and prints its URL when ready
  -bootstrap LIST    form a new cluster: give every node the same list id=raftaddr,httpaddr;...
  -join H:P          join a running cluster through any member's HTTP address
  (neither)          wait for a running cluster to add this node (coordctl members add)

Environment: every flag can be set as COORDD_<FLAG>, the flag name in upper case with
dashes as underscores (-data-dir is COORDD_DATA_DIR); a flag on the command line wins.

Signals: SIGTERM or SIGINT stop the node gracefully (a leader hands leadership to another
voter first; a second signal cuts the stop short). SIGUSR2 stops it as one of a whole
cluster being stopped: send it to every node (no handover; followers let the leader go
first). SIGHUP makes a TLS node re-read its certificate files.

Manual: docs/operations.md in the repository.

Flags:
`

// options are the parsed command line.
type options struct {
	cfg             server.Config
	bootstrap       string
	peerRaftAddrs   string
	logLevel        string
	logJSON         bool
	shutdownTimeout time.Duration
	gcPercent       int
	gcHeadroom      int64
	aclTokenFile    string
	// dev: a one-node cluster for development (-dev); devDataDir is the
	// temporary data dir made for it, removed on exit ("" if -data-dir).
	dev        bool
	devDataDir string
	version    bool
}

// defaultGCPercent: the state is a set of immutable radix trees, and every
// write copies a path of nodes, so coordd allocates much and keeps a large
// live heap. With Go's default of 100 the collector took about a third of
// the leader's CPU under write load (pprof, coordbench acquire); 400 cuts
// that to a fraction, for a heap of up to five times the live state instead
// of two.
const defaultGCPercent = 400

// defaultGCHeadroom caps what -gc-percent lets the heap grow by between
// collections (internal/gcpace): with 400 alone, a node holding 1 GiB of
// state would use 5 GiB; with the cap it uses about 2 GiB, and a state
// under 256 MiB keeps the full 400.
const defaultGCHeadroom = 1 << 30

// newFlagSet defines coordd's flags into o. It prints nothing: run
// reports a parse error in one line and `coordd help` prints the flags.
func newFlagSet(o *options) *flag.FlagSet {
	fs := flag.NewFlagSet("coordd", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	c := &o.cfg
	fs.BoolVar(&o.dev, "dev", false, "run one node for development: bootstrap itself on loopback, data in a temporary dir removed on exit unless -data-dir")
	fs.BoolVar(&o.version, "version", false, "print the version and the VCS revision of this build, and exit")
	fs.StringVar(&c.NodeID, "id", "", "unique, stable node id (required)")
	fs.StringVar(&c.DataDir, "data-dir", "", "directory for the Raft log, stable store and snapshots (required)")
	fs.StringVar(&c.RaftAddr, "raft-addr", "127.0.0.1:7201", "address the Raft transport listens on")
	fs.StringVar(&c.RaftAdvertise, "raft-advertise", "", "address peers dial for Raft (default: -raft-addr)")
	fs.StringVar(&c.HTTPAddr, "http-addr", "127.0.0.1:7101", "address the HTTP API listens on")
	fs.StringVar(&c.HTTPAdvertise, "http-advertise", "", "address other nodes forward requests to (default: -http-addr)")
	fs.StringVar(&o.bootstrap, "bootstrap", "", "form a new cluster of these peers when the data dir is empty: id=raftaddr,httpaddr;...")
	fs.DurationVar(&c.LeaseCheckpointInterval, "lease-checkpoint-interval", server.DefaultLeaseCheckpointInterval, "record a lease's remaining TTL through Raft once it has not been kept alive for this long (bounds how long a new leader lets an abandoned lease live)")
	fs.BoolVar(&c.Pprof, "pprof", false, "serve Go profiles under /debug/pprof/ on the HTTP address (for profiling; off in production)")
	fs.BoolVar(&c.NoEncodedForwarding, "no-encoded-forwarding", false, "as a follower, forward every write as the client's whole HTTP request instead of its validated, encoded command (for comparison)")
	fs.BoolVar(&c.NoWriteCoalescing, "no-write-coalescing", false, "as a follower, send each encoded command to the leader in a request of its own instead of batching those that arrive together (for comparison)")
	fs.BoolVar(&c.UnsafeLeaseClockControl, "unsafe-lease-clock-control", false, "fault injection only: let POST /v1/debug/lease-clock jump or speed up this node's lease clock")
	fs.DurationVar(&c.UnsafeClockOffset, "unsafe-clock-offset", 0, "tests only: shift this node's wall clock by this much (e.g. 1h or -30s), as a badly synchronised clock would; never in production")
	fs.StringVar(&o.peerRaftAddrs, "peer-raft-addrs", "", "dial these peers' Raft at these addresses instead of the configured ones (proxies, fault injection): id=host:port,...")
	fs.StringVar(&c.Join, "join", "", "HTTP address of a running member to join through when the data dir is empty")
	fs.BoolVar(&c.NonVoter, "non-voter", false, "join as a non-voting member")
	integrityFlags(fs, c)
	fs.StringVar(&c.ClusterName, "cluster-name", "", "with -bootstrap: a name that enters the cluster id (give clusters with identical bootstrap lists different names)")
	fs.DurationVar(&c.HeartbeatTimeout, "heartbeat-timeout", server.DefaultHeartbeatTimeout, "Raft heartbeat timeout")
	fs.DurationVar(&c.ElectionTimeout, "election-timeout", server.DefaultElectionTimeout, "Raft election timeout")
	fs.DurationVar(&c.LeaderLeaseTimeout, "leader-lease-timeout", server.DefaultLeaderLeaseTimeout, "Raft leader lease timeout (at most the heartbeat timeout)")
	fs.DurationVar(&c.CommitTimeout, "commit-timeout", server.DefaultCommitTimeout, "Raft commit timeout")
	fs.DurationVar(&c.SnapshotInterval, "snapshot-interval", server.DefaultSnapshotInterval, "take a snapshot at least this often when anything changed")
	fs.Uint64Var(&c.SnapshotThreshold, "snapshot-threshold", server.DefaultSnapshotThreshold, "log entries since the last snapshot that trigger a new one")
	fs.DurationVar(&c.SnapshotThresholdCheck, "snapshot-threshold-check", server.DefaultSnapshotThresholdCheck, "how often to compare the log with -snapshot-threshold")
	fs.Uint64Var(&c.TrailingLogs, "trailing-logs", server.DefaultTrailingLogs, "log entries kept behind a snapshot")
	fs.IntVar(&c.SnapshotRetain, "snapshot-retain", server.DefaultSnapshotRetain, "snapshots kept on disk")
	fs.Int64Var(&c.MaxRequestBytes, "max-request-bytes", server.DefaultMaxRequestBytes, "largest HTTP request body")
	fs.IntVar(&c.MaxValueBytes, "max-value-bytes", server.DefaultMaxValueBytes, "largest KV value")
	fs.Int64Var(&c.MaxSnapshotBytes, "max-snapshot-bytes", server.DefaultMaxSnapshotBytes, "largest backup accepted for restore (POST /v1/snapshot)")
	fs.Float64Var(&c.RateLimit, "rate-limit", server.DefaultRateLimit, "requests per second allowed per client (its bearer token, else its IP address); 0: no limit")
	fs.IntVar(&c.RateBurst, "rate-burst", 0, "requests a client may send at once above -rate-limit (default: twice -rate-limit)")
	fs.IntVar(&c.MaxWatchers, "max-watchers", server.DefaultMaxWatchers, "most blocking queries (?index=) and event streams one node serves at once; 0: no limit")
	fs.IntVar(&c.MaxHeaderBytes, "max-header-bytes", server.DefaultMaxHeaderBytes, "largest HTTP request header")
	fs.StringVar(&c.TLSCertFile, "tls-cert", "", "TLS: this node's certificate (PEM); with -tls-key and -tls-ca turns on mutual TLS for Raft and https for the HTTP API (coordd certs writes them)")
	fs.StringVar(&c.TLSKeyFile, "tls-key", "", "TLS: the private key of -tls-cert (PEM)")
	fs.StringVar(&c.TLSCAFile, "tls-ca", "", "TLS: the cluster CA bundle (PEM) that peers' and clients' certificates must chain to")
	fs.BoolVar(&c.TLSRequireClientCert, "tls-require-client-cert", false, "TLS: require a client certificate of the CA on the HTTP API too (default: verified if given)")
	fs.BoolVar(&c.ACL, "acl", false, "access control: every request needs a bearer token whose rules allow it (health checks and the one-time POST /v1/acl/bootstrap excepted); set it on every node")
	fs.StringVar(&o.aclTokenFile, "acl-token-file", "", "file holding the token this node sends on its own requests to other nodes (-join; needs operator write)")
	fs.IntVar(&c.MaxLeasesPerToken, "max-leases-per-token", 250_000, "most leases one token may hold (without -acl: all clients together); -1: no limit")
	fs.IntVar(&c.MaxCandidates, "max-candidates", 10_000, "most holders plus waiting candidates of one election or lock; -1: no limit")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: trace, debug, info, warn, error")
	fs.BoolVar(&o.logJSON, "log-json", false, "log in JSON")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 10*time.Second, "longest graceful shutdown before giving up")
	fs.IntVar(&o.gcPercent, "gc-percent", defaultGCPercent, "Go GC target percentage (GOGC), unless GOGC is set: higher trades memory for CPU")
	fs.Int64Var(&o.gcHeadroom, "gc-headroom-bytes", defaultGCHeadroom, "most the heap may grow by between collections: -gc-percent is lowered (down to 100) as the live heap grows past this over -gc-percent/100; 0: no cap")
	return fs
}

func parseFlags(args []string) (*options, error) {
	o := &options{}
	fs := newFlagSet(o)
	c := &o.cfg
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if o.version {
		return o, nil
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if err := applyEnv(fs, os.LookupEnv); err != nil {
		return nil, err
	}
	if err := checkTLSFlags(c); err != nil {
		return nil, err
	}
	if o.bootstrap != "" {
		peers, err := server.ParsePeers(o.bootstrap)
		if err != nil {
			return nil, err
		}
		c.Bootstrap = peers
	}
	if o.peerRaftAddrs != "" {
		addrs, err := server.ParsePeerAddrs(o.peerRaftAddrs)
		if err != nil {
			return nil, err
		}
		c.PeerRaftAddrs = addrs
	}
	if hclog.LevelFromString(o.logLevel) == hclog.NoLevel {
		return nil, fmt.Errorf("unknown -log-level %q", o.logLevel)
	}
	if err := checkLimitFlags(c); err != nil {
		return nil, err
	}
	if o.gcHeadroom < 0 {
		return nil, fmt.Errorf("-gc-headroom-bytes must not be negative (0: no cap)")
	}
	if o.aclTokenFile != "" {
		b, err := os.ReadFile(o.aclTokenFile)
		if err != nil {
			return nil, fmt.Errorf("-acl-token-file: %w", err)
		}
		if c.ACLToken = strings.TrimSpace(string(b)); c.ACLToken == "" {
			return nil, fmt.Errorf("-acl-token-file %s is empty", o.aclTokenFile)
		}
	}
	return o, nil
}

// checkLimitFlags refuses nonsensical limits and turns the flags' "0: no
// limit" into the Config's negative value (a zero Config field means the
// default).
func checkLimitFlags(c *server.Config) error {
	switch {
	case math.IsNaN(c.RateLimit) || math.IsInf(c.RateLimit, 0):
		return fmt.Errorf("-rate-limit must be a number of requests per second, not %v", c.RateLimit)
	case c.RateBurst < 0:
		return fmt.Errorf("-rate-burst must not be negative (0: twice -rate-limit)")
	case c.MaxHeaderBytes < 1024:
		return fmt.Errorf("-max-header-bytes %d is too small (at least 1024)", c.MaxHeaderBytes)
	}
	if c.RateLimit <= 0 {
		c.RateLimit = -1
	}
	if c.MaxWatchers <= 0 {
		c.MaxWatchers = -1
	}
	return nil
}

// applyEnv sets every flag that was not given on the command line from
// COORDD_<NAME>, if that is set.
func applyEnv(fs *flag.FlagSet, lookup func(string) (string, bool)) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		env := "COORDD_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := lookup(env); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("environment %s=%q: %w", env, v, e)
			}
		}
	})
	return err
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "snapshot":
			return runSnapshot(args[1:], stdout, stderr)
		case "certs":
			return runCerts(args[1:], stdout, stderr)
		case "version":
			fmt.Fprintln(stdout, buildinfo.Read().String("coordd"))
			return 0
		case "help":
			printUsage(stdout)
			return 0
		}
	}
	o, err := parseFlags(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		printUsage(stdout)
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "coordd: %v\nsee coordd help\n", err)
		return 2
	case o.version:
		fmt.Fprintln(stdout, buildinfo.Read().String("coordd"))
		return 0
	}
	if o.dev {
		if err := setupDev(o); err != nil {
			fmt.Fprintf(stderr, "coordd: %v\n", err)
			return 1
		}
		defer cleanupDev(o, stderr)
	} else if o.cfg.NodeID == "" || o.cfg.DataDir == "" {
		fmt.Fprintln(stderr, "coordd: -id and -data-dir are required to run a node (coordd -dev runs one for development)\nsee coordd help")
		return 2
	}
	if _, set := os.LookupEnv("GOGC"); !set {
		// GOGC set by the operator is Go's own, fixed; otherwise the
		// target follows the live heap (see internal/gcpace).
		defer gcpace.Start(uint64(o.gcHeadroom), o.gcPercent).Stop()
	}
	logger := hclog.New(&hclog.LoggerOptions{
		Name:       "coordd",
		Level:      hclog.LevelFromString(o.logLevel),
		JSONFormat: o.logJSON,
		Output:     stderr,
	})
	o.cfg.Logger = logger.With("node", o.cfg.NodeID)

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := raftmetrics.Export(reg); err != nil {
		logger.Warn("raft metrics not exported", "error", err)
	}
	o.cfg.Registry = reg

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR2)
	defer signal.Stop(sigs)
	logger.Info("starting", "version", buildinfo.Read().Short(), "pid", os.Getpid())
	srv, err := server.Start(context.Background(), o.cfg)
	if err != nil {
		logger.Error("cannot start", "error", explainStartError(err, o.cfg))
		return 1
	}
	stopReload := reloadOnSIGHUP(srv, logger)
	defer stopReload()
	if o.dev {
		done := make(chan struct{})
		defer close(done)
		go announceDev(srv, o, stdout, logger, done)
	}
	sig := <-sigs
	sctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	// A second signal cuts the graceful path short.
	force, stopForce := context.WithCancel(sctx)
	defer stopForce()
	go func() {
		select {
		case <-sigs:
			logger.Warn("second signal: cutting the shutdown short")
			stopForce()
		case <-force.Done():
		}
	}()
	if sig == syscall.SIGUSR2 {
		logger.Info("SIGUSR2: the whole cluster is stopping; shutting down without a leadership handover (send again to force)")
		err = srv.ShutdownWithCluster(force)
	} else {
		logger.Info("signal received; shutting down gracefully (send again to force)", "signal", sig)
		err = srv.Shutdown(force)
	}
	if err != nil {
		logger.Error("shutdown", "error", err)
		return 1
	}
	return 0
}

// printUsage writes `coordd help`: the usage, commands, environment and
// signals, then every flag.
func printUsage(w io.Writer) {
	fmt.Fprint(w, usageText)
	fs := newFlagSet(&options{})
	fs.SetOutput(w)
	fs.PrintDefaults()
}

// explainStartError adds to a failure to listen on a port who holds that
// port, when that can be found out.
func explainStartError(err error, cfg server.Config) error {
	if !errors.Is(err, syscall.EADDRINUSE) {
		return err
	}
	var held []string
	for _, addr := range []string{cfg.RaftAddr, cfg.HTTPAddr} {
		if strings.Contains(err.Error(), " "+addr+":") {
			if who := portowner.Describe(addr); who != "" {
				held = append(held, addr+" is "+who)
			}
		}
	}
	if len(held) == 0 {
		return err
	}
	return fmt.Errorf("%w (%s)", err, strings.Join(held, "; "))
}
