package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coordd/coordd/acl"
	"github.com/coordd/coordd/client"
)

// aclDo sends one request with an optional bearer token and returns the
// status and the error code of a JSON error answer.
func aclDo(t *testing.T, method, url, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := httpc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var eb struct {
		Error struct{ Code, Message string }
	}
	if resp.StatusCode >= 400 {
		if err := json.Unmarshal(b, &eb); err != nil || eb.Error.Code == "" || eb.Error.Message == "" {
			t.Fatalf("%s %s: %d with a body that is not a JSON error: %s", method, url, resp.StatusCode, b)
		}
	}
	return resp.StatusCode, eb.Error.Code
}

func aclClient(t *testing.T, procs []*proc, token string) *client.Client {
	t.Helper()
	var eps []string
	for _, p := range procs {
		eps = append(eps, p.httpAddr)
	}
	c, err := client.New(context.Background(), client.Config{Endpoints: eps, Token: token, RetryTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func Test_E2E_ACL_NoTokenWrongTokenAndMissingRuleAreRefusedOnEveryNode(t *testing.T) {
	procs := startClusterWith(t, 3, "info", 20*time.Second, "-acl", "-max-leases-per-token", "3")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	for _, p := range procs {
		if st, code := aclDo(t, "PUT", p.url()+"/v1/kv/app/x", "", "v"); st != http.StatusUnauthorized || code != "unauthenticated" {
			t.Fatalf("%s: anonymous write: %d %s", p.id, st, code)
		}
	}
	boot, err := aclClient(t, procs, "").ACLBootstrap(ctx, "", "")
	if err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	if _, err := aclClient(t, procs, "").ACLBootstrap(ctx, "", ""); !errors.Is(err, client.ErrConflict) {
		t.Fatalf("second bootstrap: %v", err)
	}
	mgmt := aclClient(t, procs, boot.SecretID)
	app, err := mgmt.ACLCreateToken(ctx, client.ACLTokenSpec{Description: "app", Rules: []client.ACLRule{
		{Resource: "kv", Prefix: "app/", Access: acl.Write},
		{Resource: "lease", Access: acl.Write},
		{Resource: "lock", Prefix: "jobs/", Access: acl.Write},
	}})
	if err != nil {
		t.Fatal(err)
	}
	// Used at once on every node: a follower that does not know the token
	// yet asks the leader.
	for _, p := range procs {
		if st, code := aclDo(t, "PUT", p.url()+"/v1/kv/app/"+p.id, app.SecretID, "v"); st != http.StatusOK {
			t.Fatalf("%s: allowed write: %d %s", p.id, st, code)
		}
	}
	wrong := "cdt_" + strings.Repeat("x", 43)
	for _, p := range procs {
		for _, c := range []struct {
			method, path, token, body string
			status                    int
			code                      string
		}{
			{"PUT", "/v1/kv/app/x", wrong, "v", 401, "invalid_token"},
			{"GET", "/v1/kv/app/x", wrong, "", 401, "invalid_token"},
			{"PUT", "/v1/kv/other", app.SecretID, "v", 403, "permission_denied"},
			{"GET", "/v1/kv/?prefix", app.SecretID, "", 403, "permission_denied"},
			{"GET", "/v1/status", app.SecretID, "", 403, "permission_denied"},
			{"POST", "/v1/locks/other", app.SecretID, `{"ttl":"5s"}`, 403, "permission_denied"},
			{"GET", "/v1/snapshot", app.SecretID, "", 403, "permission_denied"},
			{"POST", "/v1/acl/tokens", app.SecretID, `{"management":true}`, 403, "permission_denied"},
			{"GET", "/v1/status", "", "", 401, "unauthenticated"},
		} {
			if st, code := aclDo(t, c.method, p.url()+c.path, c.token, c.body); st != c.status || code != c.code {
				t.Errorf("%s: %s %s: %d %s, want %d %s", p.id, c.method, c.path, st, code, c.status, c.code)
			}
		}
	}
	appc := aclClient(t, procs, app.SecretID)
	if _, err := appc.Put(ctx, "other", []byte("v")); !errors.Is(err, client.ErrPermissionDenied) {
		t.Fatalf("client: write outside the rule: %v", err)
	}
	if _, err := aclClient(t, procs, wrong).Put(ctx, "app/x", []byte("v")); !errors.Is(err, client.ErrUnauthenticated) {
		t.Fatalf("client: wrong token: %v", err)
	}
	if _, err := aclClient(t, procs, "").Put(ctx, "app/x", []byte("v")); !errors.Is(err, client.ErrUnauthenticated) {
		t.Fatalf("client: no token: %v", err)
	}
	res, err := appc.LockNew(ctx, "jobs/a", 5*time.Second, 0, client.LockOptions{})
	if err != nil || !res.Leader {
		t.Fatalf("lock under the rule: %+v %v", res, err)
	}

	// Leases per token: the lock's lease and two more, then 429.
	for i := range 2 {
		if _, err := appc.Grant(ctx, 5*time.Second); err != nil {
			t.Fatalf("grant %d: %v", i, err)
		}
	}
	if _, err := appc.Grant(ctx, 5*time.Second); !errors.Is(err, client.ErrLimitExceeded) {
		t.Fatalf("fourth lease of a token limited to 3: %v", err)
	}
	if _, err := mgmt.Grant(ctx, 5*time.Second); err != nil {
		t.Fatalf("another token is not limited by app's leases: %v", err)
	}

	// Another token may not use app's lease to depose it.
	other, err := mgmt.ACLCreateToken(ctx, client.ACLTokenSpec{Description: "other", Rules: []client.ACLRule{
		{Resource: "lease", Access: acl.Write}, {Resource: "lock", Access: acl.Write},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := aclClient(t, procs, other.SecretID).Revoke(ctx, res.Lease); !errors.Is(err, client.ErrPermissionDenied) {
		t.Fatalf("revoking another token's lease: %v", err)
	}

	// A deleted token is refused for writes on every node at once.
	if err := mgmt.ACLDeleteToken(ctx, app.AccessorID); err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		if st, code := aclDo(t, "PUT", p.url()+"/v1/kv/app/x", app.SecretID, "v"); st != http.StatusUnauthorized {
			t.Errorf("%s: write with a deleted token: %d %s", p.id, st, code)
		}
	}

	// Tokens survive a restart, and secrets never reach a log.
	p := procs[0]
	p.term(t, 10*time.Second)
	p.start(t)
	waitReady(t, p, 20*time.Second)
	if st, code := aclDo(t, "GET", p.url()+"/v1/status", boot.SecretID, ""); st != http.StatusOK {
		t.Fatalf("after restart: %d %s", st, code)
	}
	for _, q := range procs {
		b, _ := os.ReadFile(q.logPath)
		for _, s := range []string{boot.SecretID, app.SecretID, other.SecretID} {
			if strings.Contains(string(b), s) {
				t.Errorf("%s's log holds a token secret", q.id)
			}
		}
	}
}

// A node joins an ACL cluster with the token in -acl-token-file; without
// one its join is refused (401) and it gives up, saying why.
func Test_E2E_ACL_JoinNeedsAnOperatorToken(t *testing.T) {
	procs := startClusterWith(t, 3, "info", 20*time.Second, "-acl")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	boot, err := aclClient(t, procs, "").ACLBootstrap(ctx, "", "")
	if err != nil {
		t.Fatal(err)
	}
	mgmt := aclClient(t, procs, boot.SecretID)
	op, err := mgmt.ACLCreateToken(ctx, client.ACLTokenSpec{Description: "node join", Rules: []client.ACLRule{{Resource: "operator", Access: acl.Write}}})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "join.token")
	if err := os.WriteFile(tokenFile, []byte(op.SecretID+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	newJoiner := func(id string, extra ...string) *proc {
		j := &proc{id: id, raftAddr: freePort(t), httpAddr: freePort(t), dataDir: filepath.Join(dir, id), logPath: filepath.Join(dir, id+".log")}
		j.args = append([]string{"-id", j.id, "-data-dir", j.dataDir, "-raft-addr", j.raftAddr, "-http-addr", j.httpAddr,
			"-join", procs[0].httpAddr, "-acl", "-log-level", "info"}, extra...)
		j.start(t)
		t.Cleanup(j.kill)
		return j
	}

	bad := newJoiner("j-no-token")
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(bad.logPath)
		if strings.Contains(string(b), "giving up on joining") && strings.Contains(string(b), "401") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a joiner without a token did not give up with a 401:\n%s", b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	bad.kill()

	j := newJoiner("j1", "-acl-token-file", tokenFile)
	waitReady(t, j, 20*time.Second)
	ms, err := mgmt.Members(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, m := range ms {
		found = found || m.ID == "j1"
	}
	if !found {
		t.Fatalf("j1 is not a member: %+v", ms)
	}
	// The new node enforces the same tokens.
	if st, code := aclDo(t, "PUT", "http://"+j.httpAddr+"/v1/kv/x", "", "v"); st != http.StatusUnauthorized {
		t.Fatalf("anonymous write through the new node: %d %s", st, code)
	}
	if st, code := aclDo(t, "PUT", "http://"+j.httpAddr+"/v1/kv/x", boot.SecretID, "v"); st != http.StatusOK {
		t.Fatalf("management write through the new node: %d %s", st, code)
	}
}
