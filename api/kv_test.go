package api_test

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/coordd/coordd/api"
)

func TestKV_ValueIsAStringOrBase64OnTheWireAndBytesInGo(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		value []byte
		wire  string
	}{
		{[]byte("héllo"), `{"key":"k","value":"héllo","create_index":1,"modify_index":2,"version":3}`},
		{[]byte{0xff, 0}, `{"key":"k","value":"/wA=","value_encoding":"base64","create_index":1,"modify_index":2,"version":3}`},
		{nil, `{"key":"k","value":"","create_index":1,"modify_index":2,"version":3}`},
	} {
		kv := api.KV{Key: "k", Value: tc.value, CreateIndex: 1, ModifyIndex: 2, Version: 3}
		b, err := json.Marshal(kv)
		if err != nil || string(b) != tc.wire {
			t.Fatalf("marshal %q: %s, %v; want %s", tc.value, b, err, tc.wire)
		}
		var back api.KV
		if err := json.Unmarshal(b, &back); err != nil || !bytes.Equal(back.Value, tc.value) || back.Key != "k" ||
			back.CreateIndex != 1 || back.ModifyIndex != 2 || back.Version != 3 {
			t.Fatalf("unmarshal %s: %+v, %v", b, back, err)
		}
	}
	for _, bad := range []string{
		`{"key":"k","value":"!!","value_encoding":"base64"}`,
		`{"key":"k","value":"x","value_encoding":"rot13"}`,
	} {
		var kv api.KV
		if err := json.Unmarshal([]byte(bad), &kv); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}
