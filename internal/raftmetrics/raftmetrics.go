// Package raftmetrics exports the go-metrics that hashicorp/raft and
// raft-boltdb emit into a Prometheus registry, named by Prometheus's
// conventions: snake_case names and label names, base units (seconds, not
// milliseconds) named in a suffix, counters ending in _total. Node ids are
// labels (peer_id), never parts of a name: the server turns raft's legacy
// duplicates, which carried the peer id in the name, off
// (raft.Config.NoLegacyTelemetry).
package raftmetrics

import (
	"fmt"
	"strings"
	"time"
	"unicode"

	gometrics "github.com/hashicorp/go-metrics/compat"
	gmprom "github.com/hashicorp/go-metrics/compat/prometheus"
	"github.com/prometheus/client_golang/prometheus"
)

// prefix is the service name go-metrics puts before every key.
const prefix = "coordd"

// Export sends the process-wide go-metrics (raft's) to reg from now on.
// Timers are reported in seconds.
func Export(reg prometheus.Registerer) error {
	sink, err := gmprom.NewPrometheusSinkFrom(gmprom.PrometheusOpts{Registerer: reg, Expiration: time.Minute})
	if err != nil {
		return fmt.Errorf("raftmetrics: prometheus sink: %w", err)
	}
	conf := gometrics.DefaultConfig(prefix)
	conf.EnableHostname = false
	conf.EnableRuntimeMetrics = false
	conf.TimerGranularity = time.Second // MeasureSince reports seconds
	if _, err := gometrics.NewGlobal(conf, Sink{Next: sink}); err != nil {
		return fmt.Errorf("raftmetrics: go-metrics: %w", err)
	}
	return nil
}

// unit says how to name and scale one of raft's metrics.
type unit struct {
	suffix string  // appended to the name ("" for none)
	per    float32 // divides the value (0: 1)
}

var (
	milliseconds = unit{suffix: "seconds", per: 1000}
	// samples are raft's AddSample calls that are not timers, by key
	// (without the prefix), as of hashicorp/raft v1.7.3 and raft-boltdb/v2
	// v2.3.1. Every other sample comes from MeasureSince: a duration in
	// seconds (Export's TimerGranularity).
	samples = map[string]unit{
		"raft.boltdb.logBatchSize":          {suffix: "bytes"},
		"raft.boltdb.logSize":               {suffix: "bytes"},
		"raft.boltdb.logsPerBatch":          {},
		"raft.boltdb.writeCapacity":         {suffix: "logs_per_second"},
		"raft.fsm.applyBatchNum":            {},
		"raft.thread.main.saturation":       {suffix: "ratio"},
		"raft.thread.fsm.saturation":        {suffix: "ratio"},
		"raft.leader.lastContact":           milliseconds,
		"raft.boltdb.txstats.rebalanceTime": milliseconds,
		"raft.boltdb.txstats.spillTime":     milliseconds,
		"raft.boltdb.txstats.writeTime":     milliseconds,
	}
	timer = unit{suffix: "seconds"}
	// gauges in milliseconds; other gauges are counts or say their unit.
	gauges = map[string]unit{
		"raft.fsm.lastRestoreDuration": milliseconds,
		"raft.leader.oldestLogAge":     milliseconds,
	}
)

// Sink renames and rescales metrics by Prometheus's conventions and
// passes them to Next.
type Sink struct {
	Next gometrics.MetricSink
}

// SetGauge implements go-metrics' MetricSink.
func (s Sink) SetGauge(key []string, val float32) { s.SetGaugeWithLabels(key, val, nil) }

// SetGaugeWithLabels implements go-metrics' MetricSink.
func (s Sink) SetGaugeWithLabels(key []string, val float32, labels []gometrics.Label) {
	u := gauges[name(key)]
	s.Next.SetGaugeWithLabels(rename(key, u.suffix), scale(val, u), snakeLabels(labels))
}

// EmitKey implements go-metrics' MetricSink (Prometheus has no such type;
// the Prometheus sink ignores it).
func (s Sink) EmitKey(key []string, val float32) { s.Next.EmitKey(rename(key, ""), val) }

// IncrCounter implements go-metrics' MetricSink.
func (s Sink) IncrCounter(key []string, val float32) { s.IncrCounterWithLabels(key, val, nil) }

// IncrCounterWithLabels implements go-metrics' MetricSink.
func (s Sink) IncrCounterWithLabels(key []string, val float32, labels []gometrics.Label) {
	s.Next.IncrCounterWithLabels(rename(key, "total"), val, snakeLabels(labels))
}

// AddSample implements go-metrics' MetricSink.
func (s Sink) AddSample(key []string, val float32) { s.AddSampleWithLabels(key, val, nil) }

// AddSampleWithLabels implements go-metrics' MetricSink.
func (s Sink) AddSampleWithLabels(key []string, val float32, labels []gometrics.Label) {
	u, ok := samples[name(key)]
	if !ok {
		u = timer
	}
	s.Next.AddSampleWithLabels(rename(key, u.suffix), scale(val, u), snakeLabels(labels))
}

// name is key without the prefix, dotted: "raft.leader.lastContact".
func name(key []string) string {
	if len(key) > 0 && key[0] == prefix {
		key = key[1:]
	}
	return strings.Join(key, ".")
}

// rename returns key in snake_case with suffix as its last part.
func rename(key []string, suffix string) []string {
	out := make([]string, 0, len(key)+1)
	for _, k := range key {
		out = append(out, snake(k))
	}
	if suffix != "" && !strings.HasSuffix(out[len(out)-1], "_"+suffix) && out[len(out)-1] != suffix {
		out = append(out, suffix)
	}
	return out
}

func scale(val float32, u unit) float32 {
	if u.per == 0 {
		return val
	}
	return val / u.per
}

func snakeLabels(labels []gometrics.Label) []gometrics.Label {
	if len(labels) == 0 {
		return labels
	}
	out := make([]gometrics.Label, len(labels))
	for i, l := range labels {
		out[i] = gometrics.Label{Name: snake(l.Name), Value: l.Value}
	}
	return out
}

// snake turns camelCase into snake_case: "appendEntries" is
// "append_entries", "getRPCType" is "get_rpc_type".
func snake(s string) string {
	r := []rune(s)
	var b strings.Builder
	for i, c := range r {
		if unicode.IsUpper(c) && i > 0 {
			prevLower := unicode.IsLower(r[i-1]) || unicode.IsDigit(r[i-1])
			nextLower := i+1 < len(r) && unicode.IsLower(r[i+1])
			if prevLower || (unicode.IsUpper(r[i-1]) && nextLower) {
				b.WriteByte('_')
			}
		}
		b.WriteRune(unicode.ToLower(c))
	}
	return b.String()
}
