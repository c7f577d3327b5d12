package httpapi_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/fsm"
	"github.com/coordd/coordd/httpapi"
)

func indexHeader(t *testing.T, r response) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(r.header.Get("X-Coordd-Index"), 10, 64)
	if err != nil {
		t.Fatalf("X-Coordd-Index %q: %v", r.header.Get("X-Coordd-Index"), err)
	}
	return v
}

func TestPutGet(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	ta.putKV(t, "before", "x")

	w1 := ta.putKV(t, "app/config", "hello")
	if w1.Key != "app/config" || w1.CreateIndex != 2 || w1.ModifyIndex != 2 || w1.Version != 1 || w1.Index != 2 {
		t.Fatalf("first put: %+v", w1)
	}
	kv, r := ta.getKV(t, "app/config")
	want := api.KV{Key: "app/config", Value: []byte("hello"), CreateIndex: 2, ModifyIndex: 2, Version: 1}
	if kv.Key != want.Key || string(kv.Value) != string(want.Value) || kv.CreateIndex != want.CreateIndex ||
		kv.ModifyIndex != want.ModifyIndex || kv.Version != want.Version {
		t.Fatalf("get: %+v, want %+v", kv, want)
	}
	if got := indexHeader(t, r); got != 2 {
		t.Errorf("X-Coordd-Index %d, want 2", got)
	}
	if c := r.header.Get("X-Coordd-Consistency"); c != "linearizable" {
		t.Errorf("X-Coordd-Consistency %q", c)
	}
	if s := r.header.Get("X-Coordd-Served-By"); s != "n1" {
		t.Errorf("X-Coordd-Served-By %q", s)
	}
	for _, h := range []string{"X-Coordd-Known-Leader", "X-Coordd-Last-Contact", "X-Coordd-Applied-Index"} {
		if r.header.Get(h) != "" {
			t.Errorf("linearizable read has stale header %s", h)
		}
	}

	w2 := ta.putKV(t, "app/config", "world")
	if w2.CreateIndex != 2 || w2.ModifyIndex != 3 || w2.Version != 2 || w2.Index != 3 {
		t.Fatalf("second put: %+v", w2)
	}
	kv, r = ta.getKV(t, "app/config")
	if string(kv.Value) != "world" || kv.Version != 2 || kv.ModifyIndex != 3 || kv.CreateIndex != 2 || indexHeader(t, r) != 3 {
		t.Fatalf("after overwrite: %+v", kv)
	}

	// An empty value is a value.
	ta.putKV(t, "empty", "")
	if kv, _ := ta.getKV(t, "empty"); string(kv.Value) != "" || kv.Version != 1 {
		t.Fatalf("empty value: %+v", kv)
	}

	// The node saw exactly the puts, as KVPut commands.
	n := ta.node
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.applied) != 4 {
		t.Fatalf("%d commands applied", len(n.applied))
	}
	if c := n.applied[2]; c.Type != fsm.CmdKVPut {
		t.Errorf("command type %v", c.Type)
	}
}

func TestKeysNeedingEscapes(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	for _, key := range []string{"a b", "ü/ñ", "a/b/", "q?x=1", "h#frag", "pct%41", "a/b.c", "...x", "semi;colon", "+plus"} {
		path := (&url.URL{Path: key}).EscapedPath()
		r := ta.do(t, "PUT", "/v1/kv/"+path, "v:"+key)
		var w api.KVWriteResult
		wantJSON(t, r, &w)
		if w.Key != key {
			t.Errorf("put %q stored key %q", key, w.Key)
		}
		kv, _ := ta.getKV(t, path)
		if kv.Key != key || string(kv.Value) != "v:"+key {
			t.Errorf("get %q: %+v", key, kv)
		}
	}
	// An escaped slash is a slash in the key.
	ta.putKV(t, "x%2Fy", "slash")
	if kv, _ := ta.getKV(t, "x/y"); kv.Key != "x/y" || string(kv.Value) != "slash" {
		t.Errorf("escaped slash: %+v", kv)
	}
}

