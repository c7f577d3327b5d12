package httpapi_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/fsm"
	"github.com/coordd/coordd/httpapi"
)

func (ta *testAPI) txn(t testing.TB, body string, hdr ...string) api.TxnResponse {
	t.Helper()
	var out api.TxnResponse
	wantJSON(t, ta.do(t, "POST", "/v1/txn", body, hdr...), &out)
	return out
}

// lockHeld makes lease 2 hold lock name on the fake node and returns its
// token.
func lockHeld(t *testing.T, ta *testAPI, name string) (lease, token uint64) {
	t.Helper()
	l := ta.node.applyLocal(fsmCmd(fsm.LeaseGrant{TTL: 60_000}))
	c := ta.node.applyLocal(fsmCmd(fsm.Campaign{Kind: fsm.KindLock, Name: name, Lease: l.Lease.ID, Limit: 1}))
	if c.Err != nil || !c.Campaign.Holder {
		t.Fatalf("lock %s: %+v", name, c)
	}
	return l.Lease.ID, c.Campaign.Token
}

func TestTxn_ThenAndElseAnswerEveryOp(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	w := ta.putKV(t, "cfg", "v1") // index 1
	ta.putKV(t, "epoch", "1")

	body := fmt.Sprintf(`{"if":[{"target":"modify_index","key":"cfg","op":"=","number":%d},{"target":"exists","key":"epoch"}],
		"then":[{"op":"put","key":"cfg","value":"v2"},{"op":"put","key":"epoch","value":"2"},{"op":"get","key":"cfg"},{"op":"delete","key":"epoch"},{"op":"get","key":"nope"}],
		"else":[{"op":"get","key":"cfg"}]}`, w.ModifyIndex)
	res := ta.txn(t, body)
	if !res.Succeeded || res.Branch != "then" || res.Failed != nil || res.Index != 3 || len(res.Results) != 5 {
		t.Fatalf("answer %+v", res)
	}
	r := res.Results
	if r[0].Op != "put" || r[0].Key != "cfg" || r[0].ModifyIndex != 3 || r[0].Version != 2 || r[0].CreateIndex != 1 {
		t.Fatalf("put result %+v", r[0])
	}
	if r[2].KV == nil || string(r[2].KV.Value) != "v2" {
		t.Fatalf("get after put %+v", r[2])
	}
	if r[3].Deleted != 1 || r[3].Prev == nil || string(r[3].Prev.Value) != "2" {
		t.Fatalf("delete result %+v", r[3])
	}
	if r[4].Op != "get" || r[4].KV != nil {
		t.Fatalf("get of a missing key %+v", r[4])
	}

	// The same compare again fails: the else branch runs and the answer
	// says which compare failed and what it found.
	res = ta.txn(t, body)
	if res.Succeeded || res.Branch != "else" || res.Failed == nil || *res.Failed != 0 || *res.Current != 3 {
		t.Fatalf("answer %+v", res)
	}
	if len(res.Results) != 1 || string(res.Results[0].KV.Value) != "v2" {
		t.Fatalf("else results %+v", res.Results)
	}
}

