package api

import (
	"encoding/base64"
	"fmt"
	"unicode/utf8"
)

// TxnRequest is the body of POST /v1/txn: if every compare in If holds,
// the Then ops run, else the Else ops; either way in one Raft entry, in
// order, each op seeing the effect of the ones before it.
type TxnRequest struct {
	If   []TxnCompare `json:"if,omitempty"`
	Then []TxnOp      `json:"then,omitempty"`
	Else []TxnOp      `json:"else,omitempty"`
}

// Compare targets (TxnCompare.Target).
const (
	TargetExists      = "exists"
	TargetAbsent      = "absent"
	TargetModifyIndex = "modify_index"
	TargetCreateIndex = "create_index"
	TargetVersion     = "version"
	TargetValue       = "value"
	TargetLeaseAlive  = "lease_alive"
	TargetFence       = "fence"
)

// Compare operators (TxnCompare.Op).
const (
	OpEqual    = "="
	OpNotEqual = "!="
	OpLess     = "<"
	OpGreater  = ">"
)

// Op kinds (TxnOp.Op).
const (
	TxnPut          = "put"
	TxnDelete       = "delete"
	TxnDeletePrefix = "delete_prefix"
	TxnGet          = "get"
)

// Fence names a lock or election and a fencing token of its holder.
type Fence struct {
	Name  string `json:"name"`
	Token uint64 `json:"token"`
}

// TxnCompare is one condition. Target says what is compared:
//
//	{"target":"exists","key":"k"}             the key exists
//	{"target":"absent","key":"k"}             it does not
//	{"target":"version","key":"k","op":"=","number":3}
//	                                          also modify_index, create_index;
//	                                          op = != < >; a missing key is 0
//	{"target":"value","key":"k","op":"=","value":"v"}
//	                                          op = or !=; false for a missing key
//	{"target":"lease_alive","lease":12}       the lease exists
//	{"fence":{"name":"db","token":17}}        17 is a current holder's token
//
// A compare with "fence" or "lease" may leave Target out.
type TxnCompare struct {
	Target string `json:"target,omitempty"`
	Key    string `json:"key,omitempty"`
	Op     string `json:"op,omitempty"`
	Number uint64 `json:"number,omitempty"`
	// Value is the value of a value compare; on the wire a string, base64
	// with "value_encoding":"base64" when not UTF-8.
	Value         Bytes  `json:"value,omitempty"`
	ValueEncoding string `json:"value_encoding,omitempty"`
	Lease         uint64 `json:"lease,omitempty"`
	Fence         *Fence `json:"fence,omitempty"`
}

// TxnOp is one operation: put (Value, optional Lease), delete, delete_prefix
// (Key is the prefix; "" is every key) or get.
type TxnOp struct {
	Op            string `json:"op"`
	Key           string `json:"key"`
	Value         Bytes  `json:"value,omitempty"`
	ValueEncoding string `json:"value_encoding,omitempty"`
	Lease         uint64 `json:"lease,omitempty"`
}

// TxnResponse is the answer of POST /v1/txn (200 whichever branch ran).
type TxnResponse struct {
	// Succeeded is true when every compare held and Then ran.
	Succeeded bool `json:"succeeded"`
	// Branch is "then" or "else".
	Branch string `json:"branch"`
	// Failed is the index of the first compare that did not hold.
	Failed *int `json:"failed,omitempty"`
	// Current is what that compare found: the key's index or version, or
	// the newest current token of a fence's name (0: nobody holds it).
	Current *uint64 `json:"current,omitempty"`
	// Results has one entry per op of the branch that ran.
	Results []TxnOpResult `json:"results"`
	// Index is the Raft index of the entry.
	Index uint64 `json:"index"`
}

// TxnOpResult is what one op did: a put's new indexes and version, a get's
// key (KV nil: absent), a delete's count (and, for one key, Prev).
type TxnOpResult struct {
	Op          string `json:"op"`
	Key         string `json:"key"`
	CreateIndex uint64 `json:"create_index,omitempty"`
	ModifyIndex uint64 `json:"modify_index,omitempty"`
	Version     uint64 `json:"version,omitempty"`
	KV          *KV    `json:"kv,omitempty"`
	Deleted     int    `json:"deleted,omitempty"`
	Prev        *KV    `json:"prev,omitempty"`
}

// Bytes is a value as TxnCompare and TxnOp carry it: a JSON string, which
// Decode turns into bytes according to the value_encoding beside it.
type Bytes string

// EncodeValue returns the wire form of b and its value_encoding ("" or
// "base64").
func EncodeValue(b []byte) (Bytes, string) {
	if utf8.Valid(b) {
		return Bytes(b), ""
	}
	return Bytes(base64.StdEncoding.EncodeToString(b)), ValueEncodingBase64
}

// DecodeValue returns the bytes of a wire value with its encoding.
func DecodeValue(v Bytes, encoding string) ([]byte, error) {
	switch encoding {
	case "":
		return []byte(v), nil
	case ValueEncodingBase64:
		b, err := base64.StdEncoding.DecodeString(string(v))
		if err != nil {
			return nil, fmt.Errorf("api: value: %w", err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("api: unknown value_encoding %q (want \"\" or %q)", encoding, ValueEncodingBase64)
}

// FenceQuery is the query parameter of a fenced write:
// PUT|DELETE /v1/kv/{key}?fence=NAME:TOKEN.
const FenceQuery = "fence"
