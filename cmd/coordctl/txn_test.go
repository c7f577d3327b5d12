package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/coordd/coordd/client"
)

func (f *fixture) testTxn(t *testing.T) {
	t.Parallel()
	body := `{"if":[{"target":"absent","key":"txn/epoch"}],
		"then":[{"op":"put","key":"txn/epoch","value":"1"},{"op":"get","key":"txn/epoch"}],
		"else":[{"op":"get","key":"txn/epoch"}]}`
	r := f.ctl(t, body, "txn")
	if r.code != exitOK || !strings.Contains(r.stdout, "then") || !strings.Contains(r.stdout, "txn/epoch") {
		t.Fatalf("first txn: %+v", r)
	}
	r = f.ctl(t, body, "-o", "json", "txn")
	var res client.TxnResponse
	if r.code != exitFailed || json.Unmarshal([]byte(r.stdout), &res) != nil || res.Succeeded || string(res.Results[0].KV.Value) != "1" {
		t.Fatalf("second txn: %+v", r)
	}
	if !strings.Contains(r.stderr, "compare 0 did not hold") {
		t.Fatalf("stderr %q", r.stderr)
	}
	for _, bad := range []string{"", "{", `{"iff":[]}`, `{} {}`} {
		if r := f.ctl(t, bad, "txn"); r.code != exitUsage {
			t.Errorf("txn with %q: %+v", bad, r)
		}
	}
	if r := f.ctl(t, `{"then":[{"op":"frobnicate","key":"k"}]}`, "txn"); r.code != exitUsage || !strings.Contains(r.stderr, "unknown op") {
		t.Errorf("server-refused txn: %+v", r)
	}

	// Fenced kv put and del with a lock's token.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res2, err := f.c.LockNew(ctx, "txn-lock", 10*time.Second, 0, client.LockOptions{})
	if err != nil || !res2.Leader {
		t.Fatalf("lock: %+v %v", res2, err)
	}
	fence := fmt.Sprintf("txn-lock:%d", res2.Token)
	if r := f.ctl(t, "", "kv", "put", "txn/cfg", "v", "-fence", fence); r.code != exitOK {
		t.Fatalf("fenced put: %+v", r)
	}
	stale := fmt.Sprintf("txn-lock:%d", res2.Token-1)
	if r := f.ctl(t, "", "kv", "put", "txn/cfg", "w", "-fence", stale); r.code != exitFailed || !strings.Contains(r.stderr, "stale") {
		t.Fatalf("stale fenced put: %+v", r)
	}
	if r := f.ctl(t, "", "kv", "del", "txn/cfg", "-fence", stale); r.code != exitFailed {
		t.Fatalf("stale fenced del: %+v", r)
	}
	if r := f.ctl(t, "", "kv", "del", "txn/cfg", "-fence", fence); r.code != exitOK {
		t.Fatalf("fenced del: %+v", r)
	}
	for _, bad := range []string{"nocolon", ":3", "n:0", "n:x"} {
		if r := f.ctl(t, "", "kv", "put", "k", "v", "-fence", bad); r.code != exitUsage {
			t.Errorf("-fence %q: %+v", bad, r)
		}
	}
}
