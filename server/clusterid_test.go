package server_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/coordd/coordd/internal/testcluster"
)

func clusterIDOf(c *testcluster.Cluster, n *testcluster.Node) (string, error) {
	r, err := c.Try(http.MethodGet, n.URL()+"/v1/status", "")
	if err != nil {
		return "", err
	}
	var st struct {
		ClusterID *string `json:"cluster_id"`
	}
	if err := json.Unmarshal(r.Body, &st); err != nil {
		return "", err
	}
	if st.ClusterID == nil {
		return "", fmt.Errorf("no cluster_id in the status")
	}
	return *st.ClusterID, nil
}

// Test_ClusterID_DataDirsFromBeforeClusterIDs_GetOneAfterTheUpgrade: nodes
// whose data dirs hold no cluster id (written by an older build) keep
// working, and the leader gives them all one id.
func Test_ClusterID_DataDirsFromBeforeClusterIDs_GetOneAfterTheUpgrade(t *testing.T) {
	c := testcluster.New(t, 3)
	before, err := clusterIDOf(c, c.Nodes[0])
	if err != nil || before == "" {
		t.Fatalf("bootstrapped cluster id %q, %v", before, err)
	}
	for _, n := range c.Nodes {
		c.Stop(n)
		if err := os.Remove(filepath.Join(n.DataDir, "cluster-id")); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range c.Nodes {
		c.Restart(n)
	}
	c.WaitReady(c.Nodes...)
	putRetry(t, c, c.Nodes[1], "upgraded", "yes")
	var id string
	testcluster.Poll(t, 15*time.Second, func() error {
		ids := map[string]bool{}
		for _, n := range c.Nodes {
			got, err := clusterIDOf(c, n)
			if err != nil {
				return err
			}
			ids[got] = true
			id = got
		}
		if len(ids) != 1 || id == "" {
			return fmt.Errorf("cluster ids %v", ids)
		}
		return nil
	})
	if id == before {
		t.Fatalf("the generated id equals the derived one (%s)", id)
	}
	for _, n := range c.Nodes {
		b, err := os.ReadFile(filepath.Join(n.DataDir, "cluster-id"))
		if err != nil || string(b) != id+"\n" {
			t.Fatalf("%s stored %q, %v", n.ID, b, err)
		}
	}
	putRetry(t, c, c.Nodes[2], "after", "yes")
}
