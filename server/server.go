// Package server runs one coordd node: it owns *raft.Raft, its bbolt log and
// stable store, the snapshot store and transport, the leader's duties, request
// forwarding targets and the HTTP server's life cycle. No other package
// imports hashicorp/raft (fsm uses only its Log and FSM types).
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/coordd/coordd/fsm"
	"github.com/coordd/coordd/httpapi"
	"github.com/coordd/coordd/internal/tlsutil"
	"github.com/coordd/coordd/lease"
	"github.com/coordd/coordd/ui"
)

// Errors, aliased from httpapi so errors.Is works across both packages.
var (
	ErrNotLeader      = httpapi.ErrNotLeader
	ErrNoLeader       = httpapi.ErrNoLeader
	ErrLeaderNotReady = httpapi.ErrLeaderNotReady
	ErrOutcomeUnknown = httpapi.ErrOutcomeUnknown
	ErrShutdown       = httpapi.ErrShutdown
	ErrUnknownMember  = httpapi.ErrUnknownMember
	ErrCatchingUp     = httpapi.ErrCatchingUp
)

// raftTimeout bounds Raft operations that take no context (membership
// changes, barriers); requests are bounded by their own context too.
const raftTimeout = 10 * time.Second

// Server is one running coordd node.
type Server struct {
	cfg Config
	log hclog.Logger

	// reloadMu serializes read-modify-writes of Raft's reloadable
	// configuration (ReloadableConfig, then ReloadConfig), so that one
	// writer does not undo another's change.
	reloadMu sync.Mutex
	// clusterStop is set when the node stops with the whole cluster
	// (ShutdownWithCluster).
	clusterStop atomic.Bool

	fsm       *fsm.FSM
	applied   *indexWaiter
	clusterID *clusterID
	raft      *raft.Raft
	store     *raftboltdb.BoltStore
	transport *raft.NetworkTransport
	raftLayer *clusterStreamLayer // the transport's connections

	metrics   *nodeMetrics
	snapStats *snapshotStats
	logBytes  *logBytes // the size-aware snapshot trigger (snapshots.go)
	// releaseKick wakes the leader's releaseDuties (release.go).
	releaseKick chan struct{}

	// restoreMu admits one restore at a time; restoring holds every
	// request back while one runs on this leader.
	restoreMu sync.Mutex
	restoring atomic.Bool
	// restoreKick wakes the leader's duties to finish an installed
	// restore at once (finishPendingRestore).
	restoreKick chan struct{}
	// leaseKick wakes the leader's lease duties after an applied command
	// (leases.go).
	leaseKick chan struct{}

	// lessor is the leader's lease clock; leaseMu orders lease commands
	// applied by the FSM against its promotion.
	lessor  *lease.Lessor
	leaseMu sync.Mutex

	httpSrv *http.Server
	httpLn  net.Listener

	// tls holds the node's certificates when TLS is on (nil otherwise);
	// peerRT carries its HTTP calls to other nodes.
	tls    *tlsutil.Reloader
	peerRT http.RoundTripper

	// leaders is this node's view of the leader (leaderview.go).
	leaders *leaderView
	// verify coalesces the leadership rounds of keepalives (verify.go).
	verify *verifyGroup
	// pauses notices pauses of this process (verify.go).
	pauses *pauseWatch

	// wall is this node's wall clock (shifted by -unsafe-clock-offset);
	// stamps is the replicated clock it runs while it leads (clock.go);
	// skew estimates the difference of the two (clockskew.go).
	wall        func() time.Time
	stamps      *stampClock
	skew        *skewEstimator
	skewWarnMu  sync.Mutex
	skewWarned  time.Time
	raftStarted atomic.Bool // s.raft is set

	// leaderReady is true while this node leads and has applied its first
	// entry of the term. A new leader serves nothing before that.
	leaderReady atomic.Bool
	// readyTarget is the commit index seen when a leader was first known;
	// caughtUp becomes true once it is applied.
	readyTarget atomic.Uint64
	caughtUp    atomic.Bool

	// digests, collector, refusing, peerClient and readShadow: state
	// digests, alarms and shadow members (digest.go).
	digests    *digester
	collector  *collector
	refusing   atomic.Bool
	peerClient *http.Client
	readShadow *readShadower

	stop     chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup
	closed   atomic.Bool
}

