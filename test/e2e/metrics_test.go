package e2e

import (
	"bytes"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// Test_E2E_Metrics_FollowPrometheusConventions runs `promtool check
// metrics` (the linter of Prometheus itself) on the /metrics of a real
// leader and follower that have replicated, elected and applied, and checks
// that no metric's name carries a node id: ids are labels (peer_id).
// promtool comes with Debian's prometheus package (make test-tools installs
// it); without it the test skips and says so.
func Test_E2E_Metrics_FollowPrometheusConventions(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("skipped: promtool is not installed (make test-tools installs Debian's prometheus package, which has it)")
	}
	procs := startCluster(t, 3)
	for i := range 30 {
		putAt(t, httpc, procs[i%3].url(), procs[i%3], fmt.Sprintf("m%d", i), "v")
	}
	leader := leaderOf(t, procs)
	follower := procs[0]
	if follower == leader {
		follower = procs[1]
	}
	name := regexp.MustCompile(`(?m)^([a-zA-Z_:][a-zA-Z0-9_:]*)`)
	for _, p := range []*proc{leader, follower} {
		resp, err := httpc.Get(p.url() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(body, []byte(`coordd_raft_fsm_apply_batch_seconds`)) {
			t.Errorf("%s: no Raft metrics in /metrics", p.id)
		}
		if p == leader && !bytes.Contains(body, []byte(`coordd_raft_replication_append_entries_rpc_seconds_count{peer_id="`)) {
			t.Errorf("leader %s: no replication metric labelled by peer", p.id)
		}
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = bytes.NewReader(body)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics on %s (%s): %v\n%s", p.id, map[bool]string{true: "leader", false: "follower"}[p == leader], err, out)
		}
		for _, m := range name.FindAllString(string(body), -1) {
			for _, q := range procs {
				if strings.Contains(m, "_"+q.id) {
					t.Errorf("%s: metric %s carries node id %s in its name", p.id, m, q.id)
				}
			}
		}
	}
}
