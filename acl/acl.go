// Package acl defines coordd's access tokens: rules per resource and name
// prefix, their evaluation, and the secrets that identify a token.
//
// A token has a public accessor id (shown in lists and logs) and a secret
// (sent as "Authorization: Bearer <secret>"). Only the SHA-256 of the secret
// is stored, in the replicated state: the Raft log, snapshots and backups
// never hold a secret, and a lookup compares hashes in constant time.
//
// Rules grant read or write (write implies read), or deny, on one resource
// for every name that starts with a prefix. For a given name the rule with
// the longest matching prefix decides; with none, access is denied. A
// management token may do everything.
package acl

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Resource is what a rule governs.
type Resource string

// Resources. Names in KV are keys; in elections and locks they are the
// election or lock names. Leases, operator and acl have no names: their
// rules take the empty prefix.
const (
	// KV is the key-value store.
	KV Resource = "kv"
	// Lease is granting, renewing, revoking and reading leases.
	Lease Resource = "lease"
	// Election is leader elections (/v1/elections).
	Election Resource = "election"
	// Lock is locks (/v1/locks).
	Lock Resource = "lock"
	// Operator is cluster status and membership (read), and membership
	// changes, leadership transfer, snapshots and restores (write).
	Operator Resource = "operator"
	// ACL is reading (read) and creating or deleting (write) tokens. A
	// token that may write ACLs can make itself a management token.
	ACL Resource = "acl"
)

// Resources lists every resource, in a fixed order.
var Resources = []Resource{KV, Lease, Election, Lock, Operator, ACL}

func (r Resource) valid() bool {
	for _, x := range Resources {
		if r == x {
			return true
		}
	}
	return false
}

// named reports whether the resource's rules may have a non-empty prefix.
func (r Resource) named() bool { return r == KV || r == Election || r == Lock }

// Access is what a rule allows. The order matters: a higher access
// includes the lower ones.
type Access uint8

// Accesses.
const (
	Deny  Access = 0
	Read  Access = 1
	Write Access = 2
)

func (a Access) String() string {
	switch a {
	case Deny:
		return "deny"
	case Read:
		return "read"
	case Write:
		return "write"
	}
	return fmt.Sprintf("access(%d)", uint8(a))
}

// ParseAccess parses "read", "write" or "deny".
func ParseAccess(s string) (Access, error) {
	switch s {
	case "read":
		return Read, nil
	case "write":
		return Write, nil
	case "deny":
		return Deny, nil
	}
	return 0, fmt.Errorf("%w: access %q: want read, write or deny", ErrInvalidRule, s)
}

// MarshalText implements encoding.TextMarshaler.
func (a Access) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (a *Access) UnmarshalText(b []byte) error {
	v, err := ParseAccess(string(b))
	if err != nil {
		return err
	}
	*a = v
	return nil
}

// Rule grants Access on Resource for every name starting with Prefix.
type Rule struct {
	Resource Resource `json:"resource"`
	Prefix   string   `json:"prefix"`
	Access   Access   `json:"access"`
}

// Limits of a token's definition.
const (
	MaxRules          = 256
	MaxPrefixBytes    = 1024
	MaxDescription    = 256
	MinSecretBytes    = 16
	MaxSecretBytes    = 256
	AccessorIDBytes   = 16 // random bytes; the id is their hex form
	generatedSecretSz = 32
)

// Errors callers branch on.
var (
	// ErrInvalidRule means a rule or a token definition is malformed.
	ErrInvalidRule = errors.New("acl: invalid rule")
	// ErrInvalidSecret means a secret is too short, too long or not
	// printable ASCII.
	ErrInvalidSecret = errors.New("acl: invalid secret")
)