func TestRawAndBinaryValues(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	bin := []byte{0x00, 0xff, 0xfe, '\n', 'a', 0x80, 0x00}
	r := ta.do(t, "PUT", "/v1/kv/bin", string(bin))
	wantJSON(t, r, nil)

	r = ta.do(t, "GET", "/v1/kv/bin?raw", "")
	if r.status != http.StatusOK || !bytes.Equal(r.body, bin) {
		t.Fatalf("raw: %d %q, want %q", r.status, r.body, bin)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/octet-stream" {
		t.Errorf("raw Content-Type %q", ct)
	}
	if indexHeader(t, r) != 1 {
		t.Errorf("raw X-Coordd-Index %q", r.header.Get("X-Coordd-Index"))
	}
	for _, q := range []string{"raw=true", "raw=1", "raw&stale"} {
		if r := ta.do(t, "GET", "/v1/kv/bin?"+q, ""); !bytes.Equal(r.body, bin) {
			t.Errorf("?%s: %q", q, r.body)
		}
	}
	// ?raw=false is the JSON form, base64 because the value is not UTF-8.
	for _, q := range []string{"", "?raw=false", "?raw=0"} {
		var wire struct {
			Value         string `json:"value"`
			ValueEncoding string `json:"value_encoding"`
		}
		if err := json.Unmarshal(ta.do(t, "GET", "/v1/kv/bin"+q, "").body, &wire); err != nil || wire.ValueEncoding != "base64" {
			t.Fatalf("%s: value_encoding %q, %v", q, wire.ValueEncoding, err)
		}
		got, err := base64.StdEncoding.DecodeString(wire.Value)
		if err != nil || !bytes.Equal(got, bin) {
			t.Fatalf("%s: base64 %q decodes to %q, %v", q, wire.Value, got, err)
		}
		if kv, _ := ta.getKV(t, "bin"+q); !bytes.Equal(kv.Value, bin) {
			t.Fatalf("%s: api.KV holds %q, want the bytes", q, kv.Value)
		}
	}
	// A UTF-8 value is a plain string with no value_encoding field.
	ta.putKV(t, "text", "héllo\x00\"<>&")
	r = ta.do(t, "GET", "/v1/kv/text", "")
	if bytes.Contains(r.body, []byte("value_encoding")) {
		t.Errorf("UTF-8 value has value_encoding: %s", r.body)
	}
	kv, _ := ta.getKV(t, "text")
	if string(kv.Value) != "héllo\x00\"<>&" {
		t.Errorf("text: %+v", kv)
	}
	if r := ta.do(t, "GET", "/v1/kv/text?raw", ""); string(r.body) != "héllo\x00\"<>&" {
		t.Errorf("raw text: %q", r.body)
	}
	// Raw of an empty value is an empty 200.
	ta.putKV(t, "empty", "")
	if r := ta.do(t, "GET", "/v1/kv/empty?raw", ""); r.status != 200 || len(r.body) != 0 {
		t.Errorf("raw empty: %d %q", r.status, r.body)
	}
}

func listKV(t *testing.T, ta *testAPI, pathAndQuery string) ([]api.KV, response) {
	t.Helper()
	r := ta.do(t, "GET", "/v1/kv/"+pathAndQuery, "")
	var out []api.KV
	wantJSON(t, r, &out)
	if out == nil {
		t.Fatalf("listing is null, want an array: %s", r.body)
	}
	return out, r
}

func keysOf(kvs []api.KV) []string {
	out := make([]string, 0, len(kvs))
	for _, kv := range kvs {
		out = append(out, kv.Key)
	}
	return out
}

