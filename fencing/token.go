package fencing

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Token is a fencing token: the Raft log index of the entry that made a holder
// the holder of a lock or election. Tokens of one name are strictly increasing.
// The zero Token is never a valid token.
type Token uint64

// String formats t in decimal, the form ParseToken and HeaderToken use.
func (t Token) String() string { return strconv.FormatUint(uint64(t), 10) }

// Errors of this package. Test for them with errors.Is: the errors returned
// wrap them with context.
var (
	// ErrStaleToken means a higher token was accepted already for the name.
	// The error returned is a *StaleTokenError, which carries the highest token.
	ErrStaleToken = errors.New("fencing: stale token")
	// ErrBadToken means a token is missing, zero or not a decimal number.
	ErrBadToken = errors.New("fencing: bad token")
	// ErrBadName means a name is empty, longer than MaxNameLen bytes or not
	// valid UTF-8.
	ErrBadName = errors.New("fencing: bad name")
)

// MaxNameLen is the longest name, in bytes, that a Guard or Store accepts.
const MaxNameLen = 256

// maxTokenDigits is the number of decimal digits of the largest uint64.
const maxTokenDigits = 20

// ParseToken parses a decimal token greater than zero. Only the canonical form
// that Token.String produces is accepted: ASCII digits, no sign, no spaces, no
// leading zeros. Any other input gives an error wrapping ErrBadToken.
func ParseToken(s string) (Token, error) {
	switch {
	case s == "":
		return 0, fmt.Errorf("%w: empty", ErrBadToken)
	case len(s) > maxTokenDigits:
		return 0, fmt.Errorf("%w: %s is longer than %d digits", ErrBadToken, quoteShort(s), maxTokenDigits)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%w: %s is not a decimal number", ErrBadToken, quoteShort(s))
		}
	}
	switch {
	case s == "0":
		return 0, fmt.Errorf("%w: 0 is never a valid token", ErrBadToken)
	case s[0] == '0':
		return 0, fmt.Errorf("%w: %s has a leading zero", ErrBadToken, quoteShort(s))
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %s does not fit in 64 bits", ErrBadToken, quoteShort(s))
	}
	return Token(v), nil
}

// StaleTokenError is the error of a check whose token is lower than the
// highest token already accepted for the name. errors.Is(err, ErrStaleToken)
// is true for it.
type StaleTokenError struct {
	// Name is the lock or election name.
	Name string
	// Token is the token that was refused.
	Token Token
	// Highest is the highest token accepted for Name so far.
	Highest Token
}

// Error describes the refused token and the highest one.
func (e *StaleTokenError) Error() string {
	return fmt.Sprintf("fencing: stale token %d for %s: token %d was accepted already", e.Token, quoteShort(e.Name), e.Highest)
}

// Is reports whether target is ErrStaleToken.
func (e *StaleTokenError) Is(target error) bool { return target == ErrStaleToken }

// checkName returns an error wrapping ErrBadName unless name is a valid name.
func checkName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty", ErrBadName)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrBadName, len(name), MaxNameLen)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrBadName, quoteShort(name))
	}
	return nil
}

// checkToken returns an error wrapping ErrBadToken if t is zero.
func checkToken(t Token) error {
	if t == 0 {
		return fmt.Errorf("%w: 0 is never a valid token", ErrBadToken)
	}
	return nil
}

// quoteShort quotes s for an error message, cut to a length that keeps a
// hostile header from filling logs.
func quoteShort(s string) string {
	const limit = 64
	if len(s) > limit {
		return strconv.Quote(s[:limit]) + "..."
	}
	return strconv.Quote(s)
}