// maxAppendEntries is how many log entries the leader appends and sends
// at once (hashicorp/raft's default is 64, its maximum 1024).
const maxAppendEntries = 256

// Start opens the stores, starts Raft and the HTTP API, and returns. It does
// not wait for a leader.
func Start(ctx context.Context, cfg Config) (_ *Server, err error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, applied: newIndexWaiter(), stop: make(chan struct{}), restoreKick: make(chan struct{}, 1), leaseKick: make(chan struct{}, 1)}
	s.fsm = fsm.New()
	offset := cfg.UnsafeClockOffset
	s.wall = func() time.Time { return time.Now().Add(offset) }
	if offset != 0 {
		s.log.Warn("this node's wall clock is shifted (-unsafe-clock-offset): for tests only", "offset", offset)
	}
	s.stamps = newStampClock(s.wall)
	s.skew = newSkewEstimator(skewWindow)
	s.digests, s.collector, s.readShadow = newDigester(&s.cfg), newCollector(), newReadShadower(&s.cfg)
	s.digests.perturb = unsafePerturb(&s.cfg, s.fsm)
	s.readShadow.s = s
	var skew *lease.SkewClock
	if cfg.UnsafeLeaseClockControl {
		base := cfg.LeaseClock
		if base == nil {
			base = lease.SystemClock{}
		}
		skew = lease.NewSkewClock(base)
		cfg.LeaseClock = skew
		s.log.Warn("lease clock control is enabled (-unsafe-lease-clock-control): for fault injection only")
	}
	s.lessor = lease.New(lease.Config{
		Extension:          cfg.LeaseExtension,
		CheckpointInterval: cfg.LeaseCheckpointInterval,
		Clock:              cfg.LeaseClock,
	})

	var cleanups []func()
	defer func() {
		if err != nil {
			for i := len(cleanups) - 1; i >= 0; i-- {
				cleanups[i]()
			}
		}
	}()

	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("server: create data dir: %w", err)
	}
	if s.clusterID, err = loadClusterID(cfg.DataDir, s.log); err != nil {
		return nil, err
	}
	if cfg.tlsEnabled() {
		if s.tls, err = tlsutil.NewReloader(tlsutil.Files{Cert: cfg.TLSCertFile, Key: cfg.TLSKeyFile, CA: cfg.TLSCAFile}); err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
		s.peerRT = peerTransport(s.tls)
	}

	// Listeners first: a port that is taken should fail before Raft starts.
	raftLn := cfg.RaftListener
	if raftLn == nil {
		if raftLn, err = net.Listen("tcp", cfg.RaftAddr); err != nil {
			return nil, fmt.Errorf("server: listen raft %s: %w", cfg.RaftAddr, err)
		}
	}
	cleanups = append(cleanups, func() { raftLn.Close() })
	s.httpLn = cfg.HTTPListener
	if s.httpLn == nil {
		if s.httpLn, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
			return nil, fmt.Errorf("server: listen http %s: %w", cfg.HTTPAddr, err)
		}
	}
	httpLn := s.httpLn
	cleanups = append(cleanups, func() { httpLn.Close() })
	if s.cfg.HTTPAdvertise == "" {
		s.cfg.HTTPAdvertise = s.httpLn.Addr().String()
	}

	stream, err := newStreamLayer(raftLn, cfg.RaftAdvertise)
	if err != nil {
		return nil, err
	}
	var layer raft.StreamLayer = stream
	if s.tls != nil {
		layer = newTLSStreamLayer(stream, s.tls, s.log.Named("raft-tls"))
	}
	// MaxRPCsInFlight 1: no pipelined replication. hashicorp/raft's
	// pipeline can deadlock when its decoder quits (a newer term, a refused
	// append) while a send is in flight: replication to that follower stops
	// for good and Raft's shutdown hangs. Its own doc finds the pipeline of
	// little benefit, and it made no difference to throughput here.
	tc := &raft.NetworkTransportConfig{Stream: layer, MaxPool: 3, MaxRPCsInFlight: 1, Timeout: raftTimeout, Logger: s.log.Named("raft-net")}
	if len(cfg.PeerRaftAddrs) > 0 {
		tc.ServerAddressProvider = &peerAddrs{self: raft.ServerID(cfg.NodeID), own: raft.ServerAddress(stream.Addr().String()), addrs: cfg.PeerRaftAddrs}
	}
	s.raftLayer = newClusterStreamLayer(tc.Stream, s.clusterID, s.log.Named("raft-net"))
	tc.Stream = s.raftLayer
	s.transport = raft.NewNetworkTransportWithConfig(tc)
	transport := s.transport
	cleanups = append(cleanups, func() { transport.Close() })

	// Log and stable store: bbolt (options in openBoltStore), checked
	// page by page and entry by entry before Raft reads it (integrity.go).
	dbPath := filepath.Join(cfg.DataDir, "raft.db")
	checkStart := time.Now()
	logIndexes, err := checkBoltFile(dbPath)
	if err != nil {
		return nil, err
	}
	if s.store, err = openBoltStore(dbPath); err != nil {
		return nil, err
	}
	store := s.store
	cleanups = append(cleanups, func() { store.Close() })
	logs, err := raft.NewLogCache(8192, &checkedLogStore{LogStore: s.store, path: dbPath, log: s.log})
	if err != nil {
		return nil, fmt.Errorf("server: log cache: %w", err)
	}
	fileSnaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, cfg.SnapshotRetain, s.log.Named("snapshot"))
	if err != nil {
		return nil, fmt.Errorf("server: snapshot store: %w", err)
	}
	s.snapStats = newSnapshotStats()
	snaps := newStatsSnapshotStore(fileSnaps, cfg.DataDir, s.snapStats)
	s.logBytes = newLogBytes(s.snapStats.load().Size)
	s.releaseKick = make(chan struct{}, 1)
	if err := s.checkData(snaps, dbPath, logIndexes, checkStart); err != nil {
		return nil, err
	}

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.SnapshotInterval = cfg.SnapshotThresholdCheck
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.TrailingLogs = cfg.TrailingLogs
	// Group commit: Apply calls queue without waiting for the leader loop,
	// which appends up to MaxAppendEntries of them with one store write
	// (one fsync) and replicates them in one RPC.
	rc.BatchApplyCh = true
	rc.MaxAppendEntries = maxAppendEntries
	rc.Logger = s.log.Named("raft")
	// Peer ids go in labels only: no duplicate metric per peer with the id
	// in its name.
	rc.NoLegacyTelemetry = true
	if err := raft.ValidateConfig(rc); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}

	existing, err := raft.HasExistingState(logs, s.store, snaps)
	if err != nil {
		return nil, fmt.Errorf("server: inspect raft state: %w", err)
	}

	s.raft, err = raft.NewRaft(rc, &trackedFSM{FSM: s.fsm, applied: s.applied, mu: &s.leaseMu, observe: s.observeApplied, stamped: s.observeStamp, log: s.log, digests: s.digests, logBytes: s.logBytes, releaseKick: s.releaseKick}, logs, s.store, snaps, s.transport)
	if err != nil {
		return nil, fmt.Errorf("server: start raft: %w", snaps.snapshotRestoreError(err))
	}
	s.raftStarted.Store(true)
	r := s.raft
	cleanups = append(cleanups, func() { r.Shutdown().Error() })

	if !existing && len(cfg.Bootstrap) > 0 {
		if err := s.clusterID.adopt(DeriveClusterID(cfg.ClusterName, cfg.Bootstrap), "bootstrap list"); err != nil {
			return nil, fmt.Errorf("server: bootstrap: %w (the data dir holds a cluster id but no Raft state: remove %s)", err, s.clusterID.path)
		}
		var conf raft.Configuration
		for _, p := range cfg.Bootstrap {
			addr := p.RaftAddr
			if p.ID == cfg.NodeID {
				addr = string(s.transport.LocalAddr())
			}
			conf.Servers = append(conf.Servers, raft.Server{
				ID: raft.ServerID(p.ID), Address: raft.ServerAddress(addr), Suffrage: raft.Voter,
			})
		}
		if err := s.raft.BootstrapCluster(conf).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			return nil, fmt.Errorf("server: bootstrap: %w", err)
		}
		s.log.Info("bootstrapped new cluster", "peers", len(conf.Servers))
	} else if existing {
		s.log.Info("restarting from existing raft state", "dir", cfg.DataDir)
	} else if cfg.Join == "" {
		// Otherwise Raft only says "no known peers, aborting election".
		self := fmt.Sprintf("%s=%s,%s", cfg.NodeID, s.transport.LocalAddr(), s.cfg.HTTPAdvertise)
		s.log.Warn("this node has no Raft state and neither -bootstrap nor -join: it waits for a running cluster to add it; " +
			"to start a new cluster give every node -bootstrap with all of them (alone: -bootstrap '" + self + "', or coordd -dev), " +
			"to join one give -join HOST:PORT of a member")
	}

	if s.metrics, err = registerMetrics(cfg.Registry, s); err != nil {
		return nil, err
	}
	if err := s.registerDigestMetrics(cfg.Registry); err != nil {
		return nil, err
	}
	s.peerClient = s.peerHTTPClient(10 * time.Second)
	s.readShadow.scheme, s.readShadow.client = s.httpScheme(), s.peerClient

	s.leaders = newLeaderView(s.httpAddrOf)
	s.verify = newVerifyGroup(s.verifyLeadership, verifyGap, s.metrics.verifyRounds.Inc)
	s.pauses = newPauseWatch(s.cfg.HeartbeatTimeout)
	hapi := httpapi.New(s, httpapi.Options{
		LeaderWait:          s.cfg.ElectionTimeout + s.cfg.HeartbeatTimeout,
		ForwardGrace:        s.cfg.HeartbeatTimeout,
		Logger:              s.log.Named("http"),
		MaxRequestBytes:     cfg.MaxRequestBytes,
		MaxValueBytes:       cfg.MaxValueBytes,
		MaxSnapshotBytes:    cfg.MaxSnapshotBytes,
		Registry:            cfg.Registry,
		Stopping:            s.stop,
		LeaseClock:          skew,
		RateLimit:           cfg.RateLimit,
		RateBurst:           cfg.RateBurst,
		MaxWatchers:         cfg.MaxWatchers,
		Forwarder:           s.peerHTTPClient(0),
		PeerH2C:             s.tls == nil,
		NoEncodedForwarding: cfg.NoEncodedForwarding,
		NoWriteCoalescing:   cfg.NoWriteCoalescing,
		ACL:                 cfg.ACL,
		MaxLeasesPerToken:   cfg.MaxLeasesPerToken,
		MaxCandidates:       cfg.MaxCandidates,
	})
	var handler http.Handler = hapi
	if cfg.Pprof {
		handler = withPprof(hapi, hapi.Guard)
	}
	handler = s.withIntegrity(handler, hapi.GuardRead, hapi.Guard)
	handler = ui.Wrap(handler, ui.Options{TLS: s.tls != nil, Members: s.memberHTTPAddrs})
	handler = withClusterID(handler, s.clusterID)
	handler = withPeerAuthSupport(handler)
	// No ReadTimeout or WriteTimeout: blocking queries, streams and lock
	// waits are long answers. The API bounds the time to receive a body
	// itself (httpapi.DefaultBodyReadTimeout).
	s.httpSrv = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: HTTPReadHeaderTimeout,
		IdleTimeout:       HTTPIdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		ErrorLog:          s.log.Named("http").StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
		// Peers forward over HTTP/2: unencrypted with prior knowledge
		// without TLS (httpapi.Options.PeerH2C), negotiated under TLS.
		Protocols: httpProtocols(s.tls != nil),
		HTTP2: &http.HTTP2Config{
			// Forwarded blocking queries and streams each hold a stream
			// of the one connection a follower keeps to the leader.
			MaxConcurrentStreams: 1000,
		},
	}
	s.wg.Add(5)
	go func() {
		defer s.wg.Done()
		s.runSnapshotTimer()
	}()
	go func() {
		defer s.wg.Done()
		s.runLogBytesSnapshots()
	}()
	go func() {
		defer s.wg.Done()
		s.runLeaderView()
	}()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.pauses.run(s.stop)
	}()
	go func() {
		defer s.wg.Done()
		if err := s.httpSrv.Serve(s.httpListener()); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http server stopped", "error", err)
		}
	}()
	go func() {
		defer s.wg.Done()
		s.runLeaderWatch()
	}()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.runDigests()
	}()
	if !existing && cfg.Join != "" {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.joinCluster()
		}()
	}
	s.log.Info("coordd node started", "id", cfg.NodeID, "raft", s.transport.LocalAddr(), "http", s.cfg.HTTPAdvertise, "tls", s.tls != nil)
	return s, nil
}

