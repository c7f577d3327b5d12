package client_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/coordd/coordd/client"
	"github.com/coordd/coordd/internal/testcluster"
)

// BenchmarkTxnVsPut compares a transaction of the shape etcd users run with
// Txn — 3 compares and 3 puts — with a plain put, on a 3-node in-process
// cluster (real Raft, bbolt in temp dirs, HTTP on loopback), with 1, 16
// and 64 clients, each client bound to one node: the leader ("leader"), or
// the nodes in turn ("every-node": two thirds of the requests are
// forwarded). Each client works on keys of its own, so that no compare
// fails. It reports ops/s and the p50, p99 and max latency of an op (a
// txn writes three keys; a put one).
//
//	make bench-txn
func BenchmarkTxnVsPut(b *testing.B) {
	cl := testcluster.New(b, 3)
	leader := cl.Leader()
	for _, via := range []string{"leader", "every-node"} {
		for _, op := range []string{"put", "txn"} {
			for _, clients := range []int{1, 16, 64} {
				b.Run(fmt.Sprintf("%s/%s/clients=%d", op, via, clients), func(b *testing.B) {
					benchWrites(b, cl, leader, via, op, clients)
				})
			}
		}
	}
}

func benchWrites(b *testing.B, cl *testcluster.Cluster, leader *testcluster.Node, via, op string, clients int) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cs := make([]*client.Client, clients)
	for i := range cs {
		ep := leader.HTTPAddr
		if via == "every-node" {
			ep = cl.Nodes[i%len(cl.Nodes)].HTTPAddr
		}
		c, err := client.New(ctx, client.Config{Endpoints: []string{ep}})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		cs[i] = c
		for k := range 3 {
			if _, err := c.Put(ctx, fmt.Sprintf("bench/%s/%d/k%d", via, i, k), []byte("0")); err != nil {
				b.Fatal(err)
			}
		}
	}
	lat := make([][]time.Duration, clients)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for i := range clients {
		n := b.N / clients
		if i < b.N%clients {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := cs[i]
			keys := []string{fmt.Sprintf("bench/%s/%d/k0", via, i), fmt.Sprintf("bench/%s/%d/k1", via, i), fmt.Sprintf("bench/%s/%d/k2", via, i)}
			v := []byte("value-of-64-bytes-0123456789012345678901234567890123456789012345")
			for range n {
				t0 := time.Now()
				var err error
				if op == "put" {
					_, err = c.Put(ctx, keys[0], v)
				} else {
					var res *client.TxnResponse
					res, err = c.Txn(ctx).
						If(client.VersionOf(keys[0]).Gt(0), client.VersionOf(keys[1]).Gt(0), client.VersionOf(keys[2]).Gt(0)).
						Then(client.OpPut(keys[0], v), client.OpPut(keys[1], v), client.OpPut(keys[2], v)).
						Commit()
					if err == nil && !res.Succeeded {
						err = fmt.Errorf("a compare failed: %+v", res)
					}
				}
				if err != nil {
					b.Error(err)
					return
				}
				lat[i] = append(lat[i], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	pct := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Microseconds()) / 1000 }
	b.ReportMetric(float64(len(all))/elapsed.Seconds(), "ops/s")
	b.ReportMetric(pct(0.5), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(pct(1), "max-ms")
}
