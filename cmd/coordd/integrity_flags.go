package main

import (
	"flag"

	"github.com/coordd/coordd/server"
)

// integrityFlags registers the flags of state digests, alarms and shadow
// members (see docs/operations.md, "State digests and alarms" and
// "Rehearsing an upgrade with a shadow").
func integrityFlags(fs *flag.FlagSet, c *server.Config) {
	fs.Uint64Var(&c.DigestInterval, "digest-interval", server.DefaultDigestInterval, "take a replica digest of the state every this many applied entries (members compare them to catch a replica that diverged)")
	fs.DurationVar(&c.DigestPoll, "digest-poll", server.DefaultDigestPoll, "how often the leader collects and compares the members' digests")
	fs.BoolVar(&c.DigestsOff, "digests-off", false, "take no state digests (to measure their cost; this node then takes no part in the comparison)")
	fs.StringVar(&c.CorruptCheck, "corrupt-check", server.CorruptCheckWarn, "what this node does when an alarm says its state differs from the cluster's: warn (log, and go on serving) or refuse (serve no reads and never lead until an operator disarms the alarm)")
	fs.BoolVar(&c.Shadow, "shadow", false, "join (-join) as a shadow member: a non-voter that never votes or leads, serves only ?stale reads, follows the log and takes part in the digest comparison (to rehearse an upgrade on the real log)")
	fs.Float64Var(&c.ReadShadowRate, "read-shadow-rate", 0, "fraction (0 to 1) of the reads this node serves that are mirrored to shadow members and compared (differences counted and logged, never returned)")
}
