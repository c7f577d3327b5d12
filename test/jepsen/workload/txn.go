package workload

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/test/jepsen/check"
	"github.com/coordd/coordd/test/jepsen/history"
)

// The txn workload: multi-key registers changed only by transactions
// (POST /v1/txn), checked by porcupine against a model of a group of
// keys.
//
// A group is txnKeys keys; txnClients clients pick a random node per op
// and run on the current group one of:
//
//   - read: a txn of gets of every key (no compares): Out.Values are the
//     values read ("" for absent);
//   - write: puts of a random non-empty subset of the keys (In.Values, the
//     key numbers) to one unique value (In.Value);
//   - cas: if key 0's value equals In.Values[0] (an earlier read; "" for
//     absent: the compare is "absent"), put every key to In.Value, else get
//     key 0: Out.Found says whether the then branch ran, Out.Value is the
//     value read by the else branch.
//
// Ops are recorded with kind "txn" and Key the group; the register and
// durability checkers ignore them. Check proves that every group's
// history is linearizable with ops that are atomic: a read sees either all
// or none of a write's keys, a cas's branch is consistent with one state.
// Writes of unknown outcome may take effect at any point after their call,
// or never. Groups change every txnGeneration, or sooner after txnGroupOps
// ops (a fast, idle machine), to keep each search short: a group of 475 ops
// left porcupine's search undecided.

// KindTxn is the history kind of the txn workload's ops.
const KindTxn history.Kind = "txn"

const (
	txnClients    = 4
	txnKeys       = 3
	txnMaxOps     = 2000
	txnGeneration = 3 * time.Second
	txnGroupOps   = 150
	txnPrefix     = "jepsen/txn/g"
	// txnProcessBase is the first process id of the txn clients.
	txnProcessBase = 3000
)

type txnWorkload struct {
	mu    sync.Mutex
	start time.Time
	used  map[string]bool
	// gen is the current group's number, since when it is used, and how
	// many ops it has had.
	gen      int
	genStart time.Time
	genOps   int
}

// Txn returns the transaction workload (see above).
func Txn() Workload { return &txnWorkload{used: map[string]bool{}} }

func (w *txnWorkload) Name() string { return "txn" }

// LeaseTTL: no lease.
func (w *txnWorkload) LeaseTTL() time.Duration { return 0 }

func (w *txnWorkload) group() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.genStart.IsZero() {
		w.genStart = w.start
	}
	if w.genOps >= txnGroupOps || time.Since(w.genStart) >= txnGeneration {
		w.gen, w.genStart, w.genOps = w.gen+1, time.Now(), 0
	}
	w.genOps++
	g := fmt.Sprintf("%s%d", txnPrefix, w.gen)
	w.used[g] = true
	return g
}

func txnKey(group string, i int) string { return group + "/k" + strconv.Itoa(i) }

func (w *txnWorkload) Run(ctx context.Context, env Env) error {
	if len(env.Nodes) == 0 {
		return fmt.Errorf("txn: no nodes")
	}
	w.mu.Lock()
	w.start = time.Now()
	w.mu.Unlock()
	c := newHTTPClient()
	defer c.CloseIdleConnections()
	total := runClients(txnClients, func(i int) int {
		return w.client(ctx, env, c, txnProcessBase+i, newRNG(env.Seed, uint64(300+i)))
	})
	env.logf("txn: %d transactions by %d clients on groups of %d keys", total, txnClients, txnKeys)
	return nil
}