// HTTPAddr is the address the HTTP API is advertised at.
func (s *Server) HTTPAddr() string { return s.cfg.HTTPAdvertise }

// RaftAddr is the address peers reach this node's Raft transport at.
func (s *Server) RaftAddr() string { return string(s.transport.LocalAddr()) }

// Shutdown stops the node gracefully: a leader first hands leadership to
// another voter (so a planned restart costs almost no unavailability), then
// the HTTP server stops accepting and drains, Raft shuts down and the stores
// close. It is safe to call more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	return s.shutdown(ctx, true, true)
}

// Abort stops the node at once without handing leadership over, as a crash
// would (though what was fsynced stays fsynced). Tests use it to kill a
// leader in-process; operators should prefer Shutdown.
func (s *Server) Abort() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return s.shutdown(ctx, false, false)
}

// clusterStopWait bounds how long a follower stopping with its cluster
// waits for its leader to go first.
const clusterStopWait = time.Second

// ShutdownWithCluster stops the node as one of a whole cluster that is
// being stopped at the same time (coordd's SIGUSR2, which make run sends to
// every node). Shutdown's leadership handover would pick a peer that is
// itself stopping: the handover fails after a timeout, and the peers log
// errors about each other meanwhile. Instead a leader stops at once, without
// a handover; a follower first stops campaigning (its Raft timeouts are
// raised far beyond the stop), then waits until its leader has gone quiet
// (at most clusterStopWait), so that the leader never sees a follower's
// connection fail while it still runs. Then it stops as Shutdown does.
func (s *Server) ShutdownWithCluster(ctx context.Context) error {
	if s.closed.Load() {
		return nil
	}
	if s.raft.State() != raft.Leader {
		s.reloadMu.Lock()
		rc := s.raft.ReloadableConfig()
		rc.HeartbeatTimeout, rc.ElectionTimeout = time.Hour, time.Hour
		if err := s.raft.ReloadConfig(rc); err != nil {
			s.log.Warn("cannot stop campaigning before the cluster stops", "error", err)
		}
		s.reloadMu.Unlock()
		// The leader heartbeats every tenth of the heartbeat timeout:
		// half of it without contact means it has stopped.
		quiet := max(s.cfg.HeartbeatTimeout/2, 20*time.Millisecond)
		deadline := time.Now().Add(clusterStopWait)
		for s.raft.State() == raft.Follower && time.Since(s.raft.LastContact()) < quiet &&
			time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
	}
	s.log.Info("stopping with the whole cluster: no leadership handover")
	// Every node is stopping: what is in flight here cannot be forwarded
	// anywhere, and the followers wait at most clusterStopWait for this
	// node to go quiet. So the drain is bounded by clusterStopDrain, and
	// cutting it short is no error. (An HTTP/2 peer connection alone holds
	// a drain for a second: Go's server waits that long after its GOAWAY
	// for the peer to close it.)
	s.clusterStop.Store(true)
	dctx, cancel := context.WithTimeout(ctx, clusterStopDrain)
	defer cancel()
	return s.shutdown(dctx, false, true)
}