func TestPrefixList(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	for _, k := range []string{"app/b", "zeta", "app/a", "apx", "app/c/d", "ap", "app/"} {
		ta.putKV(t, k, "v-"+k)
	}
	ta.do(t, "PUT", "/v1/kv/app/bin", "\xff")
	list, r := listKV(t, ta, "app/?prefix")
	if got, want := fmt.Sprint(keysOf(list)), "[app/ app/a app/b app/bin app/c/d]"; got != want {
		t.Fatalf("app/ prefix: %s, want %s", got, want)
	}
	if string(list[1].Value) != "v-app/a" || list[1].CreateIndex != 3 || list[1].Version != 1 {
		t.Errorf("entry: %+v", list[1])
	}
	if string(list[3].Value) != "\xff" {
		t.Errorf("binary entry in listing: %+v", list[3])
	}
	if got := indexHeader(t, r); got != 8 {
		t.Errorf("prefix X-Coordd-Index %d, want 8 (highest modify index under it)", got)
	}
	if list, _ := listKV(t, ta, "ap?prefix"); len(list) != 7 {
		t.Errorf("ap prefix: %v", keysOf(list))
	}
	all, r := listKV(t, ta, "?prefix")
	if got, want := fmt.Sprint(keysOf(all)), "[ap app/ app/a app/b app/bin app/c/d apx zeta]"; got != want {
		t.Fatalf("all keys: %s, want %s", got, want)
	}
	if indexHeader(t, r) != 8 {
		t.Errorf("all X-Coordd-Index %s", r.header.Get("X-Coordd-Index"))
	}
	if all, _ := listKV(t, ta, "?prefix=true&stale"); len(all) != 8 {
		t.Errorf("stale listing: %v", keysOf(all))
	}
	// No match is an empty array, not 404.
	if none, _ := listKV(t, ta, "nothing/?prefix"); len(none) != 0 {
		t.Errorf("no match: %v", none)
	}
	// ?prefix=false is a single-key read.
	if kv, _ := ta.getKV(t, "ap?prefix=false"); kv.Key != "ap" {
		t.Errorf("prefix=false: %+v", kv)
	}
}

func TestDelete(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	w := ta.putKV(t, "k", "v1")
	ta.putKV(t, "k2", "v2")

	var d api.KVDeleteResult
	wantJSON(t, ta.do(t, "DELETE", "/v1/kv/k", ""), &d)
	want := api.KV{Key: "k", Value: []byte("v1"), CreateIndex: w.CreateIndex, ModifyIndex: w.ModifyIndex, Version: 1}
	if d.Deleted != 1 || d.Index != 3 || d.Prev == nil || !reflect.DeepEqual(*d.Prev, want) {
		t.Fatalf("delete: %+v prev %+v", d, d.Prev)
	}
	wantError(t, ta.do(t, "GET", "/v1/kv/k", ""), http.StatusNotFound, api.CodeKeyNotFound)
	wantError(t, ta.do(t, "DELETE", "/v1/kv/k", ""), http.StatusNotFound, api.CodeKeyNotFound)
	if kv, _ := ta.getKV(t, "k2"); string(kv.Value) != "v2" {
		t.Errorf("k2 gone: %+v", kv)
	}
	// Deleting a binary value returns it base64.
	ta.do(t, "PUT", "/v1/kv/bin", "\x80")
	r := ta.do(t, "DELETE", "/v1/kv/bin", "")
	if !bytes.Contains(r.body, []byte(`"value":"gA==","value_encoding":"base64"`)) {
		t.Errorf("binary prev: %s", r.body)
	}
	d = api.KVDeleteResult{}
	wantJSON(t, r, &d)
	if d.Prev == nil || string(d.Prev.Value) != "\x80" {
		t.Errorf("binary prev: %+v", d.Prev)
	}
}

func TestDeletePrefix(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	for _, k := range []string{"svc/a", "svc/b", "svc/c/d", "svcx", "other"} {
		ta.putKV(t, k, "v")
	}
	var d api.KVDeleteResult
	wantJSON(t, ta.do(t, "DELETE", "/v1/kv/svc/?prefix", ""), &d)
	if d.Deleted != 3 || d.Index != 6 || d.Prev != nil {
		t.Fatalf("delete prefix: %+v", d)
	}
	all, _ := listKV(t, ta, "?prefix")
	if got := fmt.Sprint(keysOf(all)); got != "[other svcx]" {
		t.Fatalf("left: %s", got)
	}
	// Nothing under the prefix: deleted 0, still 200.
	d = api.KVDeleteResult{}
	wantJSON(t, ta.do(t, "DELETE", "/v1/kv/svc/?prefix", ""), &d)
	if d.Deleted != 0 {
		t.Errorf("second delete prefix: %+v", d)
	}
	// An empty prefix deletes everything.
	d = api.KVDeleteResult{}
	wantJSON(t, ta.do(t, "DELETE", "/v1/kv/?prefix", ""), &d)
	if d.Deleted != 2 {
		t.Errorf("delete all: %+v", d)
	}
	if all, _ := listKV(t, ta, "?prefix"); len(all) != 0 {
		t.Errorf("left after delete all: %v", keysOf(all))
	}
}

