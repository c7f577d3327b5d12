// Package history records what the clients of a fault-injection test did:
// one Op per operation, with its inputs, its outcome and the interval of real
// time in which it happened, kept in memory and appended to a JSON-lines file
// (one Op per line). The checkers of test/jepsen/check read these histories.
//
// Times are monotonic nanoseconds since the start of the test (Recorder.Now),
// so every op of one test shares one clock. An op happened, if it happened at
// all, at some instant in [Call, Return].
package history

import (
	"fmt"
	"strings"

	"github.com/coordd/coordd/api"
)

// Kind says what an operation was. The table on Op says which fields each
// kind uses.
type Kind string

// Kinds of operations.
const (
	// KV register (linearizable reads only: never record a ?stale read as KindGet).
	KindGet    Kind = "get"
	KindPut    Kind = "put"    // unconditional write
	KindCAS    Kind = "cas"    // PUT ?cas=N: write if the modify index is N (0: if absent)
	KindDelete Kind = "delete" // unconditional delete

	// Leases.
	KindLeaseGrant  Kind = "lease-grant"
	KindLeaseRevoke Kind = "lease-revoke"

	// Locks and the resource they protect (held by the harness).
	KindAcquire       Kind = "acquire"
	KindRelease       Kind = "release"
	KindResourceRead  Kind = "resource-read"
	KindResourceWrite Kind = "resource-write"

	// Elections.
	KindCampaign Kind = "campaign"
	KindResign   Kind = "resign"
	KindProclaim Kind = "proclaim"
	KindObserve  Kind = "observe" // one observation of an election's leader (or of none)
)

// Status is the outcome of an operation as the client knows it.
type Status string

// Statuses.
const (
	// StatusOK: the operation took effect (for a read: it read Out), at
	// some instant in [Call, Return].
	StatusOK Status = "ok"
	// StatusFail: the operation definitely did not take effect: the
	// server said so (409 cas_conflict, 404 key_not_found, 503 no_leader,
	// not_leader, ...; 409 stale_token from a fenced resource). Error
	// holds the code.
	StatusFail Status = "fail"
	// StatusUnknown: the operation may or may not have taken effect, at any
	// instant after Call, even after Return (a timeout, a cut connection,
	// 503 outcome_unknown). Return is when the client gave up.
	StatusUnknown Status = "unknown"
)

// Error codes that change how a failed operation is checked. They are the
// codes of the HTTP API (api.CodeCASConflict, api.CodeKeyNotFound).
const (
	// CodeCASConflict on a failed KindCAS: the condition did not hold,
	// Out.Index is the key's current modify index (0: absent).
	CodeCASConflict = api.CodeCASConflict
	// CodeKeyNotFound on a failed KindDelete: the key did not exist. On a
	// KindGet it is read as a successful read of an absent key.
	CodeKeyNotFound = api.CodeKeyNotFound
)

// Op is one operation of a history. Fields by kind (In: what the client
// sent; Out: what it got back, only meaningful when Status is ok unless
// said otherwise):
//
//	kind            Key        In                          Out
//	get             key        -                           Found, Value, Index (modify index)
//	put             key        Value                       Index (modify index)
//	cas             key        Value, Index (expected;     Index (new modify index); on fail with
//	                           0: create only)             cas_conflict: Index = current_index (0: absent)
//	delete          key        -                           -   (fail with key_not_found: it was absent)
//	lease-grant     -          -                           Lease (id)
//	lease-revoke    -          Lease                       -
//	acquire         lock       Lease                       Token
//	release         lock       Lease, Token                -
//	resource-read   resource   Token (the token the client Seq; Values (the elements read)
//	                           holds, checked or not)
//	resource-write  resource   Token, Value (the one       Seq (fail: refused, Error "stale_token")
//	                           element this write adds)
//	campaign        election   Lease, Value                Leader (true: the candidate leads), Token
//	resign          election   Lease, Token                -
//	proclaim        election   Lease, Token, Value         -
//	observe         election   -                           Leader (false: no leader), Lease, Value, Token
//
// Seq is the resource's own acceptance counter: one counter per resource,
// incremented for every read or write it accepts, so that the checkers know
// the order in which it accepted them exactly.
//
// For an observe op, [Call, Return] must contain an instant at which the
// observed node's state was the one reported, up to the node's staleness:
// for a blocking query, Call is when the request was sent; for an event of a
// stream, Call is when the previous event of that stream was received (or
// when the stream was opened). Process identifies the observer.
type Op struct {
	// Index is the op's position in the history; Recorder.Record sets it.
	Index int `json:"index"`
	// Process is the client (worker, candidate, observer) that ran the op;
	// one process runs one op at a time.
	Process int `json:"process"`
	// Kind is what the op was.
	Kind Kind `json:"kind"`
	// Key is the KV key, lock, election or resource name.
	Key string `json:"key,omitempty"`
	// Node is the node contacted (its id or address), if any.
	Node string `json:"node,omitempty"`
	// Call and Return are monotonic nanoseconds since the start of the test.
	Call   int64 `json:"call"`
	Return int64 `json:"return"`
	// Status is the outcome; Error the error code of a fail or unknown
	// outcome ("cas_conflict", "not_leader", "outcome_unknown", "timeout").
	Status Status `json:"status"`
	Error  string `json:"error,omitempty"`
	// In is what the client sent, Out what it got back.
	In  Values `json:"in,omitzero"`
	Out Values `json:"out,omitzero"`
}

