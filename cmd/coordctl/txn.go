package main

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"

	"github.com/coordd/coordd/client"
)

const txnSynopsis = `  coordctl txn [-idempotency-key K] < TXN.json
`

// cmdTxn sends the transaction given as JSON on stdin (the body of POST
// /v1/txn) and prints which branch ran and each op's result. It exits 0
// when the then branch ran, 1 when the else branch did (or on an error).
func cmdTxn(e *env, args []string) int {
	fs := e.newFlags("txn [-idempotency-key K] < TXN.json")
	key := fs.String("idempotency-key", "", "send with this Idempotency-Key (default: a random one): a repeat within 10 minutes answers the first result")
	if _, err := e.parseArgs(fs, args, 0, 0, ""); err != nil {
		return parseDone(err)
	}
	dec := json.NewDecoder(e.stdin)
	dec.DisallowUnknownFields()
	var req client.TxnRequest
	if err := dec.Decode(&req); err != nil {
		return e.usagef(`read the transaction from stdin: %v (want JSON such as {"if":[{"target":"absent","key":"k"}],"then":[{"op":"put","key":"k","value":"v"}]})`, err)
	}
	if dec.More() {
		return e.usagef("read the transaction from stdin: data after the JSON object")
	}
	return e.call(func(ctx context.Context, c *client.Client) int {
		t := c.TxnFromRequest(ctx, req)
		if *key != "" {
			t.IdempotencyKey(*key)
		}
		res, err := t.Commit()
		if err != nil {
			return e.fail(err)
		}
		e.show(res, []string{"BRANCH", "OP", "KEY", "VALUE", "CREATE", "MODIFY", "VERSION", "DELETED"}, func() [][]string {
			rows := [][]string{}
			for _, r := range res.Results {
				value, create, modify, version := "", u64(r.CreateIndex), u64(r.ModifyIndex), u64(r.Version)
				if r.KV != nil {
					value, create, modify, version = display(r.KV.Value), u64(r.KV.CreateIndex), u64(r.KV.ModifyIndex), u64(r.KV.Version)
				} else if r.Op == "get" {
					value = "(absent)"
				}
				rows = append(rows, []string{res.Branch, r.Op, r.Key, value, create, modify, version, strconv.Itoa(r.Deleted)})
			}
			if len(rows) == 0 {
				rows = append(rows, []string{res.Branch, "", "", "", "", "", "", ""})
			}
			return rows
		})
		if !res.Succeeded {
			what := "a compare did not hold"
			if res.Failed != nil {
				what = "compare " + strconv.Itoa(*res.Failed) + " did not hold"
				if res.Current != nil {
					what += " (found " + u64(*res.Current) + ")"
				}
			}
			e.stderr.Write([]byte(strings.TrimSpace("coordctl txn: "+what+": the else branch ran") + "\n"))
			return exitFailed
		}
		return exitOK
	})
}
