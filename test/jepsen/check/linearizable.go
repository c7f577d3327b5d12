package check

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/coordd/coordd/test/jepsen/history"
)

// LinearizableOptions configure Linearizable.
type LinearizableOptions struct {
	// Timeout bounds the search of each key (0: DefaultLinearizableTimeout).
	// A key whose search does not finish is an anomaly: not proven is not a
	// pass.
	Timeout time.Duration
	// VisualizeDir, if not "", receives an HTML page (porcupine's
	// visualization: every op of the key on a timeline, and how far a
	// linearization got) for each key found not linearizable. The directory
	// must exist.
	VisualizeDir string
}

// DefaultLinearizableTimeout is the search bound of each key when
// LinearizableOptions.Timeout is 0.
const DefaultLinearizableTimeout = time.Minute

// Linearizable checks the KV ops (get, put, cas, delete) of ops, key by key,
// with porcupine against a sequential model of one coordd key.
//
// Valid proves: for every key, there is a total order of its ops that (1)
// respects real time (an op that returned before another was called comes
// first), (2) contains every ok op, every definite failure that is evidence
// (cas_conflict, key_not_found), and any subset of the ops of unknown
// outcome, and (3) is a legal sequential run of the model:
//
//   - the key is absent at first;
//   - get reads the current value (Found false: absent) and, if both are
//     known, the current modify index;
//   - put sets the value; its modify index is above the previous one (Raft
//     indexes only grow);
//   - cas with expected index E sets the value if the key exists with
//     modify index E (E = 0: if it is absent); a cas_conflict answer is legal
//     only if that condition was false, and its current_index (Out.Index, 0
//     for absent) must be the key's modify index;
//   - delete removes an existing key; a key_not_found answer is legal only
//     if it was absent.
//
// Which ops are used: ok ops; failed cas with cas_conflict and failed delete
// with key_not_found (definite answers about the state); a failed get with
// key_not_found, read as an ok get of an absent key; and writes of unknown
// outcome, with their return time at +infinity so that they may take effect
// at any point after their call, or never (porcupine's way, as in etcd's
// robustness tests). Other failed ops and gets of unknown outcome are dropped:
// they changed nothing and say nothing.
//
// Assumes: each key is absent when the history begins (use fresh key names
// per run); gets are linearizable reads, never ?stale; Call and Return bound
// the instant the server applied or read the op. A modify index the
// recorder left at 0 is treated as not known and matches any index. Unique
// values per key are not required, but make a violation easier to read.
func Linearizable(ops []history.Op, opt LinearizableOptions) Result {
	r := newResult("linearizable")
	if opt.Timeout <= 0 {
		opt.Timeout = DefaultLinearizableTimeout
	}
	kv := r.usable(ops, history.KindGet, history.KindPut, history.KindCAS, history.KindDelete)
	keys, perKey := byKey(kv)
	dropped := 0
	for i, key := range keys {
		pops, n := registerOps(perKey[key])
		dropped += n
		if len(pops) == 0 {
			continue
		}
		switch porcupine.CheckOperationsTimeout(registerModel, pops, opt.Timeout) {
		case porcupine.Ok:
			continue
		case porcupine.Unknown:
			r.anomaly("key %q: undecided: the linearizability search of its %d ops did not finish within %s", key, len(pops), opt.Timeout)
			continue
		}
		// Search again, keeping the partial linearizations this time, to
		// explain and draw the violation.
		_, info := porcupine.CheckOperationsVerbose(registerModel, pops, opt.Timeout)
		msg := fmt.Sprintf("key %q: not linearizable (%d ops, %d of unknown outcome)", key, len(pops), countUnknown(pops))
		msg += explainIllegal(perKey[key], pops, info)
		if opt.VisualizeDir != "" {
			path := filepath.Join(opt.VisualizeDir, fmt.Sprintf("linearizability-%03d-%s.html", i, fileSafe(key)))
			if err := porcupine.VisualizePath(registerModel, info, path); err != nil {
				r.note("key %q: visualization not written: %v", key, err)
			} else {
				msg += "; visualization: " + path
			}
		}
		r.anomaly("%s", msg)
	}
	if dropped > 0 {
		r.note("%d failed ops and reads of unknown outcome dropped (they changed nothing)", dropped)
	}
	return r.done()
}

