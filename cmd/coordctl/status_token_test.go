//go:build unix

package main

import (
	"path/filepath"
	"testing"

	"github.com/coordd/coordd/internal/testcluster"
	"github.com/coordd/coordd/server"
)

// TestStatus_SendsTheToken: status asks each endpoint with its own client,
// which must carry -token like every other command's.
func TestStatus_SendsTheToken(t *testing.T) {
	cl := testcluster.New(t, 1, func(c *server.Config) { c.ACL = true })
	f := &fixture{cl: cl, eps: cl.Nodes[0].HTTPAddr}
	secret := filepath.Join(t.TempDir(), "mgmt.token")
	if r := f.ctl(t, "", "acl", "bootstrap", "-secret-file", secret); r.code != exitOK {
		t.Fatalf("bootstrap: %s", r)
	}
	if r := f.ctl(t, "", "status"); r.code != exitFailed {
		t.Fatalf("status without a token: %s", r)
	}
	if r := f.ctl(t, "", "-token-file", secret, "status"); r.code != exitOK {
		t.Fatalf("status with a token: %s", r)
	}
}
