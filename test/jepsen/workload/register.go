package workload

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/test/jepsen/check"
	"github.com/coordd/coordd/test/jepsen/history"
)

// Register workload parameters.
const (
	registerClients = 5
	// registerMaxOps bounds each client's ops, whatever the run's length:
	// porcupine's search grows with the ops of a key.
	registerMaxOps = 3000
	// registerKeyPrefix names the keys: registerKeyPrefix + "<key>-g<generation>".
	registerKeyPrefix = "jepsen/register/k"
	// registerGeneration is how long a key is used: then the clients move
	// to a fresh key of the next generation, so that each key's history
	// (and the ops of unknown outcome in it, which porcupine's search
	// must place anywhere after their call) stays short.
	// 10 s gave keys of ~480 ops under kills, whose search did not finish in
	// a minute (make jepsen, seed 13824340134464899578); 3 s gives ~150.
	registerGeneration = 3 * time.Second
	// registerProcessBase is the first process id of the register clients.
	registerProcessBase = 0
)

// register is the KV register workload: registerClients clients each pick a
// random key and a random node per op and get (linearizable), put, cas or
// delete it, with a unique value per write.
type register struct {
	keys int

	mu    sync.Mutex
	start time.Time
	used  map[string]bool // every key an op was sent for
}

// Register returns the KV register workload on keys keys (at least 1): get,
// put, compare-and-swap and delete through random nodes, each write with a
// unique value; checked per key for linearizability (porcupine) and for
// durability against the final values.
func Register(keys int) Workload {
	return &register{keys: max(keys, 1), used: map[string]bool{}}
}

func (w *register) Name() string { return fmt.Sprintf("register-%d", w.keys) }

// key returns the name of key i in the current generation, and notes it
// for Final.
func (w *register) key(i int) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	gen := int(time.Since(w.start) / registerGeneration)
	k := fmt.Sprintf("%s%d-g%d", registerKeyPrefix, i, gen)
	w.used[k] = true
	return k
}

// LeaseTTL: the register uses no lease.
func (w *register) LeaseTTL() time.Duration { return 0 }

func (w *register) Run(ctx context.Context, env Env) error {
	if len(env.Nodes) == 0 {
		return fmt.Errorf("register: no nodes")
	}
	w.mu.Lock()
	w.start = time.Now()
	w.mu.Unlock()
	c := newHTTPClient()
	defer c.CloseIdleConnections()
	total := runClients(registerClients, func(i int) int {
		return w.client(ctx, env, c, registerProcessBase+i, newRNG(env.Seed, uint64(100+i)))
	})
	w.mu.Lock()
	used := len(w.used)
	w.mu.Unlock()
	env.logf("register: %d ops by %d clients on %d keys at a time (%d keys in all)", total, registerClients, w.keys, used)
	return nil
}