// regState is the model's state of one key. Index 0 means the modify index
// is not known (a write of unknown outcome, or a recorder that did not note
// it); it then matches any index, and the next answer that names the index
// sets it.
type regState struct {
	exists bool
	value  string
	index  uint64
}

type regIn struct {
	kind   history.Kind
	value  string
	expect uint64 // cas: the expected modify index, 0: absent
}

type regOut struct {
	unknown bool   // the outcome is unknown: any answer is possible
	refused bool   // cas_conflict (cas) or key_not_found (delete)
	found   bool   // get: the key exists
	value   string // get: its value
	index   uint64 // get, put, cas: modify index; cas refused: current_index (0: absent)
}

// registerOps turns one key's ops into porcupine operations, and counts the
// ops it dropped.
func registerOps(ops []history.Op) ([]porcupine.Operation, int) {
	var out []porcupine.Operation
	var last int64
	var unknown []int
	dropped := 0
	for _, op := range ops {
		in := regIn{kind: op.Kind, value: op.In.Value, expect: op.In.Index}
		o := regOut{found: op.Out.Found, value: op.Out.Value, index: op.Out.Index}
		switch {
		case op.Status == history.StatusOK:
		case op.Kind == history.KindGet && op.Status == history.StatusFail && op.Error == history.CodeKeyNotFound:
			o = regOut{}
		case op.Kind == history.KindCAS && op.Status == history.StatusFail && op.Error == history.CodeCASConflict,
			op.Kind == history.KindDelete && op.Status == history.StatusFail && op.Error == history.CodeKeyNotFound:
			o.refused = true
		case op.Kind != history.KindGet && op.Status == history.StatusUnknown:
			o = regOut{unknown: true}
			unknown = append(unknown, len(out))
		default:
			dropped++
			continue
		}
		last = max(last, op.Call, op.Return)
		out = append(out, porcupine.Operation{ClientId: op.Process, Input: in, Call: op.Call, Output: o, Return: op.Return, Metadata: op.Index})
	}
	// +infinity, as far as this key is concerned: after every other event.
	for _, i := range unknown {
		out[i].Return = last + 1
	}
	return out, dropped
}

func countUnknown(pops []porcupine.Operation) int {
	n := 0
	for _, p := range pops {
		if p.Output.(regOut).unknown {
			n++
		}
	}
	return n
}

// sameIndex reports whether two modify indexes can be the same: equal, or
// one of them not known.
func sameIndex(a, b uint64) bool { return a == 0 || b == 0 || a == b }

// casHolds reports whether the condition of a cas expecting index e may hold
// in s.
func casHolds(s regState, e uint64) bool {
	if e == 0 {
		return !s.exists
	}
	return s.exists && sameIndex(s.index, e)
}

// newer reports whether a write that got modify index idx may follow s:
// indexes grow.
func newer(s regState, idx uint64) bool {
	return !s.exists || s.index == 0 || idx == 0 || idx > s.index
}

func registerStep(state, input, output any) (bool, any) {
	s, in, out := state.(regState), input.(regIn), output.(regOut)
	switch in.kind {
	case history.KindGet:
		if out.found != s.exists {
			return false, s
		}
		if !out.found {
			return true, s
		}
		if out.value != s.value || !sameIndex(s.index, out.index) {
			return false, s
		}
		if s.index == 0 {
			s.index = out.index
		}
		return true, s
	case history.KindPut:
		if out.unknown {
			return true, regState{exists: true, value: in.value}
		}
		return newer(s, out.index), regState{exists: true, value: in.value, index: out.index}
	case history.KindCAS:
		switch {
		case out.unknown:
			// If it took effect, the condition held. (If it did not, it
			// is the same as taking effect after everything else, which
			// its infinite return time allows.)
			if !casHolds(s, in.expect) {
				return true, s
			}
			return true, regState{exists: true, value: in.value}
		case out.refused:
			// The answer names the current index: it must be the key's,
			// and must not be the one expected.
			cur := out.index
			if s.exists != (cur != 0) || s.exists && !sameIndex(s.index, cur) {
				return false, s
			}
			if in.expect != 0 && cur == in.expect || in.expect == 0 && !s.exists {
				return false, s
			}
			if s.index == 0 {
				s.index = cur
			}
			return true, s
		default:
			return casHolds(s, in.expect) && newer(s, out.index), regState{exists: true, value: in.value, index: out.index}
		}
	case history.KindDelete:
		switch {
		case out.unknown:
			return true, regState{}
		case out.refused:
			return !s.exists, s
		default:
			return s.exists, regState{}
		}
	}
	return false, s
}

