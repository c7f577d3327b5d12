package server

import (
	"fmt"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// nodeMetrics are the node's own Prometheus metrics. Raft's internal metrics
// (go-metrics) are exported into the same registry by cmd/coordd, through
// internal/raftmetrics.
type nodeMetrics struct {
	leasesGranted prometheus.Counter
	leasesExpired prometheus.Counter
	keepalives    prometheus.Counter
	// leasesCheckpointed counts leases whose remainder this leader
	// checkpointed; leaseRenewCommits counts the Raft entries that renewed
	// checkpointed leases (each clears the remainders of the leases it
	// names) and leasesRenewed the leases they renewed.
	leasesCheckpointed prometheus.Counter
	leaseRenewCommits  prometheus.Counter
	leasesRenewed      prometheus.Counter
	holderChanges      prometheus.Counter
	handoff            prometheus.Histogram
	applyDuration      prometheus.Histogram
	leaderChanges      prometheus.Counter
	barrierLatency     prometheus.Histogram
	// refusedCommands counts commands refused before Raft because they
	// would not apply (a bug in the code that built them).
	refusedCommands prometheus.Counter
	// verifyRounds counts the quorum rounds keepalives waited for.
	verifyRounds prometheus.Counter
	// verifyBarriers counts the rounds confirmed by a committed entry
	// because this process had just been paused.
	verifyBarriers prometheus.Counter
}

func registerMetrics(reg *prometheus.Registry, s *Server) (*nodeMetrics, error) {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	m := &nodeMetrics{
		leasesGranted: counter("coordd_leases_granted_total", "Leases granted while this node led."),
		leasesExpired: counter("coordd_leases_expired_total", "Leases expired by this node as leader."),
		keepalives:    counter("coordd_lease_keepalives_total", "Keepalives served by this node as leader."),
		leasesCheckpointed: counter("coordd_lease_checkpointed_total",
			"Leases whose remaining time this node, as leader, checkpointed through Raft (leases not kept alive for -lease-checkpoint-interval)."),
		leaseRenewCommits: counter("coordd_lease_renew_commits_total",
			"Raft entries this node, as leader, committed to renew checkpointed leases (the first keepalive after a checkpoint is committed)."),
		leasesRenewed: counter("coordd_lease_renewed_total",
			"Checkpointed leases this node, as leader, renewed through Raft."),
		holderChanges: counter("coordd_election_new_holders_total", "Candidates made holders of an election, lock or semaphore (applied on this node)."),
		refusedCommands: counter("coordd_commands_refused_total",
			"Commands this node refused to propose because they do not decode and validate as Apply would (a bug: see the error log)."),
		verifyRounds: counter("coordd_leader_verify_rounds_total",
			"Quorum rounds (Raft VerifyLeader) this node ran as leader to confirm its leadership before acknowledging keepalives; concurrent keepalives share one."),
		verifyBarriers: counter("coordd_leader_verify_barriers_total",
			"Leadership rounds for keepalives that this node, just after a pause of its process, confirmed with a committed entry (a Raft barrier) as well."),
		handoff: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "coordd_election_handoff_seconds",
			Help:    "On the leader: from proposing a resign, revoke, expiry or promote to the next holder being in place (one Raft commit).",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 14),
		}),
		applyDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "coordd_apply_duration_seconds",
			Help:    "Time from proposing a command on the leader to its result.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "coordd_raft_leader_changes_total",
			Help: "Leader changes observed by this node.",
		}),
		barrierLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "coordd_leader_ready_seconds",
			Help:    "Time from winning an election to having applied the first entry of the term.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 12),
		}),
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	cs := []prometheus.Collector{
		m.applyDuration, m.leaderChanges, m.barrierLatency, m.leasesGranted, m.leasesExpired, m.keepalives, m.leasesCheckpointed, m.leaseRenewCommits, m.leasesRenewed,
		m.holderChanges, m.handoff, m.refusedCommands, m.verifyRounds, m.verifyBarriers,
		gauge("coordd_leases", "Leases in the replicated state.", func() float64 { return float64(s.fsm.State().LeaseCount()) }),
		gauge("coordd_elections", "Elections and locks with a holder or a candidate.", func() float64 {
			return float64(s.fsm.State().ElectionCount())
		}),
		gauge("coordd_idempotency_records", "Idempotency records in the replicated state.", func() float64 {
			return float64(s.fsm.State().DedupLen())
		}),
		gauge("coordd_idempotency_record_bytes", "Size of the idempotency records, as counted against their bound.", func() float64 {
			return float64(s.fsm.State().DedupBytes())
		}),
		gauge("coordd_raft_is_leader", "1 if this node is the Raft leader.", func() float64 {
			if s.raft.State() == raft.Leader {
				return 1
			}
			return 0
		}),
		gauge("coordd_raft_term", "Current Raft term.", func() float64 { return float64(s.raft.CurrentTerm()) }),
		gauge("coordd_raft_commit_index", "Raft commit index.", func() float64 { return float64(s.raft.CommitIndex()) }),
		gauge("coordd_raft_applied_index", "Raft applied index.", func() float64 { return float64(s.raft.AppliedIndex()) }),
		gauge("coordd_raft_last_index", "Last Raft log index.", func() float64 { return float64(s.raft.LastIndex()) }),
		gauge("coordd_fsm_index", "Index of the last command applied to the state machine.", func() float64 {
			return float64(s.fsm.State().Index())
		}),
		gauge("coordd_clock_skew_seconds", "How far this node's wall clock is ahead of the replicated clock, the leader's stamps (negative: behind); the leader reads its own, a follower estimates it from the entries it applies. The lease bounds assume it stays within coordd_lease_extension_seconds.",
			func() float64 { return s.clockSkew().Seconds() }),
		gauge("coordd_kv_keys", "Number of keys in the KV store.", func() float64 { return float64(s.fsm.State().KVLen()) }),
		gauge("coordd_ready", "1 if the node is ready to serve.", func() float64 {
			if s.Ready() == nil {
				return 1
			}
			return 0
		}),
	}
	cs = append(cs, s.snapStats.collectors()...)
	cs = append(cs, s.opsCollectors()...)
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("server: register metrics: %w", err)
		}
	}
	return m, nil
}
