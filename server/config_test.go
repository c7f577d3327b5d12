package server_test

import (
	"context"
	"errors"
	"math"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/coordd/coordd/server"
)

func TestStart_RefusesInvalidConfigWithErrConfig(t *testing.T) {
	t.Parallel()
	base := func() server.Config {
		return server.Config{NodeID: "n1", DataDir: t.TempDir(), RaftAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"}
	}
	cases := map[string]func(*server.Config){
		"no node id":           func(c *server.Config) { c.NodeID = "" },
		"no data dir":          func(c *server.Config) { c.DataDir = "" },
		"no raft address":      func(c *server.Config) { c.RaftAddr = "" },
		"no http address":      func(c *server.Config) { c.HTTPAddr = "" },
		"lease over heartbeat": func(c *server.Config) { c.HeartbeatTimeout, c.LeaderLeaseTimeout = 100*time.Millisecond, time.Second },
		"election below heartbeat": func(c *server.Config) {
			c.HeartbeatTimeout, c.ElectionTimeout = time.Second, 100*time.Millisecond
		},
		"bootstrap and join": func(c *server.Config) {
			c.Join = "127.0.0.1:1"
			c.Bootstrap = []server.Peer{{ID: "n1", RaftAddr: "127.0.0.1:1", HTTPAddr: "127.0.0.1:2"}}
		},
		"bootstrap without self": func(c *server.Config) {
			c.Bootstrap = []server.Peer{{ID: "n2", RaftAddr: "127.0.0.1:1", HTTPAddr: "127.0.0.1:2"}}
		},
		"bootstrap duplicate": func(c *server.Config) {
			p := server.Peer{ID: "n1", RaftAddr: "127.0.0.1:1", HTTPAddr: "127.0.0.1:2"}
			c.Bootstrap = []server.Peer{p, p}
		},
		"unroutable raft advertise": func(c *server.Config) { c.RaftAddr = "0.0.0.0:0" },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := base()
			mutate(&cfg)
			s, err := server.Start(context.Background(), cfg)
			if err == nil {
				s.Abort()
				t.Fatal("Start accepted an invalid config")
			}
			if !errors.Is(err, server.ErrConfig) {
				t.Fatalf("error %v does not wrap ErrConfig", err)
			}
		})
	}
}

func TestStart_TakenPortFailsAndReleasesEverything(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dir := t.TempDir()
	cfg := server.Config{NodeID: "n1", DataDir: dir, RaftAddr: "127.0.0.1:0", HTTPAddr: taken.Addr().String()}
	if s, err := server.Start(context.Background(), cfg); err == nil {
		s.Abort()
		t.Fatal("Start succeeded on a taken port")
	}
	// The data dir's bolt file must not stay locked: a second start works.
	cfg.HTTPAddr = "127.0.0.1:0"
	s, err := server.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start after failed start: %v", err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestParsePeerAddrs(t *testing.T) {
	got, err := server.ParsePeerAddrs("n1=127.0.0.1:9001, n2=127.0.0.1:9002;n3=[::1]:9003")
	if err != nil || len(got) != 3 || got["n2"] != "127.0.0.1:9002" || got["n3"] != "[::1]:9003" {
		t.Fatalf("ParsePeerAddrs = %v, %v", got, err)
	}
	for _, bad := range []string{"n1", "=127.0.0.1:1", "n1=nohost", "n1=127.0.0.1:1,n1=127.0.0.1:2"} {
		if _, err := server.ParsePeerAddrs(bad); !errors.Is(err, server.ErrConfig) {
			t.Errorf("ParsePeerAddrs(%q) = %v, want ErrConfig", bad, err)
		}
	}
}

// TestStart_RefusesEveryLimitOutOfRange_NamingTheFlagAndTheRange: a limit
// the leader stamps into every proposal (-max-leases-per-token,
// -max-candidates) above what the state machine accepts used to start
// fine and then fail, or (before the state machine checked its input)
// poison, every grant; every limit now has a range checked at startup.
func TestStart_RefusesEveryLimitOutOfRange_NamingTheFlagAndTheRange(t *testing.T) {
	t.Parallel()
	base := func() server.Config {
		return server.Config{NodeID: "n1", DataDir: t.TempDir(), RaftAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0"}
	}
	cases := []struct {
		flag   string
		mutate func(*server.Config)
	}{
		{"-max-leases-per-token", func(c *server.Config) { c.MaxLeasesPerToken = 1 << 41 }},
		{"-max-candidates", func(c *server.Config) { c.MaxCandidates = 1 << 41 }},
		{"-snapshot-retain", func(c *server.Config) { c.SnapshotRetain = -1 }},
		{"-snapshot-retain", func(c *server.Config) { c.SnapshotRetain = 1 << 20 }},
		{"-snapshot-threshold", func(c *server.Config) { c.SnapshotThreshold = 1 << 62 }},
		{"-trailing-logs", func(c *server.Config) { c.TrailingLogs = 1 << 62 }},
		{"-max-snapshot-bytes", func(c *server.Config) { c.MaxSnapshotBytes = -5 }},
		{"-max-request-bytes", func(c *server.Config) { c.MaxRequestBytes = -5 }},
		{"-max-request-bytes", func(c *server.Config) { c.MaxRequestBytes = 1 << 50 }},
		{"-max-value-bytes", func(c *server.Config) { c.MaxValueBytes = -1 }},
		{"-rate-limit", func(c *server.Config) { c.RateLimit = math.NaN() }},
		{"-rate-limit", func(c *server.Config) { c.RateLimit = math.Inf(1) }},
		{"-rate-burst", func(c *server.Config) { c.RateBurst = -1 }},
		{"-max-watchers", func(c *server.Config) { c.MaxWatchers = 1 << 40 }},
		{"-max-header-bytes", func(c *server.Config) { c.MaxHeaderBytes = 10 }},
		{"-heartbeat-timeout", func(c *server.Config) {
			c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout = time.Microsecond, time.Second, time.Microsecond
		}},
		{"-election-timeout", func(c *server.Config) { c.ElectionTimeout = 48 * time.Hour }},
		{"-commit-timeout", func(c *server.Config) { c.CommitTimeout = -time.Second }},
		{"-snapshot-interval", func(c *server.Config) { c.SnapshotInterval = -time.Second }},
		{"-lease-checkpoint-interval", func(c *server.Config) { c.LeaseCheckpointInterval = -time.Second }},
	}
	for _, tc := range cases {
		t.Run(tc.flag, func(t *testing.T) {
			cfg := base()
			tc.mutate(&cfg)
			s, err := server.Start(context.Background(), cfg)
			if err == nil {
				s.Abort()
				t.Fatalf("Start accepted %s out of range", tc.flag)
			}
			if !errors.Is(err, server.ErrConfig) || !strings.Contains(err.Error(), tc.flag+" ") ||
				!strings.Contains(err.Error(), "allowed") {
				t.Fatalf("error %q does not wrap ErrConfig, name %s and its range", err, tc.flag)
			}
		})
	}
}