func (w *txnWorkload) client(ctx context.Context, env Env, c *http.Client, p int, g *rng) int {
	rctx := context.WithoutCancel(ctx)
	last := map[string]string{} // key 0's value last read, per group
	n := 0
	for ; n < txnMaxOps && ctx.Err() == nil; n++ {
		group := w.group()
		node := env.Nodes[g.intN(len(env.Nodes))]
		op := history.Op{Process: p, Kind: KindTxn, Key: group, Node: nodeName(node)}
		var req api.TxnRequest
		kind := "read"
		switch x := g.intN(100); {
		case x < 40:
			for i := range txnKeys {
				req.Then = append(req.Then, api.TxnOp{Op: api.TxnGet, Key: txnKey(group, i)})
			}
		case x < 75:
			kind = "write"
			op.In.Value = fmt.Sprintf("w%d-%d", p, n)
			for i := range txnKeys {
				if g.intN(2) == 0 || i == txnKeys-1 && len(op.In.Values) == 0 {
					op.In.Values = append(op.In.Values, strconv.Itoa(i))
					req.Then = append(req.Then, api.TxnOp{Op: api.TxnPut, Key: txnKey(group, i), Value: api.Bytes(op.In.Value)})
				}
			}
		default:
			kind = "cas"
			op.In.Value = fmt.Sprintf("c%d-%d", p, n)
			expect := last[group]
			op.In.Values = []string{expect}
			cmp := api.TxnCompare{Target: api.TargetAbsent, Key: txnKey(group, 0)}
			if expect != "" {
				cmp = api.TxnCompare{Target: api.TargetValue, Key: txnKey(group, 0), Op: api.OpEqual, Value: api.Bytes(expect)}
			}
			req.If = []api.TxnCompare{cmp}
			for i := range txnKeys {
				req.Then = append(req.Then, api.TxnOp{Op: api.TxnPut, Key: txnKey(group, i), Value: api.Bytes(op.In.Value)})
			}
			req.Else = []api.TxnOp{{Op: api.TxnGet, Key: txnKey(group, 0)}}
		}
		op.Call = env.Rec.Now()
		r := do(rctx, c, http.MethodPost, node, "/v1/txn", req, requestTimeout)
		op.Return = env.Rec.Now()
		op.Status, op.Error = r.outcome(kind != "read")
		if r.ok() {
			var res api.TxnResponse
			if err := r.decode(&res); err != nil || len(res.Results) == 0 && kind != "cas" {
				op.Status, op.Error = history.StatusFail, "bad_answer"
			} else {
				switch kind {
				case "read":
					for _, x := range res.Results {
						v := ""
						if x.KV != nil {
							v = string(x.KV.Value)
						}
						op.Out.Values = append(op.Out.Values, v)
					}
					last[group] = op.Out.Values[0]
				case "cas":
					op.Out.Found = res.Succeeded
					if res.Succeeded {
						last[group] = op.In.Value
					} else if len(res.Results) == 1 {
						if res.Results[0].KV != nil {
							op.Out.Value = string(res.Results[0].KV.Value)
						}
						last[group] = op.Out.Value
					}
				case "write":
					last[group] = ""
				}
			}
		}
		env.record(op)
		// More think time than the register's: a txn group's search grows
		// with its concurrent writes of unknown outcome, and on an idle
		// machine 4 clients without it left groups of 77 ops undecided.
		if !thinkAfter(ctx, g, op) || !sleep(ctx, g.duration(50*time.Millisecond, 100*time.Millisecond)) {
			n++
			break
		}
	}
	return n
}

// Final reads every group's keys (for the report only: the linearizability
// check covers what the clients saw).
func (w *txnWorkload) Final(ctx context.Context, env Env) (history.FinalState, error) {
	c := newHTTPClient()
	defer c.CloseIdleConnections()
	w.mu.Lock()
	groups := make([]string, 0, len(w.used))
	for g := range w.used {
		groups = append(groups, g)
	}
	w.mu.Unlock()
	slices.Sort(groups)
	kv := map[string]history.KV{}
	attempt := 0
	for _, g := range groups {
		var last reply
		ok := retry(ctx, func() bool {
			attempt++
			last = do(ctx, c, http.MethodGet, env.Nodes[attempt%len(env.Nodes)], "/v1/kv/"+g+"/?prefix", nil, requestTimeout)
			if !last.ok() {
				return false
			}
			var kvs []api.KV
			if last.decode(&kvs) != nil {
				return false
			}
			for _, e := range kvs {
				kv[e.Key] = history.KV{Value: string(e.Value), Index: e.ModifyIndex}
			}
			return true
		})
		if !ok {
			return history.FinalState{}, fmt.Errorf("txn: final read of %q: %s %v", g, last.code(), last.err)
		}
	}
	return history.FinalState{KV: kv}, nil
}

func (w *txnWorkload) Check(ops []history.Op, final history.FinalState, outDir string) []check.Result {
	return []check.Result{CheckTxn(ops, final, outDir)}
}

// txnState is the model's state of a group: each key's value ("": absent).
type txnState [txnKeys]string

type txnIn struct {
	shape  uint64 // 1 read, 2 write, 3 cas
	keys   []int  // write: the keys written
	value  string // write, cas: the value written
	expect string // cas: key 0's expected value ("": absent)
}

type txnOut struct {
	unknown bool
	values  []string // read
	then    bool     // cas: the then branch ran
	value   string   // cas else: key 0's value
}

