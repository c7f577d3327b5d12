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
	res := applyTo(t, f, 1, cmdOf(fsm.ACLBootstrap{Token: fsm.ACLToken{AccessorID: boot.AccessorID, SecretHash: boot.SecretHash, Description: "bootstrap", Management: true}}))
	if res.Err != nil || res.Token == nil || !res.Token.Management || res.Token.CreateIndex != 1 {
		t.Fatalf("bootstrap: %+v", res)
	}
	if f.State().ACLBootstrapIndex() != 1 {
		t.Fatalf("bootstrap index %d", f.State().ACLBootstrapIndex())
	}
	again := newToken(t, "management-secret-2")
	if res := applyTo(t, f, 2, cmdOf(fsm.ACLBootstrap{Token: fsm.ACLToken{AccessorID: again.AccessorID, SecretHash: again.SecretHash, Description: "", Management: true}})); !errors.Is(res.Err, fsm.ErrACLBootstrapped) {
		t.Fatalf("second bootstrap: %v", res.Err)
	}

	tok := newToken(t, "app-secret-000001", acl.Rule{Resource: acl.KV, Prefix: "app/", Access: acl.Write})
	if res := applyTo(t, f, 3, cmdOf(fsm.ACLTokenCreate{Token: tok})); res.Err != nil {
		t.Fatal(res.Err)
	}
	got, ok := f.State().ACLTokenBySecret("app-secret-000001")
	if !ok || got.AccessorID != tok.AccessorID || !got.Policy().Allowed(acl.KV, "app/x", acl.Write) || got.Policy().Allowed(acl.KV, "x", acl.Read) {
		t.Fatalf("lookup by secret: %+v %v", got, ok)
	}
	if _, ok := f.State().ACLTokenBySecret("app-secret-000002"); ok {
		t.Fatal("a wrong secret found a token")
	}
	if res := applyTo(t, f, 4, cmdOf(fsm.ACLTokenCreate{Token: tok})); !errors.Is(res.Err, fsm.ErrTokenExists) {
		t.Fatalf("same accessor twice: %v", res.Err)
	}
	same := newToken(t, "app-secret-000001")
	if res := applyTo(t, f, 5, cmdOf(fsm.ACLTokenCreate{Token: same})); !errors.Is(res.Err, fsm.ErrTokenExists) {
		t.Fatalf("same secret twice: %v", res.Err)
	}
	if n := len(f.State().ACLTokens()); n != 2 {
		t.Fatalf("%d tokens", n)
	}
	if res := applyTo(t, f, 6, cmdOf(fsm.ACLTokenDelete{AccessorID: tok.AccessorID})); res.Err != nil || res.Token.AccessorID != tok.AccessorID {
		t.Fatalf("delete: %+v", res)
	}
	if _, ok := f.State().ACLTokenBySecret("app-secret-000001"); ok {
		t.Fatal("a deleted token still authenticates")
	}
	if res := applyTo(t, f, 7, cmdOf(fsm.ACLTokenDelete{AccessorID: tok.AccessorID})); !errors.Is(res.Err, fsm.ErrTokenNotFound) {
		t.Fatalf("delete twice: %v", res.Err)
	}
}

