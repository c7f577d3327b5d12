package fsm_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/coordd/coordd/acl"
	"github.com/coordd/coordd/fsm"
)

func newToken(t *testing.T, secret string, rules ...acl.Rule) fsm.ACLToken {
	t.Helper()
	id, err := acl.NewAccessorID()
	if err != nil {
		t.Fatal(err)
	}
	return fsm.ACLToken{AccessorID: id, SecretHash: acl.HashSecret(secret), Description: "test", Rules: rules}
}

func TestACL_BootstrapOnceCreateLookupDelete(t *testing.T) {
	f := fsm.New()
	boot := newToken(t, "management-secret-1")
	res := applyTo(t, f, 1, fsm.NewACLBootstrap(boot.AccessorID, boot.SecretHash, "bootstrap"))
	if res.Err != nil || res.Token == nil || !res.Token.Management || res.Token.CreateIndex != 1 {
		t.Fatalf("bootstrap: %+v", res)
	}
	if f.State().ACLBootstrapIndex() != 1 {
		t.Fatalf("bootstrap index %d", f.State().ACLBootstrapIndex())
	}
	again := newToken(t, "management-secret-2")
	if res := applyTo(t, f, 2, fsm.NewACLBootstrap(again.AccessorID, again.SecretHash, "")); !errors.Is(res.Err, fsm.ErrACLBootstrapped) {
		t.Fatalf("second bootstrap: %v", res.Err)
	}

	tok := newToken(t, "app-secret-000001", acl.Rule{Resource: acl.KV, Prefix: "app/", Access: acl.Write})
	if res := applyTo(t, f, 3, fsm.NewACLTokenCreate(tok)); res.Err != nil {
		t.Fatal(res.Err)
	}
	got, ok := f.State().ACLTokenBySecret("app-secret-000001")
	if !ok || got.AccessorID != tok.AccessorID || !got.Policy().Allowed(acl.KV, "app/x", acl.Write) || got.Policy().Allowed(acl.KV, "x", acl.Read) {
		t.Fatalf("lookup by secret: %+v %v", got, ok)
	}
	if _, ok := f.State().ACLTokenBySecret("app-secret-000002"); ok {
		t.Fatal("a wrong secret found a token")
	}
	if res := applyTo(t, f, 4, fsm.NewACLTokenCreate(tok)); !errors.Is(res.Err, fsm.ErrTokenExists) {
		t.Fatalf("same accessor twice: %v", res.Err)
	}
	same := newToken(t, "app-secret-000001")
	if res := applyTo(t, f, 5, fsm.NewACLTokenCreate(same)); !errors.Is(res.Err, fsm.ErrTokenExists) {
		t.Fatalf("same secret twice: %v", res.Err)
	}
	if n := len(f.State().ACLTokens()); n != 2 {
		t.Fatalf("%d tokens", n)
	}
	if res := applyTo(t, f, 6, fsm.NewACLTokenDelete(tok.AccessorID)); res.Err != nil || res.Token.AccessorID != tok.AccessorID {
		t.Fatalf("delete: %+v", res)
	}
	if _, ok := f.State().ACLTokenBySecret("app-secret-000001"); ok {
		t.Fatal("a deleted token still authenticates")
	}
	if res := applyTo(t, f, 7, fsm.NewACLTokenDelete(tok.AccessorID)); !errors.Is(res.Err, fsm.ErrTokenNotFound) {
		t.Fatalf("delete twice: %v", res.Err)
	}
}

func TestACL_TokensSurviveASnapshotAndARestoreKeepsTheRunningClustersTokens(t *testing.T) {
	f := richFSM(t)
	boot := newToken(t, "management-secret-1")
	applyTo(t, f, 100, fsm.NewACLBootstrap(boot.AccessorID, boot.SecretHash, "bootstrap"))
	tok := newToken(t, "lock-secret-000001", acl.Rule{Resource: acl.Lock, Prefix: "jobs/", Access: acl.Write}, acl.Rule{Resource: acl.Lease, Access: acl.Write})
	applyTo(t, f, 101, fsm.NewACLTokenCreate(tok))

	b := stateBytes(t, f.State())
	g := fsm.New()
	if err := g.Restore(newRC(b)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stateBytes(t, g.State()), b) {
		t.Fatal("a state with tokens does not round trip")
	}
	got, ok := g.State().ACLTokenBySecret("lock-secret-000001")
	if !ok || got.CreateIndex != 101 || len(got.Rules) != 2 || g.State().ACLBootstrapIndex() != 100 {
		t.Fatalf("restored token %+v %v, bootstrap %d", got, ok, g.State().ACLBootstrapIndex())
	}

	// A backup without tokens restored into this cluster keeps its tokens.
	backup := richFSM(t).State()
	restored := fsm.PrepareRestore(backup, nil, 200).WithACLOf(g.State())
	if _, ok := restored.ACLTokenBySecret("management-secret-1"); !ok || restored.ACLBootstrapIndex() != 100 {
		t.Fatal("restoring a backup dropped the running cluster's tokens")
	}
}

func TestACL_BadTokenDefinitionsAreRefusedBeforeProposal(t *testing.T) {
	ok := newToken(t, "s-000000000000001")
	bad := map[string]fsm.ACLToken{
		"accessor":            {AccessorID: "not-hex", SecretHash: ok.SecretHash},
		"rules on management": {AccessorID: ok.AccessorID, Management: true, Rules: []acl.Rule{{Resource: acl.KV, Access: acl.Read}}},
		"unknown resource":    {AccessorID: ok.AccessorID, Rules: []acl.Rule{{Resource: "x", Access: acl.Read}}},
		"description":         {AccessorID: ok.AccessorID, Description: string(make([]byte, acl.MaxDescription+1))},
	}
	for name, tok := range bad {
		if err := fsm.ValidateToken(&tok); !errors.Is(err, acl.ErrInvalidRule) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// The decoder makes the same checks: a forged entry is a bad command.
	c := fsm.NewACLTokenCreate(bad["unknown resource"])
	if _, err := fsm.DecodeCommand(c.Encode()); err != nil {
		t.Fatalf("envelope: %v", err)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("applying a malformed token did not stop the replica")
		}
	}()
	fsm.ApplyCommand(fsm.New().State(), 1, 1, c)
}