// Values are the inputs or outputs of an op; the table on Op says which
// fields each kind uses. Zero fields are left out of the JSON, so a nil and
// an empty Values list read back the same (nil).
type Values struct {
	Value  string   `json:"value,omitempty"`
	Values []string `json:"values,omitempty"`
	Index  uint64   `json:"index,omitempty"`
	Found  bool     `json:"found,omitempty"`
	Leader bool     `json:"leader,omitempty"`
	Lease  uint64   `json:"lease,omitempty"`
	Token  uint64   `json:"token,omitempty"`
	Seq    uint64   `json:"seq,omitempty"`
}

// FinalState is what the harness read at the end of a test, after the faults
// stopped and the cluster settled, with linearizable reads. A nil map or
// slice means "not read" (the checkers then skip what needs it); an empty one
// means "read, and empty".
type FinalState struct {
	// KV maps each key read to its value and modify index.
	KV map[string]KV `json:"kv"`
	// Leases are the ids of the leases that exist.
	Leases []uint64 `json:"leases"`
	// Elections maps an election or lock name to its holder; a name without
	// a holder is absent (or has Token 0).
	Elections map[string]Holder `json:"elections"`
	// Resources maps a fenced resource's name to the elements it holds, in
	// its order.
	Resources map[string][]string `json:"resources"`
}

// KV is a key's state in a FinalState.
type KV struct {
	Value string `json:"value"`
	Index uint64 `json:"index,omitempty"` // modify index; 0: not known
}

// Holder is the holder of an election or lock: its lease, value and token.
type Holder struct {
	Lease uint64 `json:"lease"`
	Value string `json:"value,omitempty"`
	Token uint64 `json:"token"`
}

// Validate reports an op that no checker can use: an unknown kind or status,
// or a Return before the Call of an op whose outcome is known.
func (o Op) Validate() error {
	switch o.Kind {
	case KindGet, KindPut, KindCAS, KindDelete, KindLeaseGrant, KindLeaseRevoke,
		KindAcquire, KindRelease, KindResourceRead, KindResourceWrite,
		KindCampaign, KindResign, KindProclaim, KindObserve:
	default:
		return fmt.Errorf("history: op %d: unknown kind %q", o.Index, o.Kind)
	}
	switch o.Status {
	case StatusOK, StatusFail:
		if o.Return < o.Call {
			return fmt.Errorf("history: op %d: returns at %d before its call at %d", o.Index, o.Return, o.Call)
		}
	case StatusUnknown:
	default:
		return fmt.Errorf("history: op %d: unknown status %q", o.Index, o.Status)
	}
	return nil
}

// String describes the op on one line, for anomaly reports:
//
//	#12 p3 cas "k1" {value=v7 index=5} -> ok {index=9} [10.201ms..12.034ms] via n2
func (o Op) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "#%d p%d %s", o.Index, o.Process, o.Kind)
	if o.Key != "" {
		fmt.Fprintf(&b, " %q", o.Key)
	}
	if in := o.In.String(); in != "" {
		b.WriteString(" " + in)
	}
	b.WriteString(" -> " + string(o.Status))
	if o.Error != "" {
		b.WriteString(" " + o.Error)
	}
	if out := o.Out.String(); out != "" {
		b.WriteString(" " + out)
	}
	fmt.Fprintf(&b, " [%s..%s]", FormatTime(o.Call), FormatTime(o.Return))
	if o.Node != "" {
		b.WriteString(" via " + o.Node)
	}
	return b.String()
}

// String lists the fields that are set, as {name=value ...}, or "" if none is.
func (v Values) String() string {
	var parts []string
	if v.Found {
		parts = append(parts, "found")
	}
	if v.Leader {
		parts = append(parts, "leader")
	}
	if v.Value != "" {
		parts = append(parts, fmt.Sprintf("value=%q", v.Value))
	}
	if v.Values != nil {
		parts = append(parts, fmt.Sprintf("values=%q", v.Values))
	}
	for _, f := range []struct {
		name string
		v    uint64
	}{{"index", v.Index}, {"lease", v.Lease}, {"token", v.Token}, {"seq", v.Seq}} {
		if f.v != 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", f.name, f.v))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "{" + strings.Join(parts, " ") + "}"
}

// FormatTime formats nanoseconds since the start of the test as
// milliseconds with three decimals: "12.034ms".
func FormatTime(ns int64) string {
	sign := ""
	if ns < 0 {
		sign, ns = "-", -ns
	}
	return fmt.Sprintf("%s%d.%03dms", sign, ns/1e6, ns/1e3%1e3)
}