// clusterStopDrain bounds the drain of a node's HTTP server when the whole
// cluster stops (ShutdownWithCluster): well below clusterStopWait.
const clusterStopDrain = 300 * time.Millisecond

// shutdown stops the node; handover: a leader hands leadership to another
// voter first; drain: the HTTP server finishes the requests it serves
// (else it closes every connection at once).
func (s *Server) shutdown(ctx context.Context, handover, drain bool) error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	if handover && s.raft.State() == raft.Leader && s.voterCount() > 1 {
		s.log.Info("transferring leadership before shutdown")
		if err := waitFuture(ctx, s.raft.LeadershipTransfer()); err != nil {
			s.log.Warn("leadership transfer failed; shutting down anyway", "error", err)
		}
	}
	s.stopOnce.Do(func() { close(s.stop) })
	var errs []error
	if !drain {
		s.httpSrv.Close()
	} else if err := s.httpSrv.Shutdown(ctx); err != nil {
		if errors.Is(err, context.DeadlineExceeded) && s.clusterStop.Load() {
			s.log.Info("HTTP drain cut short: the whole cluster is stopping")
		} else {
			errs = append(errs, fmt.Errorf("server: http shutdown: %w", err))
		}
		s.httpSrv.Close()
	}
	if err := s.raft.Shutdown().Error(); err != nil {
		errs = append(errs, fmt.Errorf("server: raft shutdown: %w", err))
	}
	if err := s.transport.Close(); err != nil {
		errs = append(errs, fmt.Errorf("server: transport close: %w", err))
	}
	// Raft does not stop its connection handlers, which may still write
	// a heartbeat's term to the store: let them go before closing it.
	s.raftLayer.closeInbound(2 * time.Second)
	s.wg.Wait()
	if err := s.store.Close(); err != nil {
		errs = append(errs, fmt.Errorf("server: close raft store: %w", err))
	}
	s.log.Info("coordd node stopped", "id", s.cfg.NodeID)
	return errors.Join(errs...)
}