func TestTxn_BadRequestsAreClearErrors(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", &httpapi.Options{MaxValueBytes: 10})
	many := make([]string, fsm.MaxTxnOps+1)
	for i := range many {
		many[i] = `{"op":"get","key":"k"}`
	}
	cases := []struct {
		body   string
		status int
		code   string
		msg    string
	}{
		{``, 400, api.CodeBadRequest, "JSON object"},
		{`{"then":[{"op":"put","key":"a"}],"extra":1}`, 400, api.CodeBadRequest, "unknown field"},
		{`{}]`, 400, api.CodeBadRequest, "data after the JSON object"}, // found by FuzzTxnRequest: was 200
		{`{} }`, 400, api.CodeBadRequest, "data after the JSON object"},
		{`{"if":[{"key":"a"}]}`, 400, api.CodeBadRequest, `if[0]: compare needs a "target"`},
		{`{"if":[{"target":"colour","key":"a"}]}`, 400, api.CodeBadRequest, "unknown compare target"},
		{`{"if":[{"target":"version","key":"a","op":"~"}]}`, 400, api.CodeBadRequest, "unknown operator"},
		{`{"if":[{"target":"version","key":"a"}]}`, 400, api.CodeBadRequest, "if[0]"},
		{`{"if":[{"target":"exists"}]}`, 400, api.CodeBadRequest, "key must not be empty"},
		{`{"if":[{"fence":{"name":"l"}}]}`, 400, api.CodeBadRequest, "token"},
		{`{"if":[{"fence":{"name":"l","token":3},"key":"x"}]}`, 400, api.CodeBadRequest, "nothing else"},
		{`{"if":[{"target":"lease_alive"}]}`, 400, api.CodeBadRequest, "lease_alive"},
		{`{"if":[{"target":"value","key":"a","value":"%%","value_encoding":"base64"}]}`, 400, api.CodeBadRequest, "value"},
		{`{"then":[{"op":"rename","key":"a"}]}`, 400, api.CodeBadRequest, "then[0]: unknown op"},
		{`{"else":[{"op":"get","key":"a","value":"x"}]}`, 400, api.CodeBadRequest, "else[0]"},
		{`{"then":[{"op":"put","key":""}]}`, 400, api.CodeBadRequest, "key must not be empty"},
		{`{"then":[{"op":"put","key":"a","value":"01234567890"}]}`, 413, api.CodeTooLarge, "then[0]: value is 11 bytes"},
		{`{"then":[{"op":"put","key":"` + strings.Repeat("k", httpapi.MaxKeyBytes+1) + `"}]}`, 413, api.CodeTooLarge, "key"},
		{`{"then":[` + strings.Join(many, ",") + `]}`, 413, api.CodeTooLarge, "129 compares and ops"},
	}
	for i, c := range cases {
		r := ta.do(t, "POST", "/v1/txn", c.body)
		d := wantError(t, r, c.status, c.code)
		if !strings.Contains(d.Message, c.msg) {
			t.Errorf("case %d: message %q does not say %q", i, d.Message, c.msg)
		}
	}
	wantError(t, ta.do(t, "GET", "/v1/txn", ""), http.StatusMethodNotAllowed, api.CodeMethod)
	wantError(t, ta.do(t, "POST", "/v1/txn?x=1", `{}`), http.StatusBadRequest, api.CodeBadRequest)
	if _, applies := ta.node.counts(); applies != 0 {
		t.Fatalf("%d commands proposed for bad requests", applies)
	}
}

func TestTxn_TooManyBytesIs413(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", &httpapi.Options{MaxRequestBytes: 4 << 20, MaxValueBytes: 512 << 10})
	v := strings.Repeat("x", 400<<10)
	body := fmt.Sprintf(`{"then":[{"op":"put","key":"a","value":%q},{"op":"put","key":"b","value":%q},{"op":"put","key":"c","value":%q}]}`, v, v, v)
	d := wantError(t, ta.do(t, "POST", "/v1/txn", body), http.StatusRequestEntityTooLarge, api.CodeTooLarge)
	if !strings.Contains(d.Message, "keys and values") {
		t.Fatalf("message %q", d.Message)
	}
}

func TestTxn_LeasesAndFences(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	lease, token := lockHeld(t, ta, "db-primary")
	body := fmt.Sprintf(`{"if":[{"fence":{"name":"db-primary","token":%d}},{"target":"lease_alive","lease":%d}],
		"then":[{"op":"put","key":"owned","value":"x","lease":%d}]}`, token, lease, lease)
	if res := ta.txn(t, body); !res.Succeeded {
		t.Fatalf("holder's fenced txn: %+v", res)
	}
	res := ta.txn(t, fmt.Sprintf(`{"if":[{"fence":{"name":"db-primary","token":%d}}],"then":[{"op":"put","key":"owned","value":"y"}]}`, token-1))
	if res.Succeeded || *res.Current != token {
		t.Fatalf("stale fence: %+v", res)
	}
	// A put attached to a lease that does not exist fails the whole
	// transaction: 404 lease_not_found, nothing written.
	r := ta.do(t, "POST", "/v1/txn", `{"then":[{"op":"put","key":"owned","value":"z"},{"op":"put","key":"k","lease":999}]}`)
	wantError(t, r, http.StatusNotFound, api.CodeLeaseNotFound)
	if kv, _ := ta.getKV(t, "owned"); string(kv.Value) != "x" {
		t.Fatalf("owned = %q after a failed transaction", kv.Value)
	}
}

