package client_test

import (
	"errors"
	"testing"
	"time"

	"github.com/coordd/coordd/client"
	"github.com/coordd/coordd/internal/testcluster"
)

func TestClient_TxnAndFencedWrites(t *testing.T) {
	t.Parallel()
	cl := testcluster.New(t, 3)
	c := newClient(t, endpoints(cl))
	ctx := ctxT(t, 60*time.Second)

	s, err := client.NewSession(ctx, c, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	m := client.NewMutex(s, "db-primary", client.LockOptions{})
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	f := m.Fence()
	if f.Name != "db-primary" || f.Token == 0 {
		t.Fatalf("fence %+v", f)
	}

	// Create epoch and config together, only if the epoch is new and the
	// lock is still held.
	res, err := c.Txn(ctx).
		If(client.Absent("epoch"), client.FenceHolds(f), client.LeaseAlive(s.Lease())).
		Then(client.OpPut("epoch", []byte("1")), client.OpPut("config", []byte{0xff, 1}).WithLease(s.Lease()), client.OpGet("config")).
		Else(client.OpGet("epoch")).
		Commit()
	if err != nil || !res.Succeeded || len(res.Results) != 3 || string(res.Results[2].KV.Value) != "\xff\x01" {
		t.Fatalf("txn: %+v %v", res, err)
	}
	epochIndex := res.Results[0].ModifyIndex

	// Every typed compare, once holding and once not.
	holds := []client.Compare{
		client.Exists("epoch"), client.ModifyIndexOf("epoch").Eq(epochIndex), client.ModifyIndexOf("epoch").Ne(epochIndex + 1),
		client.CreateIndexOf("epoch").Lt(epochIndex + 1), client.VersionOf("epoch").Gt(0), client.VersionOf("missing").Eq(0),
		client.ValueOf("epoch").Eq([]byte("1")), client.ValueOf("epoch").Ne([]byte("2")),
	}
	fails := []client.Compare{
		client.Absent("epoch"), client.ModifyIndexOf("epoch").Lt(epochIndex), client.VersionOf("epoch").Gt(1),
		client.ValueOf("missing").Ne([]byte("x")), client.LeaseAlive(999_999), client.FenceHolds(client.Fence{Name: "db-primary", Token: f.Token + 1}),
	}
	for i, cmp := range holds {
		if res, err := c.Txn(ctx).If(cmp).Commit(); err != nil || !res.Succeeded {
			t.Errorf("compare %d should hold: %+v %v", i, res, err)
		}
	}
	for i, cmp := range fails {
		if res, err := c.Txn(ctx).If(cmp).Commit(); err != nil || res.Succeeded {
			t.Errorf("compare %d should fail: %+v %v", i, res, err)
		}
	}

	// A retried transaction with the caller's key is applied once.
	tx := func() (*client.TxnResponse, error) {
		return c.Txn(ctx).IdempotencyKey("bump-2").If(client.VersionOf("epoch").Eq(1)).Then(client.OpPut("epoch", []byte("2"))).Commit()
	}
	r1, err1 := tx()
	r2, err2 := tx()
	if err1 != nil || err2 != nil || !r1.Succeeded || !r2.Succeeded || r1.Index != r2.Index {
		t.Fatalf("retry: %+v %v / %+v %v", r1, err1, r2, err2)
	}

	// Fenced KV writes.
	if _, err := c.Put(ctx, "db/cfg", []byte("v1"), client.FencedBy(f)); err != nil {
		t.Fatal(err)
	}
	if err := m.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = c.Put(ctx, "db/cfg", []byte("late"), client.FencedBy(f))
	var se *client.Error
	if !errors.Is(err, client.ErrStaleToken) || !errors.As(err, &se) || se.CurrentToken != 0 {
		t.Fatalf("fenced put after unlock: %v", err)
	}
	if _, err := c.Delete(ctx, "db/cfg", client.Fenced(f.Name, f.Token)); !errors.Is(err, client.ErrStaleToken) {
		t.Fatalf("fenced delete after unlock: %v", err)
	}
	if kv, err := c.Get(ctx, "db/cfg"); err != nil || string(kv.Value) != "v1" {
		t.Fatalf("db/cfg: %+v %v", kv, err)
	}
	// A put attached to a lease that does not exist writes nothing.
	_, err = c.Txn(ctx).Then(client.OpPut("x", nil), client.OpPut("y", nil).WithLease(999_999)).Commit()
	if !errors.Is(err, client.ErrLeaseNotFound) {
		t.Fatalf("missing lease: %v", err)
	}
	if _, err := c.Get(ctx, "x"); !errors.Is(err, client.ErrKeyNotFound) {
		t.Fatalf("x: %v", err)
	}
}