var txnModel = porcupine.Model{
	Init: func() any { return txnState{} },
	Step: func(state, input, output any) (bool, any) {
		s, in, out := state.(txnState), input.(txnIn), output.(txnOut)
		switch in.shape {
		case 1:
			return slices.Equal(out.values, s[:]), s
		case 2:
			for _, k := range in.keys {
				s[k] = in.value
			}
			return true, s
		default:
			holds := s[0] == in.expect
			if !out.unknown && out.then != holds {
				return false, s
			}
			if !holds {
				return out.unknown || out.value == s[0], s
			}
			for k := range s {
				s[k] = in.value
			}
			return true, s
		}
	},
	Equal: func(a, b any) bool { return a.(txnState) == b.(txnState) },
	DescribeOperation: func(input, output any) string {
		in, out := input.(txnIn), output.(txnOut)
		switch in.shape {
		case 1:
			return fmt.Sprintf("read %q", out.values)
		case 2:
			return fmt.Sprintf("write %v := %q", in.keys, in.value)
		}
		return fmt.Sprintf("cas k0 == %q then all := %q: then=%v else read %q (unknown %v)", in.expect, in.value, out.then, out.value, out.unknown)
	},
	DescribeState: func(state any) string { return fmt.Sprintf("%q", state.(txnState)) },
}

// CheckTxn checks the txn ops of ops, group by group, with porcupine
// against txnModel: every ok op, and every write or cas of unknown outcome
// as taking effect at any point after its call or never. Failed ops and
// reads of unknown outcome changed nothing and are dropped.
func CheckTxn(ops []history.Op, _ history.FinalState, outDir string) check.Result {
	res := check.Result{Checker: "txn-linearizable", Valid: true}
	groups := map[string][]porcupine.Operation{}
	last := map[string]int64{}
	unknown := map[string][]int{}
	dropped := 0
	for _, op := range ops {
		if op.Kind != KindTxn {
			continue
		}
		in := txnIn{shape: txnShape(op), value: op.In.Value}
		switch in.shape {
		case 2:
			for _, k := range op.In.Values {
				i, err := strconv.Atoi(k)
				if err != nil || i < 0 || i >= txnKeys {
					res.Valid = false
					res.Anomalies = append(res.Anomalies, fmt.Sprintf("#%d: bad key number %q", op.Index, k))
					continue
				}
				in.keys = append(in.keys, i)
			}
		case 3:
			if len(op.In.Values) == 1 {
				in.expect = op.In.Values[0]
			}
		}
		out := txnOut{values: op.Out.Values, then: op.Out.Found, value: op.Out.Value}
		switch {
		case op.Status == history.StatusOK:
			if in.shape == 1 && len(out.values) != txnKeys {
				res.Valid = false
				res.Anomalies = append(res.Anomalies, fmt.Sprintf("#%d: a read of %d keys", op.Index, len(out.values)))
				continue
			}
		case op.Status == history.StatusUnknown && in.shape != 1:
			out = txnOut{unknown: true}
			unknown[op.Key] = append(unknown[op.Key], len(groups[op.Key]))
		default:
			dropped++
			continue
		}
		last[op.Key] = max(last[op.Key], op.Call, op.Return)
		groups[op.Key] = append(groups[op.Key], porcupine.Operation{ClientId: op.Process, Input: in, Call: op.Call, Output: out, Return: op.Return, Metadata: op.Index})
	}
	names := make([]string, 0, len(groups))
	for g := range groups {
		names = append(names, g)
	}
	slices.Sort(names)
	total := 0
	for _, g := range names {
		pops := groups[g]
		for _, i := range unknown[g] {
			pops[i].Return = last[g] + 1
		}
		total += len(pops)
		result, info := porcupine.CheckOperationsVerbose(txnModel, pops, check.DefaultLinearizableTimeout)
		switch result {
		case porcupine.Ok:
			continue
		case porcupine.Unknown:
			res.Anomalies = append(res.Anomalies, fmt.Sprintf("group %q: undecided: the search of its %d ops did not finish", g, len(pops)))
		default:
			msg := fmt.Sprintf("group %q: not linearizable (%d ops, %d of unknown outcome)", g, len(pops), len(unknown[g]))
			if outDir != "" && os.MkdirAll(outDir, 0o755) == nil {
				path := filepath.Join(outDir, "txn-"+strings.ReplaceAll(g, "/", "_")+".html")
				if porcupine.VisualizePath(txnModel, info, path) == nil {
					msg += "; visualization: " + path
				}
			}
			res.Anomalies = append(res.Anomalies, msg)
		}
		res.Valid = false
	}
	res.Notes = append(res.Notes, fmt.Sprintf("%d transactions checked in %d groups; %d failed ops and reads of unknown outcome dropped", total, len(names), dropped))
	return res
}

// txnShape tells an op's kind of transaction by its written value: none
// for a read, "w..." for a write, "c..." for a cas.
func txnShape(op history.Op) uint64 {
	switch {
	case op.In.Value == "":
		return 1
	case strings.HasPrefix(op.In.Value, "w"):
		return 2
	}
	return 3
}