func TestTxn_IdempotencyKeyReplaysTheAnswer(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	body := `{"if":[{"target":"absent","key":"once"}],"then":[{"op":"put","key":"once","value":"1"}]}`
	r1 := ta.do(t, "POST", "/v1/txn", body, "Idempotency-Key", "txn-1")
	r2 := ta.do(t, "POST", "/v1/txn", body, "Idempotency-Key", "txn-1")
	var a1, a2 api.TxnResponse
	wantJSON(t, r1, &a1)
	wantJSON(t, r2, &a2)
	if !a1.Succeeded || !a2.Succeeded || a1.Index != a2.Index || r2.header.Get(api.HeaderReplayed) != "true" {
		t.Fatalf("first %+v, retry %+v (replayed %q): want the first answer again", a1, a2, r2.header.Get(api.HeaderReplayed))
	}
	wantError(t, ta.do(t, "POST", "/v1/txn", `{"then":[{"op":"put","key":"other"}]}`, "Idempotency-Key", "txn-1"),
		http.StatusUnprocessableEntity, api.CodeIdempotencyReused)
}

func TestTxn_ValuesMayBeBinary(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	v, enc := api.EncodeValue([]byte{0xff, 0x00, 0x01})
	b, _ := json.Marshal(api.TxnRequest{Then: []api.TxnOp{{Op: api.TxnPut, Key: "bin", Value: v, ValueEncoding: enc}},
		Else: nil})
	ta.txn(t, string(b))
	b, _ = json.Marshal(api.TxnRequest{If: []api.TxnCompare{{Target: api.TargetValue, Key: "bin", Op: "=", Value: v, ValueEncoding: enc}},
		Then: []api.TxnOp{{Op: api.TxnGet, Key: "bin"}}})
	res := ta.txn(t, string(b))
	if !res.Succeeded || string(res.Results[0].KV.Value) != "\xff\x00\x01" {
		t.Fatalf("%+v", res)
	}
}

func TestFencedKV_StaleTokenIs409WithTheCurrentToken(t *testing.T) {
	t.Parallel()
	ta := newTestAPI(t, "n1", nil)
	_, token := lockHeld(t, ta, "db")
	var w api.KVWriteResult
	wantJSON(t, ta.do(t, "PUT", fmt.Sprintf("/v1/kv/db/cfg?fence=db:%d", token), "v1"), &w)
	if w.Key != "db/cfg" || w.Version != 1 {
		t.Fatalf("fenced put %+v", w)
	}
	d := wantError(t, ta.do(t, "PUT", fmt.Sprintf("/v1/kv/db/cfg?fence=db:%d", token-1), "v2"), http.StatusConflict, api.CodeStaleToken)
	if d.CurrentToken == nil || *d.CurrentToken != token {
		t.Fatalf("stale_token without the current token: %+v", d)
	}
	d = wantError(t, ta.do(t, "DELETE", "/v1/kv/db/cfg?fence=nobody:3", ""), http.StatusConflict, api.CodeStaleToken)
	if d.CurrentToken == nil || *d.CurrentToken != 0 {
		t.Fatalf("a name nobody holds: %+v", d)
	}
	// The write's own conditions keep their answers.
	wantError(t, ta.do(t, "PUT", fmt.Sprintf("/v1/kv/db/cfg?fence=db:%d&cas=0", token), "v2"), http.StatusConflict, api.CodeCASConflict)
	wantError(t, ta.do(t, "DELETE", fmt.Sprintf("/v1/kv/db/none?fence=db:%d", token), ""), http.StatusNotFound, api.CodeKeyNotFound)
	// As without a fence: a cas delete of a missing key is a conflict
	// (current 0), a stale index one with the current index.
	for _, q := range []string{"/v1/kv/db/none?cas=0", "/v1/kv/db/none?cas=3", "/v1/kv/db/cfg?cas=1"} {
		plain := wantError(t, ta.do(t, "DELETE", q, ""), http.StatusConflict, api.CodeCASConflict)
		fenced := wantError(t, ta.do(t, "DELETE", fmt.Sprintf("%s&fence=db:%d", q, token), ""), http.StatusConflict, api.CodeCASConflict)
		if *plain.CurrentIndex != *fenced.CurrentIndex {
			t.Errorf("DELETE %s: current index %d unfenced, %d fenced", q, *plain.CurrentIndex, *fenced.CurrentIndex)
		}
	}
	var del api.KVDeleteResult
	wantJSON(t, ta.do(t, "DELETE", fmt.Sprintf("/v1/kv/db/cfg?fence=db:%d&cas=%d", token, w.ModifyIndex), ""), &del)
	if del.Deleted != 1 || del.Prev == nil || string(del.Prev.Value) != "v1" {
		t.Fatalf("fenced delete %+v", del)
	}
	for _, q := range []string{"fence=db", "fence=:3", "fence=db:0", "fence=db:x", "fence=db:3&fence=db:4"} {
		wantError(t, ta.do(t, "PUT", "/v1/kv/db/cfg?"+q, "v"), http.StatusBadRequest, api.CodeBadRequest)
	}
	// A name with colons: the token is after the last one.
	_, t2 := lockHeld(t, ta, "svc:a")
	wantJSON(t, ta.do(t, "PUT", fmt.Sprintf("/v1/kv/k?fence=svc:a:%d", t2), "v"), nil)
}