// client runs one client's ops until ctx is done; it returns how many.
func (w *register) client(ctx context.Context, env Env, c *http.Client, p int, g *rng) int {
	// seen is the modify index this client last saw per key (0: absent),
	// the expected index of its next cas on the key.
	seen := make(map[string]uint64)
	// Requests run to their own timeout even when the run ends: an op cut
	// short would be of unknown outcome for nothing.
	rctx := context.WithoutCancel(ctx)
	n := 0
	for ; n < registerMaxOps && ctx.Err() == nil; n++ {
		key := w.key(g.intN(w.keys))
		node := env.Nodes[g.intN(len(env.Nodes))]
		op := history.Op{Process: p, Key: key, Node: nodeName(node)}
		path := "/v1/kv/" + key
		var r reply
		switch x := g.intN(100); {
		case x < 40:
			op.Kind = history.KindGet
			op.Call = env.Rec.Now()
			r = do(rctx, c, http.MethodGet, node, path, nil, requestTimeout)
		case x < 65:
			op.Kind = history.KindPut
			op.In.Value = fmt.Sprintf("p%d-%d", p, n)
			op.Call = env.Rec.Now()
			r = do(rctx, c, http.MethodPut, node, path, []byte(op.In.Value), requestTimeout)
		case x < 92:
			op.Kind = history.KindCAS
			op.In.Value = fmt.Sprintf("p%d-%d", p, n)
			op.In.Index = seen[key]
			op.Call = env.Rec.Now()
			r = do(rctx, c, http.MethodPut, node, path+"?cas="+strconv.FormatUint(op.In.Index, 10), []byte(op.In.Value), requestTimeout)
		default:
			op.Kind = history.KindDelete
			op.Call = env.Rec.Now()
			r = do(rctx, c, http.MethodDelete, node, path, nil, requestTimeout)
		}
		op.Return = env.Rec.Now()
		op.Status, op.Error = r.outcome(op.Kind != history.KindGet)
		switch {
		case op.Kind == history.KindGet && r.ok():
			var kv api.KV
			if err := r.decode(&kv); err != nil {
				op.Status, op.Error = history.StatusFail, "bad_answer"
				break
			}
			op.Out = history.Values{Found: true, Value: string(kv.Value), Index: kv.ModifyIndex}
			seen[key] = kv.ModifyIndex
		case op.Kind == history.KindGet && op.Error == api.CodeKeyNotFound:
			// An absent key: a successful read.
			op.Status, op.Error = history.StatusOK, ""
			op.Out = history.Values{}
			seen[key] = 0
		case (op.Kind == history.KindPut || op.Kind == history.KindCAS) && r.ok():
			var res api.KVWriteResult
			if err := r.decode(&res); err == nil {
				op.Out.Index = res.ModifyIndex
				seen[key] = res.ModifyIndex
			}
		case op.Kind == history.KindCAS && op.Error == api.CodeCASConflict:
			if r.detail.CurrentIndex != nil {
				op.Out.Index = *r.detail.CurrentIndex
				seen[key] = *r.detail.CurrentIndex
			} else {
				// Without current_index the refusal is no evidence.
				op.Error = "cas_conflict_without_index"
			}
		case op.Kind == history.KindDelete && r.ok():
			seen[key] = 0
		case op.Kind == history.KindDelete && op.Error == api.CodeKeyNotFound:
			seen[key] = 0
		}
		env.record(op)
		if !thinkAfter(ctx, g, op) {
			n++
			break
		}
	}
	return n
}

func (w *register) Final(ctx context.Context, env Env) (history.FinalState, error) {
	if len(env.Nodes) == 0 {
		return history.FinalState{}, fmt.Errorf("register: no nodes")
	}
	c := newHTTPClient()
	defer c.CloseIdleConnections()
	w.mu.Lock()
	keys := make([]string, 0, len(w.used))
	for k := range w.used {
		keys = append(keys, k)
	}
	w.mu.Unlock()
	slices.Sort(keys)
	kv := make(map[string]history.KV)
	attempt := 0
	for _, key := range keys {
		var last reply
		done := retry(ctx, func() bool {
			attempt++
			last = do(ctx, c, http.MethodGet, env.Nodes[attempt%len(env.Nodes)], "/v1/kv/"+key, nil, requestTimeout)
			switch {
			case last.ok():
				var v api.KV
				if err := last.decode(&v); err != nil {
					return false
				}
				kv[key] = history.KV{Value: string(v.Value), Index: v.ModifyIndex}
				return true
			case last.detail.Code == api.CodeKeyNotFound:
				return true
			}
			return false
		})
		if !done {
			return history.FinalState{}, fmt.Errorf("register: final read of %q: %s %v", key, last.code(), last.err)
		}
	}
	return history.FinalState{KV: kv}, nil
}

func (w *register) Check(ops []history.Op, final history.FinalState, outDir string) []check.Result {
	var mine []history.Op
	for _, op := range ops {
		switch op.Kind {
		case history.KindGet, history.KindPut, history.KindCAS, history.KindDelete:
			if strings.HasPrefix(op.Key, registerKeyPrefix) {
				mine = append(mine, op)
			}
		}
	}
	opt := check.LinearizableOptions{}
	if outDir != "" && os.MkdirAll(outDir, 0o755) == nil {
		opt.VisualizeDir = outDir
	}
	return []check.Result{check.Linearizable(mine, opt), check.Durability(mine, final)}
}
