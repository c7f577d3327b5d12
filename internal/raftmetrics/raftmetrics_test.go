package raftmetrics

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	gometrics "github.com/hashicorp/go-metrics/compat"
)

func TestSnake(t *testing.T) {
	for in, want := range map[string]string{
		"appendEntries": "append_entries", "getRPCType": "get_rpc_type", "rpcType": "rpc_type", "peer_id": "peer_id",
		"logBatchSize": "log_batch_size", "heartbeat_timeout": "heartbeat_timeout", "raft": "raft", "RPC": "rpc",
		"numFreePages": "num_free_pages", "txstats": "txstats", "oldestLogAge": "oldest_log_age",
	} {
		if got := snake(in); got != want {
			t.Errorf("snake(%q) = %q, want %q", in, got, want)
		}
	}
}

// recorder is a go-metrics sink that writes down what it is given.
type recorder struct{ calls []string }

func (r *recorder) add(kind string, key []string, val float32, labels []gometrics.Label) {
	l := ""
	for _, x := range labels {
		l += fmt.Sprintf(" %s=%s", x.Name, x.Value)
	}
	r.calls = append(r.calls, fmt.Sprintf("%s %s %g%s", kind, strings.Join(key, "_"), val, l))
}
func (r *recorder) SetGauge(k []string, v float32) { r.add("gauge", k, v, nil) }
func (r *recorder) SetGaugeWithLabels(k []string, v float32, l []gometrics.Label) {
	r.add("gauge", k, v, l)
}
func (r *recorder) EmitKey(k []string, v float32)     { r.add("key", k, v, nil) }
func (r *recorder) IncrCounter(k []string, v float32) { r.add("counter", k, v, nil) }
func (r *recorder) IncrCounterWithLabels(k []string, v float32, l []gometrics.Label) {
	r.add("counter", k, v, l)
}
func (r *recorder) AddSample(k []string, v float32) { r.add("sample", k, v, nil) }
func (r *recorder) AddSampleWithLabels(k []string, v float32, l []gometrics.Label) {
	r.add("sample", k, v, l)
}

func TestSink_RenamesByPrometheusConventions(t *testing.T) {
	r := &recorder{}
	s := Sink{Next: r}
	peer := []gometrics.Label{{Name: "peer_id", Value: "n2"}}
	s.AddSampleWithLabels([]string{"coordd", "raft", "replication", "appendEntries", "rpc"}, 0.002, peer) // a timer, in seconds
	s.IncrCounterWithLabels([]string{"coordd", "raft", "replication", "appendEntries", "logs"}, 3, peer)
	s.IncrCounter([]string{"coordd", "raft", "state", "leader"}, 1)
	s.AddSample([]string{"coordd", "raft", "leader", "lastContact"}, 40) // milliseconds
	s.AddSample([]string{"coordd", "raft", "boltdb", "logBatchSize"}, 512)
	s.AddSample([]string{"coordd", "raft", "thread", "main", "saturation"}, 0.25)
	s.SetGauge([]string{"coordd", "raft", "leader", "oldestLogAge"}, 1500)
	s.SetGauge([]string{"coordd", "raft", "peers"}, 3)
	s.AddSampleWithLabels([]string{"coordd", "raft", "net", "rpcDecode"}, 0.001, []gometrics.Label{{Name: "rpcType", Value: "AppendEntries"}})
	want := []string{
		"sample coordd_raft_replication_append_entries_rpc_seconds 0.002 peer_id=n2",
		"counter coordd_raft_replication_append_entries_logs_total 3 peer_id=n2",
		"counter coordd_raft_state_leader_total 1",
		"sample coordd_raft_leader_last_contact_seconds 0.04",
		"sample coordd_raft_boltdb_log_batch_size_bytes 512",
		"sample coordd_raft_thread_main_saturation_ratio 0.25",
		"gauge coordd_raft_leader_oldest_log_age_seconds 1.5",
		"gauge coordd_raft_peers 3",
		"sample coordd_raft_net_rpc_decode_seconds 0.001 rpc_type=AppendEntries",
	}
	if !slices.Equal(r.calls, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(r.calls, "\n"), strings.Join(want, "\n"))
	}
	// The second time the conversions come from the cache: the same.
	r.calls = nil
	s.AddSampleWithLabels([]string{"coordd", "raft", "net", "rpcDecode"}, 0.001, []gometrics.Label{{Name: "rpcType", Value: "AppendEntries"}})
	s.SetGauge([]string{"coordd", "raft", "leader", "oldestLogAge"}, 1500)
	s.IncrCounterWithLabels([]string{"coordd", "raft", "replication", "appendEntries", "logs"}, 3, peer)
	if want := []string{want[8], want[6], want[1]}; !slices.Equal(r.calls, want) {
		t.Errorf("again: got\n%s\nwant\n%s", strings.Join(r.calls, "\n"), strings.Join(want, "\n"))
	}
}

// The hot path (a sample whose key and labels were seen) allocates nothing
// of the sink's own.
func TestSink_KnownKeysDoNotAllocate(t *testing.T) {
	s := Sink{Next: &gometrics.BlackholeSink{}}
	key := []string{"coordd", "raft", "net", "rpcDecode"}
	labels := []gometrics.Label{{Name: "peer_id", Value: "n2"}}
	s.AddSampleWithLabels(key, 1, labels)
	if n := testing.AllocsPerRun(100, func() { s.AddSampleWithLabels(key, 1, labels) }); n != 0 {
		t.Errorf("%v allocations per sample", n)
	}
}