func TestTxn_ACLIsCheckedPerOp(t *testing.T) {
	ta, mgmt := aclAPI(t)
	app := createToken(t, ta, mgmt, `{"rules":[{"resource":"kv","prefix":"app/","access":"write"},{"resource":"kv","prefix":"shared/","access":"read"},{"resource":"lock","prefix":"app-","access":"read"}]}`)
	h := bearerHdr(app.SecretID)
	ok := `{"if":[{"target":"exists","key":"shared/x"}],"then":[{"op":"put","key":"app/a","value":"1"}],"else":[{"op":"get","key":"shared/x"}]}`
	if r := ta.do(t, "POST", "/v1/txn", ok, h...); r.status != http.StatusOK {
		t.Fatalf("allowed txn: %d %s", r.status, r.body)
	}
	for body, where := range map[string]string{
		`{"then":[{"op":"put","key":"app/a"},{"op":"put","key":"shared/x"}]}`: "then[1]",
		`{"else":[{"op":"get","key":"other"}]}`:                               "else[0]",
		`{"if":[{"target":"exists","key":"secret"}]}`:                         "if[0]",
		`{"if":[{"fence":{"name":"db","token":3}}]}`:                          "if[0]",
		`{"if":[{"target":"lease_alive","lease":3}]}`:                         "if[0]",
		`{"then":[{"op":"delete_prefix","key":"app"}]}`:                       "then[0]",
	} {
		d := wantError(t, ta.do(t, "POST", "/v1/txn", body, h...), http.StatusForbidden, api.CodePermissionDenied)
		if !strings.HasPrefix(d.Message, where+":") {
			t.Errorf("%s: message %q does not start with %s", body, d.Message, where)
		}
	}
	wantError(t, ta.do(t, "POST", "/v1/txn", ok), http.StatusUnauthorized, api.CodeUnauthenticated)
	// A fenced write needs read access to the fence's name too.
	wantError(t, ta.do(t, "PUT", "/v1/kv/app/b?fence=db:3", "v", h...), http.StatusForbidden, api.CodePermissionDenied)
	wantError(t, ta.do(t, "PUT", "/v1/kv/app/b?fence=app-lock:3", "v", h...), http.StatusConflict, api.CodeStaleToken)
}

