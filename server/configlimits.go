package server

import (
	"fmt"
	"math"
	"time"

	"github.com/coordd/coordd/fsm"
)

// Upper bounds of the settings that have no natural one. Each is far above
// any sensible value and far below what would overflow or what the state
// machine refuses (a limit the leader stamps into every grant and campaign
// must pass fsm's validation, or every proposal of that kind would be
// refused).
const (
	maxTiming        = time.Hour
	maxBytesSetting  = 1 << 40 // a byte size (bodies, values, backups)
	maxCountSetting  = 1 << 40 // a count of entries (threshold, trailing logs)
	maxRetain        = 1 << 10
	maxRateSetting   = 1e9
	maxBurstSetting  = math.MaxInt32
	maxWatchers      = 1 << 30
	maxHeaderSetting = 1 << 30
	minHeaderSetting = 1 << 10
)

// validateLimits checks every limit and duration of c (defaults set)
// against its allowed range. The error names the coordd flag that sets
// the field and the range, so that a bad setting stops the node at
// startup instead of every proposal that carries it.
func (c *Config) validateLimits() error {
	bad := func(flag string, v any, allowed string) error {
		return fmt.Errorf("%w: %s %v out of range: allowed %s", ErrConfig, flagName(flag), v, allowed)
	}
	durations := []struct {
		flag string
		v    time.Duration
	}{
		{"heartbeat-timeout", c.HeartbeatTimeout},
		{"election-timeout", c.ElectionTimeout},
		{"leader-lease-timeout", c.LeaderLeaseTimeout},
		{"commit-timeout", c.CommitTimeout},
		{"snapshot-interval", c.SnapshotInterval},
		{"snapshot-threshold-check", c.SnapshotThresholdCheck},
		{"lease-checkpoint-interval", c.LeaseCheckpointInterval},
		{"LeaseExtension", c.LeaseExtension},
	}
	for _, d := range durations {
		if d.v < time.Millisecond || d.v > maxTiming {
			return bad(d.flag, d.v, fmt.Sprintf("1ms..%s", maxTiming))
		}
	}
	// limit is the rule of a limit stamped into proposals: negative (no
	// limit), 0 (the default) or up to fsm.MaxLimit.
	limit := func(flag string, v int) error {
		if v > fsm.MaxLimit {
			return bad(flag, v, fmt.Sprintf("-1 (no limit) or 0..%d", fsm.MaxLimit))
		}
		return nil
	}
	for _, err := range []error{
		limit("max-leases-per-token", c.MaxLeasesPerToken),
		limit("max-candidates", c.MaxCandidates),
	} {
		if err != nil {
			return err
		}
	}
	switch {
	case c.SnapshotThreshold < 1 || c.SnapshotThreshold > maxCountSetting:
		return bad("snapshot-threshold", c.SnapshotThreshold, fmt.Sprintf("1..%d", uint64(maxCountSetting)))
	case c.TrailingLogs > maxCountSetting:
		return bad("trailing-logs", c.TrailingLogs, fmt.Sprintf("0..%d", uint64(maxCountSetting)))
	case c.SnapshotRetain < 1 || c.SnapshotRetain > maxRetain:
		return bad("snapshot-retain", c.SnapshotRetain, fmt.Sprintf("1..%d", maxRetain))
	case c.MaxSnapshotBytes < 1 || c.MaxSnapshotBytes > maxBytesSetting:
		return bad("max-snapshot-bytes", c.MaxSnapshotBytes, fmt.Sprintf("1..%d", int64(maxBytesSetting)))
	case c.MaxRequestBytes < 1 || c.MaxRequestBytes > maxBytesSetting:
		return bad("max-request-bytes", c.MaxRequestBytes, fmt.Sprintf("1..%d", int64(maxBytesSetting)))
	case c.MaxValueBytes < 1 || int64(c.MaxValueBytes) > maxBytesSetting:
		return bad("max-value-bytes", c.MaxValueBytes, fmt.Sprintf("1..%d", int64(maxBytesSetting)))
	case math.IsNaN(c.RateLimit) || c.RateLimit > maxRateSetting:
		return bad("rate-limit", c.RateLimit, fmt.Sprintf("a number of requests per second up to %g (0 or negative: no limit)", maxRateSetting))
	case c.RateBurst < 0 || c.RateBurst > maxBurstSetting:
		return bad("rate-burst", c.RateBurst, fmt.Sprintf("0 (twice -rate-limit)..%d", maxBurstSetting))
	case c.MaxWatchers > maxWatchers:
		return bad("max-watchers", c.MaxWatchers, fmt.Sprintf("0 (no limit)..%d", maxWatchers))
	case c.MaxHeaderBytes < minHeaderSetting || c.MaxHeaderBytes > maxHeaderSetting:
		return bad("max-header-bytes", c.MaxHeaderBytes, fmt.Sprintf("%d..%d", minHeaderSetting, maxHeaderSetting))
	}
	return nil
}

// flagName is how an error names a setting: -flag for one coordd has a
// flag for, the Config field's name otherwise.
func flagName(name string) string {
	if name != "" && name[0] >= 'a' && name[0] <= 'z' {
		return "-" + name
	}
	return "Config." + name
}