func TestCASWrites(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	// Create-only on a missing key succeeds.
	var w api.KVWriteResult
	wantJSON(t, ta.do(t, "PUT", "/v1/kv/lock?cas=0", "a"), &w)
	if w.Version != 1 || w.ModifyIndex != 1 {
		t.Fatalf("create: %+v", w)
	}
	// CAS at the current index succeeds and moves the index.
	var w2 api.KVWriteResult
	wantJSON(t, ta.do(t, "PUT", fmt.Sprintf("/v1/kv/lock?cas=%d", w.ModifyIndex), "b"), &w2)
	if w2.Version != 2 || w2.ModifyIndex != 2 || w2.CreateIndex != 1 {
		t.Fatalf("cas put: %+v", w2)
	}
	// The old index is now stale.
	if got := casIndex(t, ta.do(t, "PUT", fmt.Sprintf("/v1/kv/lock?cas=%d", w.ModifyIndex), "c")); got != 2 {
		t.Fatalf("stale cas: current_index %d", got)
	}
	// DELETE ?cas with the wrong then the right index.
	if got := casIndex(t, ta.do(t, "DELETE", "/v1/kv/lock?cas=1", "")); got != 2 {
		t.Fatalf("stale cas delete: current_index %d", got)
	}
	var d api.KVDeleteResult
	wantJSON(t, ta.do(t, "DELETE", "/v1/kv/lock?cas=2", ""), &d)
	if d.Deleted != 1 || d.Prev == nil || string(d.Prev.Value) != "b" {
		t.Fatalf("cas delete: %+v", d)
	}
	wantError(t, ta.do(t, "GET", "/v1/kv/lock", ""), http.StatusNotFound, api.CodeKeyNotFound)
	// The node received the conditions as the FSM's modes.
	ta.node.mu.Lock()
	defer ta.node.mu.Unlock()
	if len(ta.node.applied) != 5 {
		t.Fatalf("%d commands applied", len(ta.node.applied))
	}
}

func TestConsistencyHeaders(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	ta.putKV(t, "k", "v")
	ta.putKV(t, "k2", "v")
	b0, _ := ta.node.counts()

	_, r := ta.getKV(t, "k")
	if r.header.Get("X-Coordd-Consistency") != "linearizable" {
		t.Errorf("default read: %q", r.header.Get("X-Coordd-Consistency"))
	}
	ta.getKV(t, "k?stale=false")
	listKV(t, ta, "?prefix")
	ta.do(t, "GET", "/v1/kv/missing", "")
	if b, _ := ta.node.counts(); b != b0+4 {
		t.Errorf("linearizable reads made %d barriers, want 4", b-b0)
	}

	ta.node.set(func(n *fakeNode) {
		n.staleness = httpapi.Staleness{KnownLeader: true, LastContact: 1500 * time.Millisecond, CommitIndex: 9}
	})
	for _, q := range []string{"k?stale", "k?stale=true", "k?stale=1", "?prefix&stale"} {
		r := ta.do(t, "GET", "/v1/kv/"+q, "")
		wantJSON(t, r, nil)
		h := r.header
		if h.Get("X-Coordd-Consistency") != "stale" || h.Get("X-Coordd-Known-Leader") != "true" ||
			h.Get("X-Coordd-Last-Contact") != "1500" || h.Get("X-Coordd-Applied-Index") != "2" {
			t.Errorf("?%s headers: %v", q, h)
		}
	}
	r = ta.do(t, "GET", "/v1/kv/missing?stale", "")
	wantError(t, r, http.StatusNotFound, api.CodeKeyNotFound)
	if r.header.Get("X-Coordd-Consistency") != "stale" || r.header.Get("X-Coordd-Applied-Index") != "2" {
		t.Errorf("stale 404 headers: %v", r.header)
	}
	if b, _ := ta.node.counts(); b != b0+4 {
		t.Errorf("stale reads called ReadBarrier (%d calls)", b-b0-4)
	}

	// A follower that never heard from a leader.
	ta.node.set(func(n *fakeNode) {
		n.staleness = httpapi.Staleness{KnownLeader: false, LastContact: -1}
	})
	_, r = ta.getKV(t, "k?stale")
	if r.header.Get("X-Coordd-Known-Leader") != "false" || r.header.Get("X-Coordd-Last-Contact") != "never" {
		t.Errorf("no-contact headers: %v", r.header)
	}
}