// Validate checks a rule set: known resources and accesses, prefixes only
// on named resources, bounded sizes, no two rules for the same resource and
// prefix.
func Validate(rules []Rule) error {
	if len(rules) > MaxRules {
		return fmt.Errorf("%w: %d rules (at most %d)", ErrInvalidRule, len(rules), MaxRules)
	}
	seen := map[Rule]bool{}
	for i, r := range rules {
		switch {
		case !r.Resource.valid():
			return fmt.Errorf("%w: rule %d: unknown resource %q (want one of %s)", ErrInvalidRule, i, r.Resource, resourceList())
		case r.Access > Write:
			return fmt.Errorf("%w: rule %d: unknown access %d", ErrInvalidRule, i, r.Access)
		case r.Prefix != "" && !r.Resource.named():
			return fmt.Errorf("%w: rule %d: %s rules take no prefix", ErrInvalidRule, i, r.Resource)
		case len(r.Prefix) > MaxPrefixBytes || !utf8.ValidString(r.Prefix):
			return fmt.Errorf("%w: rule %d: prefix must be valid UTF-8 of at most %d bytes", ErrInvalidRule, i, MaxPrefixBytes)
		}
		k := Rule{Resource: r.Resource, Prefix: r.Prefix}
		if seen[k] {
			return fmt.Errorf("%w: rule %d: a second rule for %s prefix %q", ErrInvalidRule, i, r.Resource, r.Prefix)
		}
		seen[k] = true
	}
	return nil
}

func resourceList() string {
	s := make([]string, len(Resources))
	for i, r := range Resources {
		s[i] = string(r)
	}
	return strings.Join(s, ", ")
}

// Policy is what one token may do.
type Policy struct {
	Management bool
	Rules      []Rule
}

// Allowed reports whether the policy grants want on res for name: the rule
// of res with the longest prefix of name decides.
func (p Policy) Allowed(res Resource, name string, want Access) bool {
	if p.Management {
		return true
	}
	best, found := -1, Deny
	for _, r := range p.Rules {
		if r.Resource == res && strings.HasPrefix(name, r.Prefix) && len(r.Prefix) > best {
			best, found = len(r.Prefix), r.Access
		}
	}
	return best >= 0 && found >= want
}

// AllowedPrefix reports whether the policy grants want on res for every
// name that starts with prefix (a listing or a watch of a prefix): the
// prefix itself must be allowed, and no longer rule under it may allow
// less.
func (p Policy) AllowedPrefix(res Resource, prefix string, want Access) bool {
	if !p.Allowed(res, prefix, want) {
		return false
	}
	if p.Management {
		return true
	}
	for _, r := range p.Rules {
		if r.Resource == res && len(r.Prefix) > len(prefix) && strings.HasPrefix(r.Prefix, prefix) && r.Access < want {
			return false
		}
	}
	return true
}

// HashSecret returns the SHA-256 of a secret: what the state stores.
func HashSecret(secret string) [sha256.Size]byte { return sha256.Sum256([]byte(secret)) }

// SameHash compares two secret hashes in constant time.
func SameHash(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }

// CheckSecret validates a secret chosen by a caller.
func CheckSecret(s string) error {
	if len(s) < MinSecretBytes || len(s) > MaxSecretBytes {
		return fmt.Errorf("%w: must be %d to %d characters", ErrInvalidSecret, MinSecretBytes, MaxSecretBytes)
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= 0x20 || s[i] > 0x7e {
			return fmt.Errorf("%w: must be printable ASCII without spaces", ErrInvalidSecret)
		}
	}
	return nil
}

// NewSecret returns a new random secret: "cdt_" and 43 base64url
// characters (256 bits).
func NewSecret() (string, error) {
	b := make([]byte, generatedSecretSz)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("acl: new secret: %w", err)
	}
	return "cdt_" + base64.RawURLEncoding.EncodeToString(b), nil
}

// NewAccessorID returns a new random accessor id (32 hex characters).
func NewAccessorID() (string, error) {
	b := make([]byte, AccessorIDBytes)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("acl: new accessor id: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// ValidAccessorID reports whether id has the form NewAccessorID makes.
func ValidAccessorID(id string) bool {
	if len(id) != 2*AccessorIDBytes {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