var registerModel = porcupine.Model{
	Init: func() any { return regState{} },
	Step: registerStep,
	DescribeOperation: func(input, output any) string {
		in, out := input.(regIn), output.(regOut)
		var call string
		switch in.kind {
		case history.KindGet:
			call = "get()"
		case history.KindPut:
			call = fmt.Sprintf("put(%q)", in.value)
		case history.KindCAS:
			call = fmt.Sprintf("cas(@%d, %q)", in.expect, in.value)
		case history.KindDelete:
			call = "delete()"
		}
		switch {
		case out.unknown:
			return call + " -> unknown"
		case out.refused && in.kind == history.KindCAS:
			return fmt.Sprintf("%s -> cas_conflict (current @%d)", call, out.index)
		case out.refused:
			return call + " -> key_not_found"
		case in.kind == history.KindGet && !out.found:
			return call + " -> absent"
		case in.kind == history.KindGet:
			return fmt.Sprintf("%s -> %q@%d", call, out.value, out.index)
		case in.kind == history.KindDelete:
			return call + " -> ok"
		}
		return fmt.Sprintf("%s -> @%d", call, out.index)
	},
	DescribeState: func(state any) string {
		s := state.(regState)
		if !s.exists {
			return "absent"
		}
		if s.index == 0 {
			return fmt.Sprintf("%q@?", s.value)
		}
		return fmt.Sprintf("%q@%d", s.value, s.index)
	},
	DescribeOperationMetadata: func(info any) string { return fmt.Sprintf("op #%v", info) },
}

// explainIllegal describes where the search got stuck: the longest
// linearizable prefix it found, the state after it, and the first ops (by
// return time) that no linearization could place after it (ops of unknown
// outcome are not listed: they need not be placed).
func explainIllegal(ops []history.Op, pops []porcupine.Operation, info porcupine.LinearizationInfo) string {
	parts := info.PartialLinearizationsOperations()
	if len(parts) == 0 {
		return ""
	}
	var longest []porcupine.Operation
	for _, p := range parts[0] {
		if len(p) > len(longest) {
			longest = p
		}
	}
	in := make(map[int]bool)
	var state any = regState{}
	for _, p := range longest {
		in[p.Metadata.(int)] = true
		_, state = registerStep(state, p.Input, p.Output)
	}
	var stuck []history.Op
	for _, p := range pops {
		if i := p.Metadata.(int); !in[i] && !p.Output.(regOut).unknown {
			stuck = append(stuck, opByIndex(ops, i))
		}
	}
	slices.SortStableFunc(stuck, func(a, b history.Op) int { return cmpInt64(a.Return, b.Return) })
	var b strings.Builder
	fmt.Fprintf(&b, "; the longest linearizable prefix has %d ops and leaves the key %s", len(longest), registerModel.DescribeState(state))
	if len(longest) > 0 {
		fmt.Fprintf(&b, " (last: %s)", opByIndex(ops, longest[len(longest)-1].Metadata.(int)))
	}
	for i, op := range stuck {
		if i == 3 {
			fmt.Fprintf(&b, "; and %d more", len(stuck)-3)
			break
		}
		fmt.Fprintf(&b, "; cannot place %s", op)
	}
	return b.String()
}

func opByIndex(ops []history.Op, index int) history.Op {
	for _, op := range ops {
		if op.Index == index {
			return op
		}
	}
	return history.Op{Index: index}
}

// fileSafe turns a key into a file name part.
func fileSafe(key string) string {
	safe := []byte(key)
	for i, c := range safe {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			safe[i] = '_'
		}
	}
	if len(safe) > 100 {
		safe = safe[:100]
	}
	return string(safe)
}
