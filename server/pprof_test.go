package server_test

import (
	"net/http"
	"testing"

	"github.com/coordd/coordd/internal/testcluster"
	"github.com/coordd/coordd/server"
)

// Profiles are served only with Config.Pprof; the API is unchanged either way.
func TestPprof_OnlyWhenEnabled(t *testing.T) {
	t.Parallel()
	off := testcluster.New(t, 1)
	on := testcluster.New(t, 1, func(c *server.Config) { c.Pprof = true })
	for _, tc := range []struct {
		cl   *testcluster.Cluster
		want int
	}{{off, http.StatusNotFound}, {on, http.StatusOK}} {
		n := tc.cl.Nodes[0]
		if r := tc.cl.Do("GET", n.URL()+"/debug/pprof/goroutine?debug=1", ""); r.Status != tc.want {
			t.Errorf("GET /debug/pprof/goroutine: %d, want %d", r.Status, tc.want)
		}
		if r := tc.cl.Do("GET", n.URL()+"/v1/status", ""); r.Status != http.StatusOK {
			t.Errorf("GET /v1/status: %d", r.Status)
		}
	}
}
