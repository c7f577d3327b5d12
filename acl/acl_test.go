package acl

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func TestAllowed_LongestPrefixDecides(t *testing.T) {
	p := Policy{Rules: []Rule{
		{Resource: KV, Prefix: "", Access: Read},
		{Resource: KV, Prefix: "app/", Access: Write},
		{Resource: KV, Prefix: "app/secret/", Access: Deny},
		{Resource: Lock, Prefix: "jobs/", Access: Write},
	}}
	cases := []struct {
		res  Resource
		name string
		want Access
		ok   bool
	}{
		{KV, "x", Read, true},
		{KV, "x", Write, false},
		{KV, "app/a", Write, true},
		{KV, "app/a", Read, true},
		{KV, "app/secret/k", Read, false},
		{KV, "app/secre", Write, true},
		{Lock, "jobs/1", Write, true},
		{Lock, "job", Read, false},
		{Election, "jobs/1", Read, false},
		{Lease, "", Read, false},
	}
	for _, c := range cases {
		if got := p.Allowed(c.res, c.name, c.want); got != c.ok {
			t.Errorf("Allowed(%s, %q, %s) = %v, want %v", c.res, c.name, c.want, got, c.ok)
		}
	}
	if (Policy{}).Allowed(KV, "", Read) {
		t.Error("an empty policy allowed a read")
	}
	if !(Policy{Management: true}).Allowed(Operator, "", Write) {
		t.Error("management was refused")
	}
}

func TestAllowedPrefix_ChecksRulesUnderThePrefix(t *testing.T) {
	p := Policy{Rules: []Rule{
		{Resource: KV, Prefix: "", Access: Read},
		{Resource: KV, Prefix: "app/secret/", Access: Deny},
		{Resource: KV, Prefix: "app/rw/", Access: Write},
	}}
	if p.AllowedPrefix(KV, "app/", Read) {
		t.Error("listing app/ was allowed although app/secret/ is denied")
	}
	if !p.AllowedPrefix(KV, "app/rw/", Read) || !p.AllowedPrefix(KV, "app/rw/x", Write) {
		t.Error("listing app/rw/ was refused")
	}
	if !p.AllowedPrefix(KV, "other/", Read) {
		t.Error("listing other/ was refused")
	}
	if p.AllowedPrefix(KV, "", Write) {
		t.Error("writing everything was allowed")
	}
}

func TestValidate(t *testing.T) {
	good := []Rule{{Resource: KV, Prefix: "a/", Access: Write}, {Resource: Lease, Access: Write}, {Resource: Operator, Access: Read}}
	if err := Validate(good); err != nil {
		t.Fatal(err)
	}
	bad := map[string][]Rule{
		"unknown resource":   {{Resource: "disk", Access: Read}},
		"prefix on operator": {{Resource: Operator, Prefix: "x", Access: Read}},
		"duplicate":          {{Resource: KV, Prefix: "a", Access: Read}, {Resource: KV, Prefix: "a", Access: Write}},
		"access":             {{Resource: KV, Access: 7}},
		"long prefix":        {{Resource: KV, Prefix: strings.Repeat("x", MaxPrefixBytes+1), Access: Read}},
		"bad utf8":           {{Resource: KV, Prefix: "\xff", Access: Read}},
	}
	for name, rules := range bad {
		if err := Validate(rules); !errors.Is(err, ErrInvalidRule) {
			t.Errorf("%s: Validate = %v, want ErrInvalidRule", name, err)
		}
	}
	if err := Validate(make([]Rule, MaxRules+1)); !errors.Is(err, ErrInvalidRule) {
		t.Errorf("too many rules: %v", err)
	}
}

func TestAccessJSON(t *testing.T) {
	var r Rule
	if err := json.Unmarshal([]byte(`{"resource":"kv","prefix":"a","access":"write"}`), &r); err != nil {
		t.Fatal(err)
	}
	if r != (Rule{Resource: KV, Prefix: "a", Access: Write}) {
		t.Fatalf("decoded %+v", r)
	}
	if err := json.Unmarshal([]byte(`{"access":"admin"}`), &r); !errors.Is(err, ErrInvalidRule) {
		t.Fatalf("access admin: %v", err)
	}
	b, _ := json.Marshal(Rule{Resource: Lock, Access: Read})
	if string(b) != `{"resource":"lock","prefix":"","access":"read"}` {
		t.Fatalf("encoded %s", b)
	}
}

func TestSecrets(t *testing.T) {
	s, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckSecret(s); err != nil {
		t.Fatalf("generated secret %q rejected: %v", s, err)
	}
	s2, _ := NewSecret()
	if s == s2 {
		t.Fatal("two secrets are equal")
	}
	h1, h2 := HashSecret(s), HashSecret(s)
	if !SameHash(h1[:], h2[:]) {
		t.Fatal("hashes of one secret differ")
	}
	h3 := HashSecret(s2)
	if SameHash(h1[:], h3[:]) {
		t.Fatal("hashes of two secrets are equal")
	}
	for _, bad := range []string{"short", strings.Repeat("x", MaxSecretBytes+1), "has a space in it ok", "tab\tinside-the-secret"} {
		if err := CheckSecret(bad); !errors.Is(err, ErrInvalidSecret) {
			t.Errorf("CheckSecret(%q) = %v", bad, err)
		}
	}
	id, err := NewAccessorID()
	if err != nil || !ValidAccessorID(id) {
		t.Fatalf("accessor %q %v", id, err)
	}
	for _, bad := range []string{"", "xyz", strings.ToUpper(id), id + "0"} {
		if ValidAccessorID(bad) {
			t.Errorf("ValidAccessorID(%q) = true", bad)
		}
	}
}