func (s *Server) voterCount() int {
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return 0
	}
	n := 0
	for _, srv := range f.Configuration().Servers {
		if srv.Suffrage == raft.Voter {
			n++
		}
	}
	return n
}

// waitFuture waits for a Raft future or the context, whichever is first.
func waitFuture(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// translate maps Raft's errors to coordd's sentinels at the package edge.
func translate(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader):
		return fmt.Errorf("%w: %v", ErrNotLeader, err)
	case errors.Is(err, raft.ErrLeadershipTransferInProgress), errors.Is(err, raft.ErrEnqueueTimeout):
		// Nothing was enqueued: as safe to retry as "not leader".
		return fmt.Errorf("%w: %v", ErrLeaderNotReady, err)
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrAbortedByRestore):
		// A write cut short by a restore was dropped by it, but say no
		// more than that its outcome is unknown.
		return fmt.Errorf("%w: %v", ErrOutcomeUnknown, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("%w: %v", ErrShutdown, err)
	default:
		return err
	}
}

// httpProtocols are the protocols of the HTTP API's server: HTTP/1.1 and
// HTTP/2 (unencrypted, prior knowledge, without TLS).
func httpProtocols(tls bool) *http.Protocols {
	var p http.Protocols
	p.SetHTTP1(true)
	if tls {
		p.SetHTTP2(true)
	} else {
		p.SetUnencryptedHTTP2(true)
	}
	return &p
}
