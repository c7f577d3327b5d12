package jepsen_test

import (
	"testing"

	"github.com/coordd/coordd/test/jepsen/harness"
	"github.com/coordd/coordd/test/jepsen/workload"
)

// Transactions over groups of keys (POST /v1/txn): reads of every key,
// writes of a subset, compare-and-set of all, checked by porcupine against
// a multi-key model under kills, pauses and partitions.
func TestJepsen_Txn_KillsPausesPartitions(t *testing.T) {
	run(t, scenario{workload: workload.Txn(), rounds: 8,
		faults: []harness.Fault{harness.KillLeader, harness.KillRandom, harness.PauseLeader, harness.IsolateLeader, harness.Split}})
}