func TestParseTxn_AgreesWithTheFSM(t *testing.T) {
	t.Parallel()
	p, err := httpapi.ParseTxn(api.TxnRequest{If: []api.TxnCompare{{Lease: 5}, {Fence: &api.Fence{Name: "n", Token: 2}}, {Target: "value", Key: "k", Value: "v"}}}, 10)
	if err != nil {
		t.Fatal(err)
	}
	want := []fsm.TxnCompare{{Target: fsm.CompareLeaseAlive, Number: 5}, {Target: fsm.CompareFence, Key: "n", Number: 2},
		{Target: fsm.CompareValue, Key: "k", Op: fsm.OpEqual, Value: []byte("v")}}
	if fmt.Sprint(p.Compares) != fmt.Sprint(want) {
		t.Fatalf("compares %+v, want %+v", p.Compares, want)
	}
	if _, err := fsm.NewCommand(p); err != nil {
		t.Fatal(err)
	}
	_, err = httpapi.ParseTxn(api.TxnRequest{If: []api.TxnCompare{{Target: "version", Key: "k"}}}, 10)
	if err == nil || errors.Is(err, fsm.ErrInvalid) || !strings.Contains(err.Error(), "operator") {
		t.Fatalf("error %v: want a bad request that names the operator", err)
	}
}

// FuzzTxnRequest posts arbitrary bodies to /v1/txn. Whatever the body, the
// answer is 200 with a transaction result or a well-formed JSON error with
// a 4xx status, never a panic or a 5xx; a 200 answers only what ParseTxn
// accepts, and what ParseTxn accepts validates in the FSM.
func FuzzTxnRequest(f *testing.F) {
	for _, s := range []string{
		`{}`,
		`{"if":[{"target":"modify_index","key":"a","op":"<","number":3},{"fence":{"name":"l","token":2}},{"lease":2}],"then":[{"op":"put","key":"a","value":"x","lease":2}],"else":[{"op":"get","key":"a"}]}`,
		`{"if":[{"target":"value","key":"a","op":"!=","value":"/w==","value_encoding":"base64"}],"then":[{"op":"delete_prefix","key":""},{"op":"delete","key":"a"}]}`,
		`{"then":[{"op":"put","key":"a\u0000b"}]}`,
		`{"if":[{"target":"absent","key":"a"}],"then":[{"op":"put","key":"a","lease":99}]}`,
		`[]`, `null`, `{"if":null}`,
	} {
		f.Add(s)
	}
	ta := newTestAPI(f, "n1", &httpapi.Options{MaxValueBytes: 64, RateLimit: -1})
	ta.node.applyLocal(fsmCmd(fsm.LeaseGrant{TTL: 60_000}))
	ta.node.applyLocal(fsmCmd(fsm.Campaign{Kind: fsm.KindLock, Name: "l", Lease: 1, Limit: 1}))
	f.Fuzz(func(t *testing.T, body string) {
		rec := httptest.NewRecorder()
		ta.api.ServeHTTP(rec, httptest.NewRequest("POST", "/v1/txn", strings.NewReader(body)))
		var req api.TxnRequest
		parsed := json.Unmarshal([]byte(body), &req) == nil
		var perr error = errors.New("not JSON")
		if parsed {
			var p fsm.Txn
			if p, perr = httpapi.ParseTxn(req, 64); perr == nil {
				if _, err := fsm.NewCommand(p); err != nil {
					t.Fatalf("ParseTxn accepted %s, the FSM refuses it: %v", body, err)
				}
			}
		}
		switch {
		case rec.Code == http.StatusOK:
			var res api.TxnResponse
			if err := decodeStrict(rec.Body.Bytes(), &res); err != nil || res.Branch == "" {
				t.Fatalf("200 with %s: %v", rec.Body, err)
			}
			if perr != nil {
				t.Fatalf("200 for %s, which ParseTxn refuses: %v", body, perr)
			}
		case rec.Code >= 400 && rec.Code < 500:
			if _, problem := checkErrorShape(rec.Code, rec.Header(), rec.Body.Bytes()); problem != "" {
				t.Fatalf("%d for %s: %s", rec.Code, body, problem)
			}
		default:
			t.Fatalf("status %d for %s: %s", rec.Code, body, rec.Body)
		}
	})
}
