//go:build unix

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coordd/coordd/internal/testcluster"
	"github.com/coordd/coordd/server"
)

func TestACLCommands(t *testing.T) {
	cl := testcluster.New(t, 3, func(c *server.Config) { c.ACL = true })
	var eps []string
	for _, n := range cl.Nodes {
		eps = append(eps, n.HTTPAddr)
	}
	f := &fixture{cl: cl, eps: strings.Join(eps, ",")}
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "mgmt.token")

	if r := f.ctl(t, "", "kv", "put", "a", "1"); r.code != exitFailed || !strings.Contains(r.stderr, "unauthenticated") {
		t.Fatalf("anonymous put: %s", r)
	}
	if r := f.ctl(t, "", "acl", "bootstrap", "-secret-file", secretFile); r.code != exitOK || strings.Contains(r.stdout, "cdt_") {
		t.Fatalf("bootstrap: %s", r)
	}
	if fi, err := os.Stat(secretFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("secret file: %v %v", fi, err)
	}
	if r := f.ctl(t, "", "acl", "bootstrap"); r.code != exitFailed {
		t.Fatalf("second bootstrap: %s", r)
	}
	mg := func(args ...string) result {
		return f.ctl(t, "", append([]string{"-token-file", secretFile}, args...)...)
	}
	r := mg("-o", "json", "acl", "token", "create", "-description", "app", "-rule", "kv:write:app/", "-rule", "lease:write")
	if r.code != exitOK {
		t.Fatalf("create: %s", r)
	}
	created := decode[struct {
		AccessorID string `json:"accessor_id"`
		SecretID   string `json:"secret_id"`
	}](t, r)
	if created.SecretID == "" || created.AccessorID == "" {
		t.Fatalf("create answered %s", r.stdout)
	}
	app := func(args ...string) result {
		return f.ctl(t, "", append([]string{"-token", created.SecretID}, args...)...)
	}
	if r := app("kv", "put", "app/x", "1"); r.code != exitOK {
		t.Fatalf("allowed put: %s", r)
	}
	if r := app("kv", "put", "other", "1"); r.code != exitFailed || !strings.Contains(r.stderr, "permission_denied") {
		t.Fatalf("put outside the rule: %s", r)
	}
	if r := app("acl", "whoami"); r.code != exitOK || !strings.Contains(r.stdout, "kv:write:app/") {
		t.Fatalf("whoami: %s", r)
	}
	if r := mg("acl", "token", "ls"); r.code != exitOK || !strings.Contains(r.stdout, created.AccessorID) || strings.Contains(r.stdout, created.SecretID) {
		t.Fatalf("ls: %s", r)
	}
	for _, bad := range [][]string{
		{"acl", "token", "create"},
		{"acl", "token", "create", "-rule", "kv"},
	} {
		if r := mg(bad...); r.code != exitUsage {
			t.Errorf("%v: %s", bad, r)
		}
	}
	if r := mg("acl", "token", "create", "-rule", "disk:read"); r.code != exitUsage || !strings.Contains(r.stderr, "unknown resource") {
		t.Errorf("unknown resource: %s", r)
	}
	if r := mg("acl", "token", "delete", created.AccessorID); r.code != exitOK {
		t.Fatalf("delete: %s", r)
	}
	if r := app("kv", "put", "app/x", "2"); r.code != exitFailed || !strings.Contains(r.stderr, "invalid_token") {
		t.Fatalf("put with a deleted token: %s", r)
	}
}
