package api

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// KV is one key, as GET /v1/kv/{key} answers it.
//
// On the wire the value is a JSON string: the bytes themselves when they
// are valid UTF-8, else their standard base64 with "value_encoding":
// "base64". Value holds the bytes either way.
type KV struct {
	Key         string
	Value       []byte
	CreateIndex uint64
	ModifyIndex uint64
	Version     uint64
}

// ValueEncodingBase64 is the value_encoding of a value sent as base64.
const ValueEncodingBase64 = "base64"

// kvWire is the JSON form of KV.
type kvWire struct {
	Key           string `json:"key"`
	Value         string `json:"value"`
	ValueEncoding string `json:"value_encoding,omitempty"`
	CreateIndex   uint64 `json:"create_index"`
	ModifyIndex   uint64 `json:"modify_index"`
	Version       uint64 `json:"version"`
}

// MarshalJSON writes the wire form.
func (kv KV) MarshalJSON() ([]byte, error) {
	w := kvWire{Key: kv.Key, CreateIndex: kv.CreateIndex, ModifyIndex: kv.ModifyIndex, Version: kv.Version}
	if utf8.Valid(kv.Value) {
		w.Value = string(kv.Value)
	} else {
		w.Value, w.ValueEncoding = base64.StdEncoding.EncodeToString(kv.Value), ValueEncodingBase64
	}
	return json.Marshal(w)
}

// UnmarshalJSON reads the wire form, decoding a base64 value.
func (kv *KV) UnmarshalJSON(b []byte) error {
	var w kvWire
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*kv = KV{Key: w.Key, Value: []byte(w.Value), CreateIndex: w.CreateIndex, ModifyIndex: w.ModifyIndex, Version: w.Version}
	switch w.ValueEncoding {
	case "":
	case ValueEncodingBase64:
		v, err := base64.StdEncoding.DecodeString(w.Value)
		if err != nil {
			return fmt.Errorf("api: value of %q: %w", w.Key, err)
		}
		kv.Value = v
	default:
		return fmt.Errorf("api: value of %q: unknown value_encoding %q", w.Key, w.ValueEncoding)
	}
	return nil
}

// KVWriteResult is the body of a successful PUT /v1/kv/{key}.
type KVWriteResult struct {
	Key         string `json:"key"`
	CreateIndex uint64 `json:"create_index"`
	ModifyIndex uint64 `json:"modify_index"`
	Version     uint64 `json:"version"`
	Index       uint64 `json:"index"`
}

// KVDeleteResult is the body of a successful DELETE /v1/kv/{key}.
type KVDeleteResult struct {
	Deleted int    `json:"deleted"`
	Index   uint64 `json:"index"`
	Prev    *KV    `json:"prev,omitempty"`
}
