package fencing

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
)

func TestParseToken(t *testing.T) {
	tests := []struct {
		in   string
		want Token
		ok   bool
	}{
		{"1", 1, true},
		{"12", 12, true},
		{"9007199254740993", 9007199254740993, true}, // above 2^53
		{"18446744073709551615", math.MaxUint64, true},
		{"", 0, false},
		{"0", 0, false},
		{"00", 0, false},
		{"012", 0, false},
		{"-1", 0, false},
		{"+1", 0, false},
		{" 1", 0, false},
		{"1 ", 0, false},
		{"1_000", 0, false},
		{"0x10", 0, false},
		{"1e3", 0, false},
		{"1.0", 0, false},
		{"abc", 0, false},
		{"١", 0, false},                     // Arabic-Indic digit one
		{"18446744073709551616", 0, false},  // MaxUint64 + 1
		{"99999999999999999999", 0, false},  // 20 digits, too big
		{"100000000000000000000", 0, false}, // 21 digits
		{strings.Repeat("9", 1000), 0, false},
	}
	for _, tt := range tests {
		got, err := ParseToken(tt.in)
		if tt.ok {
			if err != nil || got != tt.want {
				t.Errorf("ParseToken(%q) = %d, %v; want %d, nil", tt.in, got, err, tt.want)
			}
			continue
		}
		if err == nil {
			t.Errorf("ParseToken(%q) = %d, nil; want an error", tt.in, got)
			continue
		}
		if !errors.Is(err, ErrBadToken) {
			t.Errorf("ParseToken(%q) error %v does not wrap ErrBadToken", tt.in, err)
		}
		if !strings.HasPrefix(err.Error(), "fencing: bad token: ") {
			t.Errorf("ParseToken(%q) error %q lacks the package prefix", tt.in, err)
		}
		if len(err.Error()) > 200 {
			t.Errorf("ParseToken(%q) error is %d bytes long: the input must be cut", tt.in[:10], len(err.Error()))
		}
	}
}

func TestTokenString(t *testing.T) {
	for _, tt := range []struct {
		t    Token
		want string
	}{
		{0, "0"},
		{1, "1"},
		{15, "15"},
		{math.MaxUint64, "18446744073709551615"},
	} {
		if got := tt.t.String(); got != tt.want {
			t.Errorf("Token(%d).String() = %q, want %q", uint64(tt.t), got, tt.want)
		}
	}
}

func TestStaleTokenError(t *testing.T) {
	var err error = &StaleTokenError{Name: "locks/db", Token: 12, Highest: 15}
	if !errors.Is(err, ErrStaleToken) {
		t.Fatal("errors.Is(StaleTokenError, ErrStaleToken) is false")
	}
	if errors.Is(err, ErrBadToken) {
		t.Fatal("errors.Is(StaleTokenError, ErrBadToken) is true")
	}
	want := `fencing: stale token 12 for "locks/db": token 15 was accepted already`
	if err.Error() != want {
		t.Fatalf("Error() = %q, want %q", err.Error(), want)
	}
}

func TestCheckName(t *testing.T) {
	for _, tt := range []struct {
		name string
		ok   bool
	}{
		{"a", true},
		{"locks/db-primary", true},
		{"ünïcode", true},
		{strings.Repeat("x", MaxNameLen), true},
		{"", false},
		{strings.Repeat("x", MaxNameLen+1), false},
		{"bad\xffutf8", false},
	} {
		err := checkName(tt.name)
		if tt.ok != (err == nil) {
			t.Errorf("checkName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrBadName) {
			t.Errorf("checkName(%q) = %v, does not wrap ErrBadName", tt.name, err)
		}
	}
}

func FuzzParseToken(f *testing.F) {
	for _, s := range []string{"1", "12", "0", "012", "-1", "+1", " 1", "18446744073709551615", "18446744073709551616", "abc", "", "1e3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseToken(s)
		if err != nil {
			if !errors.Is(err, ErrBadToken) {
				t.Fatalf("ParseToken(%q) error %v does not wrap ErrBadToken", s, err)
			}
			if tok != 0 {
				t.Fatalf("ParseToken(%q) returned %d with an error", s, tok)
			}
			// Anything strconv reads as a canonical positive decimal must parse.
			if v, perr := strconv.ParseUint(s, 10, 64); perr == nil && v > 0 && strconv.FormatUint(v, 10) == s {
				t.Fatalf("ParseToken(%q) refused a canonical token: %v", s, err)
			}
			return
		}
		if tok == 0 {
			t.Fatalf("ParseToken(%q) accepted 0", s)
		}
		// Only the canonical form is accepted, so formatting gives s back.
		if tok.String() != s {
			t.Fatalf("ParseToken(%q) = %d, which formats as %q", s, tok, tok.String())
		}
	})
}
