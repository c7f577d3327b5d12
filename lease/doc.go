// Package lease is coordd's leader-side lease clock.
//
// Keepalives are not Raft writes. The Raft leader keeps every lease's
// deadline in memory on a monotonic clock (a Lessor), answers keepalives from
// memory, and proposes expiry through Raft once a deadline has passed. The
// replicated state (fsm) knows, per lease, its TTL, its epoch (the Raft index
// of its last grant, checkpoint or renew) and, optionally, a checkpointed
// remaining TTL with the proposing leader's wall-clock stamp. This package
// does no Raft and no I/O: the server drives it.
//
// # How the server uses it
//
//   - Once the first entry of its term is applied, a new leader calls
//     Promote with every lease of the replicated state and the replicated
//     clock's reading (the stamp it proposes with, which no leader's wall
//     clock can freeze or rush);
//     it calls Demote when it stops leading.
//   - When the replicated state applies a grant, checkpoint, renew, revoke
//     or expiry, the leader calls Grant, Checkpointed, Renewed or Forget.
//   - Keepalive answers a client. When it says needsCommit, the leader
//     commits a renew (which clears the remainder and bumps the epoch)
//     before acknowledging.
//   - On a timer set from NextEvent, the leader proposes an expiry for each
//     lease Expired returns (conditional on the returned epoch, after
//     re-checking its leadership) and a checkpoint for each lease
//     DueCheckpoints returns (conditional on the epoch, stamped with its wall
//     clock read after the call). A proposal that fails may be Retried.
//
// # Safety rule
//
// A lease is never expired before a deadline promised to its holder. A
// keepalive acknowledged at time k promises k + TTL; the leader that
// acknowledged it enforces exactly that deadline, and a checkpoint never
// cuts it short on a later leader, because
//
//   - a keepalive sent while the replicated state holds a remainder (or a
//     checkpoint is in flight) is committed as a renew, which clears the
//     remainder, before it is acknowledged; a checkpoint in flight that is
//     ordered after that renew in the log carries a stale epoch and is
//     ignored;
//   - Promote starts a lease with no remainder at now + TTL + Extension,
//     which is later than anything the old leader promised;
//   - Promote starts a lease with a remainder at its checkpointed deadline
//     (remainder minus the wall time elapsed since the stamp) plus
//     Extension, which absorbs the difference between the wall clocks of the
//     two leaders. The rule holds as long as any two nodes' wall clocks
//     agree within Extension, and as long as a deposed leader stops
//     acknowledging keepalives before a new one is promoted (the server
//     checks its leadership).
//
// # Bounds
//
//   - Promote, with now the new leader's monotonic clock: a lease without a
//     remainder gets deadline now + TTL + Extension; a lease with one gets
//     now + max(Remaining - elapsed + Extension, 0), where elapsed =
//     max(wallNow - CheckpointStamp, 0) is measured on the wall clocks of
//     the two leaders.
//   - Extension: after a failover a lease lives at most Extension beyond the
//     deadline the replicated state implies. The extension is enforced but
//     never checkpointed, so failovers do not accumulate it, and a lease
//     whose remainder ran out during the election keeps only what is left of
//     its extension.
//   - Dead holder: if the holder's last keepalive reached a leader at t, the
//     lease is due for expiry at t + TTL without a failover, and by
//     t + TTL + CheckpointInterval + Extension across any number of failovers
//     with clocks in sync, provided every leader gets the checkpoint it
//     schedules right after Promote committed. (Add the election time and
//     commit latency of a failover that strikes before the first checkpoint
//     after t, the clock skew between leaders, and at most 1ms per failover
//     from rounding checkpointed remainders up to whole milliseconds.) Checkpoints are what
//     make this bound independent of the number of failovers; disabling them
//     restarts every lease at TTL + Extension on each failover.
//   - Raft load: a lease kept alive more often than CheckpointInterval is
//     never checkpointed (each keepalive pushes its checkpoint back), so a
//     live holder costs no Raft write at all; a lease left alone is
//     checkpointed at most once per CheckpointInterval and needs one renew
//     on its next keepalive (the server renews the checkpointed leases of a
//     keepalive of many in one entry per 1,000); one expiry proposal per lease
//     per second (hold-off of Expired and DueCheckpoints), in batches of at
//     most MaxBatch.
//   - Cost: Keepalive is O(log n) (it reschedules the checkpoint); Expired, DueCheckpoints and NextEvent cost O(k log n) for
//     k leases returned, plus O(log n) once per lease renewed since it was
//     last sorted. Grant, Forget, Checkpointed and Renewed are O(log n),
//     Promote O(n).
package lease
