package server_test

import (
	"net"
	"strings"
	"testing"

	"github.com/coordd/coordd/internal/testcluster"
	"github.com/coordd/coordd/server"
)

// A Raft advertise address given as a host name stays a name in the
// configuration (peers resolve it when they dial), so a node whose IP
// changes across restarts, as a container's may, stays reachable.
func TestRaftAdvertise_AHostNameIsKeptNotResolved(t *testing.T) {
	t.Parallel()
	cl := testcluster.New(t, 1, func(c *server.Config) {
		_, port, err := net.SplitHostPort(c.RaftAddr)
		if err != nil {
			t.Fatal(err)
		}
		c.RaftAdvertise = "localhost:" + port
	})
	n := cl.Nodes[0]
	r := cl.Do("GET", n.URL()+"/v1/cluster/members", "")
	if r.Status != 200 || !strings.Contains(string(r.Body), `"raft_addr":"localhost:`) {
		t.Fatalf("members: %d %s", r.Status, r.Body)
	}
	if got := n.Server().RaftAddr(); !strings.HasPrefix(got, "localhost:") {
		t.Fatalf("RaftAddr() = %q, want the name", got)
	}
	// Writes commit: the node dials itself by name without trouble.
	if r := cl.Do("PUT", n.URL()+"/v1/kv/k", "v"); r.Status != 200 {
		t.Fatalf("put: %d %s", r.Status, r.Body)
	}
}