func TestACL_TokensSurviveASnapshotAndARestoreKeepsTheRunningClustersTokens(t *testing.T) {
	f := richFSM(t)
	boot := newToken(t, "management-secret-1")
	applyTo(t, f, 100, cmdOf(fsm.ACLBootstrap{Token: fsm.ACLToken{AccessorID: boot.AccessorID, SecretHash: boot.SecretHash, Description: "bootstrap", Management: true}}))
	tok := newToken(t, "lock-secret-000001", acl.Rule{Resource: acl.Lock, Prefix: "jobs/", Access: acl.Write}, acl.Rule{Resource: acl.Lease, Access: acl.Write})
	applyTo(t, f, 101, cmdOf(fsm.ACLTokenCreate{Token: tok}))

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
	// NewCommand refuses them.
	for name, tok := range bad {
		if _, err := fsm.NewCommand(fsm.ACLTokenCreate{Token: tok}); !errors.Is(err, fsm.ErrInvalid) || !errors.Is(err, acl.ErrInvalidRule) {
			t.Errorf("NewCommand %s: %v", name, err)
		}
	}
	// The decoder makes the same checks: a forged entry is a bad command.
	good := ok
	good.Rules = []acl.Rule{{Resource: acl.KV, Access: acl.Read}}
	c := cmdOf(fsm.ACLTokenCreate{Token: good})
	c.Payload = bytes.Replace(c.Payload, []byte("\x02kv"), []byte("\x02xx"), 1)
	if err := fsm.Check(c); !errors.Is(err, fsm.ErrBadCommand) || !errors.Is(err, acl.ErrInvalidRule) {
		t.Fatalf("Check of a forged token: %v", err)
	}
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

// Lease owners are accessor ids.
const (
	owner1 = "a0000000000000000000000000000001"
	owner2 = "b0000000000000000000000000000002"
	owner3 = "c0000000000000000000000000000003"
	owner4 = "d0000000000000000000000000000004"
)

func TestLimits_LeasesPerOwnerAndCandidatesPerName(t *testing.T) {
	f := fsm.New()
	grant := func(i uint64, owner string) *fsm.Result {
		return applyTo(t, f, i, cmdOf(fsm.LeaseGrant{TTL: 1000, Owner: owner, MaxLeases: 2}))
	}
	if r := grant(1, owner1); r.Err != nil || r.Lease.Owner != owner1 {
		t.Fatalf("grant: %+v", r)
	}
	grant(2, owner1)
	if r := grant(3, owner1); !errors.Is(r.Err, fsm.ErrTooManyLeases) {
		t.Fatalf("third lease of alice: %v", r.Err)
	}
	if r := grant(4, owner2); r.Err != nil {
		t.Fatalf("bob is limited by alice's leases: %v", r.Err)
	}
	// A one-call lock with a new lease counts too, and is refused whole.
	lockNew := func(i uint64, owner, name string, maxCand int) *fsm.Result {
		return applyTo(t, f, i, cmdOf(fsm.Campaign{Kind: fsm.KindLock, Name: name, NewLeaseTTL: 1000, Owner: owner, MaxLeases: 2, MaxCandidates: maxCand}))
	}
	if r := lockNew(5, owner1, "l", 0); !errors.Is(r.Err, fsm.ErrTooManyLeases) {
		t.Fatalf("lock with a new lease over alice's limit: %v", r.Err)
	}
	if _, ok := f.State().Election("l"); ok || f.State().LeaseCountOf(owner1) != 2 {
		t.Fatal("a refused campaign changed the state")
	}
	applyTo(t, f, 6, cmdOf(fsm.LeaseRevoke{ID: 1}))
	if n := f.State().LeaseCountOf(owner1); n != 1 {
		t.Fatalf("alice holds %d leases after a revoke", n)
	}
	if r := lockNew(7, owner1, "l", 2); r.Err != nil || !r.Campaign.Holder {
		t.Fatalf("lock: %+v", r)
	}
	if r := lockNew(8, owner3, "l", 2); r.Err != nil || r.Campaign.Position != 1 {
		t.Fatalf("waiter: %+v", r)
	}
	if r := lockNew(9, owner4, "l", 2); !errors.Is(r.Err, fsm.ErrTooManyCandidates) {
		t.Fatalf("third candidate with limit 2: %v", r.Err)
	}
	// Campaigning again with a lease already queued is not refused.
	if r := applyTo(t, f, 10, cmdOf(fsm.Campaign{Kind: fsm.KindLock, Name: "l", Lease: 7, MaxCandidates: 2})); r.Err != nil {
		t.Fatalf("campaign again: %v", r.Err)
	}

	// Owners and counts survive a snapshot.
	b := stateBytes(t, f.State())
	g := fsm.New()
	if err := g.Restore(newRC(b)); err != nil {
		t.Fatal(err)
	}
	for _, o := range []string{owner1, owner2, owner3} {
		if g.State().LeaseCountOf(o) != f.State().LeaseCountOf(o) {
			t.Fatalf("%s: %d leases after restore, %d before", o, g.State().LeaseCountOf(o), f.State().LeaseCountOf(o))
		}
	}
	if l, _ := g.State().Lease(8); l.Owner != owner3 {
		t.Fatalf("lease 8 owner %q", l.Owner)
	}
}

func TestLimits_VersionOnePayloadsStillDecode(t *testing.T) {
	for _, c := range []fsm.Command{
		cmdOf(fsm.LeaseGrant{TTL: 1000}),
		cmdOf(fsm.Campaign{Kind: fsm.KindLock, Name: "x", NewLeaseTTL: 5}),
		cmdOf(fsm.Campaign{Kind: fsm.KindElection, Name: "x", Lease: 1}),
	} {
		if c.Version != 1 {
			t.Fatalf("%s without owner or limits is version %d", c.Type, c.Version)
		}
	}
	r := applyTo(t, fsm.New(), 1, cmdOf(fsm.LeaseGrant{TTL: 1000}))
	if r.Err != nil || r.Lease.Owner != "" {
		t.Fatalf("%+v", r)
	}
}
