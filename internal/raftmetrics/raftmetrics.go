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
	"slices"
	"strings"
	"sync"
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
	c := converted(kindGauge, key)
	s.Next.SetGaugeWithLabels(c.key, scale(val, c.u), snakeLabels(labels))
}

// EmitKey implements go-metrics' MetricSink (Prometheus has no such type;
// the Prometheus sink ignores it).
func (s Sink) EmitKey(key []string, val float32) { s.Next.EmitKey(converted(kindKey, key).key, val) }

// IncrCounter implements go-metrics' MetricSink.
func (s Sink) IncrCounter(key []string, val float32) { s.IncrCounterWithLabels(key, val, nil) }

// IncrCounterWithLabels implements go-metrics' MetricSink.
func (s Sink) IncrCounterWithLabels(key []string, val float32, labels []gometrics.Label) {
	s.Next.IncrCounterWithLabels(converted(kindCounter, key).key, val, snakeLabels(labels))
}

// AddSample implements go-metrics' MetricSink.
func (s Sink) AddSample(key []string, val float32) { s.AddSampleWithLabels(key, val, nil) }

// AddSampleWithLabels implements go-metrics' MetricSink.
func (s Sink) AddSampleWithLabels(key []string, val float32, labels []gometrics.Label) {
	c := converted(kindSample, key)
	s.Next.AddSampleWithLabels(c.key, scale(val, c.u), snakeLabels(labels))
}

// Raft emits a few samples per RPC (dozens a second on an idle cluster, far
// more under load): the conversion of a key is done once and kept, and the
// hot path allocates nothing of its own.
type kind uint8

const (
	kindGauge kind = iota
	kindKey
	kindCounter
	kindSample
)

// conversion is a key as given and as passed on, with its unit.
type conversion struct {
	in  []string
	key []string
	u   unit
}

var (
	convMu sync.RWMutex
	convs  = map[uint64][]*conversion{} // by hash of kind and key
	// labelNames are snake(name) by name.
	labelNames = map[string]string{}
)

// maxConversions bounds the cache (raft's keys are a few dozen; a caller
// that made keys from data would otherwise grow it without end).
const maxConversions = 4096

func hashKey(k kind, key []string) uint64 {
	h := uint64(14695981039346656037) ^ uint64(k)
	for _, p := range key {
		for i := 0; i < len(p); i++ {
			h = (h ^ uint64(p[i])) * 1099511628211
		}
		h = (h ^ 0xff) * 1099511628211
	}
	return h
}

// converted returns the Prometheus name and unit of key as a metric of
// kind k.
func converted(k kind, key []string) *conversion {
	h := hashKey(k, key)
	convMu.RLock()
	for _, c := range convs[h] {
		if slices.Equal(c.in, key) {
			convMu.RUnlock()
			return c
		}
	}
	n := len(convs)
	convMu.RUnlock()
	c := &conversion{in: slices.Clone(key)}
	switch k {
	case kindGauge:
		c.u = gauges[name(key)]
	case kindCounter:
		c.u = unit{suffix: "total"}
	case kindSample:
		var ok bool
		if c.u, ok = samples[name(key)]; !ok {
			c.u = timer
		}
	}
	c.key = rename(key, c.u.suffix)
	if k == kindCounter {
		c.u = unit{}
	}
	if n < maxConversions {
		convMu.Lock()
		convs[h] = append(convs[h], c)
		convMu.Unlock()
	}
	return c
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

// snakeLabels returns labels with snake_case names: labels itself when
// they have them already.
func snakeLabels(labels []gometrics.Label) []gometrics.Label {
	var out []gometrics.Label
	for i, l := range labels {
		n := snakeLabel(l.Name)
		if n == l.Name && out == nil {
			continue
		}
		if out == nil {
			out = make([]gometrics.Label, len(labels))
			copy(out, labels[:i])
		}
		out[i] = gometrics.Label{Name: n, Value: l.Value}
	}
	if out == nil {
		return labels
	}
	return out
}

// snakeLabel is snake(name), remembered.
func snakeLabel(name string) string {
	convMu.RLock()
	n, ok := labelNames[name]
	size := len(labelNames)
	convMu.RUnlock()
	if ok {
		return n
	}
	n = snake(name)
	if size < maxConversions {
		convMu.Lock()
		labelNames[name] = n
		convMu.Unlock()
	}
	return n
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
