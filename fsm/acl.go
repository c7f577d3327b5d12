package fsm

import (
	"crypto/sha256"
	"errors"
	"fmt"

	iradix "github.com/hashicorp/go-immutable-radix/v2"

	"github.com/coordd/coordd/acl"
)

// Access token commands. Values are part of the log format.
//
// Invariant (no secrets in the log): commands and snapshots carry only the
// SHA-256 of a token's secret. The secret and the accessor id are chosen
// by the proposer (random), never by Apply, which must stay deterministic.
const (
	CmdACLBootstrap   CommandType = 15
	CmdACLTokenCreate CommandType = 16
	CmdACLTokenDelete CommandType = 17
)

func init() {
	register(CmdACLBootstrap, "acl-bootstrap", payloadV1, func(_ uint8, d *dec) Payload { return ACLBootstrap{decodeTokenDef(d)} })
	register(CmdACLTokenCreate, "acl-token-create", payloadV1, func(_ uint8, d *dec) Payload { return ACLTokenCreate{decodeTokenDef(d)} })
	register(CmdACLTokenDelete, "acl-token-delete", payloadV1, func(_ uint8, d *dec) Payload { return ACLTokenDelete{AccessorID: d.str()} })
}

// ACL errors, returned in Result.Err.
var (
	// ErrACLBootstrapped means the ACL system was bootstrapped before: the
	// bootstrap token can be made only once.
	ErrACLBootstrapped = errors.New("fsm: ACLs already bootstrapped")
	// ErrTokenExists means a token with that accessor id or secret exists.
	ErrTokenExists = errors.New("fsm: token exists")
	// ErrTokenNotFound means no token has that accessor id.
	ErrTokenNotFound = errors.New("fsm: token not found")
)

// ACLToken is an access token as the replicated state keeps it.
type ACLToken struct {
	// AccessorID is the token's public id.
	AccessorID string
	// SecretHash is the SHA-256 of the secret; the secret itself is never
	// stored.
	SecretHash [sha256.Size]byte
	// Description is free text for operators.
	Description string
	// Management tokens may do everything.
	Management bool
	// Rules are what a non-management token may do.
	Rules []acl.Rule
	// CreateIndex is the Raft index of the entry that made the token;
	// CreateStamp the leader's clock then.
	CreateIndex uint64
	CreateStamp int64
}

// Policy returns what the token may do.
func (t *ACLToken) Policy() acl.Policy {
	return acl.Policy{Management: t.Management, Rules: t.Rules}
}

// ACLToken returns the token with the given accessor id.
func (s *State) ACLToken(accessor string) (*ACLToken, bool) {
	return s.aclTokens.Get([]byte(accessor))
}

// ACLTokenBySecret returns the token whose secret is secret. The hashes are
// compared in constant time; the lookup by hash reveals nothing about the
// secret.
func (s *State) ACLTokenBySecret(secret string) (*ACLToken, bool) {
	h := acl.HashSecret(secret)
	accessor, ok := s.aclBySecret.Get(h[:])
	if !ok {
		return nil, false
	}
	t, ok := s.aclTokens.Get([]byte(accessor))
	if !ok || !acl.SameHash(t.SecretHash[:], h[:]) {
		return nil, false
	}
	return t, true
}

// ACLTokens lists every token by accessor id.
func (s *State) ACLTokens() []*ACLToken {
	out := make([]*ACLToken, 0, s.aclTokens.Len())
	s.aclTokens.Root().Walk(func(_ []byte, t *ACLToken) bool {
		out = append(out, t)
		return false
	})
	return out
}

// ACLBootstrapIndex is the index of the entry that bootstrapped the ACL
// system, 0 if it never was.
func (s *State) ACLBootstrapIndex() uint64 { return s.aclBootstrap }

// WithACLOf returns s with cur's tokens and bootstrap record: restoring a
// backup replaces the data, not who may access the cluster (the operator
// who restores keeps access, and a backup from before a token was deleted
// does not bring it back).
func (s *State) WithACLOf(cur *State) *State {
	next := *s
	next.aclTokens, next.aclBySecret, next.aclBootstrap = cur.aclTokens, cur.aclBySecret, cur.aclBootstrap
	return &next
}

// ACLBootstrap is the payload of CmdACLBootstrap: it creates the first
// management token, once in the cluster's life.
type ACLBootstrap struct{ Token ACLToken }

// Type implements Payload.
func (ACLBootstrap) Type() CommandType { return CmdACLBootstrap }

func (p ACLBootstrap) encode(e *enc) uint8 {
	encodeTokenDef(e, &p.Token)
	return payloadV1
}

func (p ACLBootstrap) validate() error {
	if !p.Token.Management {
		return errors.New("a bootstrap token that is not a management token")
	}
	return ValidateToken(&p.Token)
}

func (p ACLBootstrap) apply(a *applier) { createToken(a, p.Token, true) }

// ACLTokenCreate is the payload of CmdACLTokenCreate.
type ACLTokenCreate struct{ Token ACLToken }

// Type implements Payload.
func (ACLTokenCreate) Type() CommandType { return CmdACLTokenCreate }

func (p ACLTokenCreate) encode(e *enc) uint8 {
	encodeTokenDef(e, &p.Token)
	return payloadV1
}

func (p ACLTokenCreate) validate() error { return ValidateToken(&p.Token) }

func (p ACLTokenCreate) apply(a *applier) { createToken(a, p.Token, false) }

// ACLTokenDelete is the payload of CmdACLTokenDelete.
type ACLTokenDelete struct{ AccessorID string }

// Type implements Payload.
func (ACLTokenDelete) Type() CommandType { return CmdACLTokenDelete }

func (p ACLTokenDelete) encode(e *enc) uint8 {
	e.str(p.AccessorID)
	return payloadV1
}

func (ACLTokenDelete) validate() error { return nil }

func (p ACLTokenDelete) apply(a *applier) {
	s := a.s
	t, ok := s.aclTokens.Get([]byte(p.AccessorID))
	if !ok {
		a.res.Err = fmt.Errorf("%w: %s", ErrTokenNotFound, p.AccessorID)
		return
	}
	s.aclTokens.del(s.w, []byte(p.AccessorID))
	s.aclBySecret.del(s.w, t.SecretHash[:])
	a.res.Token = t
}

// ValidateToken is the rule of a token definition: an accessor id, a
// description of bounded length, rules that acl.Validate accepts, and none
// on a management token. NewCommand, the decoder and the snapshot reader
// run it.
func ValidateToken(t *ACLToken) error {
	switch {
	case !acl.ValidAccessorID(t.AccessorID):
		return fmt.Errorf("%w: accessor id %q", acl.ErrInvalidRule, t.AccessorID)
	case len(t.Description) > acl.MaxDescription:
		return fmt.Errorf("%w: description longer than %d bytes", acl.ErrInvalidRule, acl.MaxDescription)
	case t.Management && len(t.Rules) > 0:
		return fmt.Errorf("%w: a management token takes no rules", acl.ErrInvalidRule)
	}
	return acl.Validate(t.Rules)
}

// encodeTokenDef writes a token's definition: accessor secretHash
// description management rules.
func encodeTokenDef(e *enc, t *ACLToken) {
	e.str(t.AccessorID)
	e.bytes(t.SecretHash[:])
	e.str(t.Description)
	e.bool(t.Management)
	e.uvarint(uint64(len(t.Rules)))
	for _, r := range t.Rules {
		e.str(string(r.Resource))
		e.str(r.Prefix)
		e.uvarint(uint64(r.Access))
	}
}

func decodeTokenDef(d *dec) ACLToken {
	t := ACLToken{AccessorID: d.str()}
	h := d.bytes()
	if d.err == nil && len(h) != sha256.Size {
		d.fail(fmt.Errorf("secret hash of %d bytes", len(h)))
	}
	copy(t.SecretHash[:], h)
	t.Description, t.Management = d.str(), d.bool()
	n := batchLen(d, 3)
	if d.err == nil && n > acl.MaxRules {
		d.fail(fmt.Errorf("%d rules", n))
	}
	for i := 0; i < n && d.err == nil; i++ {
		t.Rules = append(t.Rules, acl.Rule{Resource: acl.Resource(d.str()), Prefix: d.str(), Access: acl.Access(d.u8())})
	}
	return t
}

// createToken adds t, made by the entry at s.index; a bootstrap marks
// the ACL system bootstrapped and may happen once.
func createToken(a *applier, t ACLToken, bootstrap bool) {
	s, res := a.s, a.res
	if bootstrap && s.aclBootstrap != 0 {
		res.Err = fmt.Errorf("%w at index %d", ErrACLBootstrapped, s.aclBootstrap)
		return
	}
	if _, ok := s.aclTokens.Get([]byte(t.AccessorID)); ok {
		res.Err = fmt.Errorf("%w: accessor id %s", ErrTokenExists, t.AccessorID)
		return
	}
	if _, ok := s.aclBySecret.Get(t.SecretHash[:]); ok {
		res.Err = fmt.Errorf("%w: another token has this secret", ErrTokenExists)
		return
	}
	t.CreateIndex, t.CreateStamp = s.index, a.stamp
	s.aclTokens.put(s.w, []byte(t.AccessorID), &t)
	s.aclBySecret.put(s.w, t.SecretHash[:], t.AccessorID)
	if bootstrap {
		s.aclBootstrap = s.index
	}
	res.Token = &t
}

// encodeToken writes a whole token (snapshot record): its definition,
// createIndex createStamp.
func encodeToken(e *enc, t *ACLToken) {
	encodeTokenDef(e, t)
	e.uvarint(t.CreateIndex)
	e.varint(t.CreateStamp)
}

func decodeToken(d *dec) *ACLToken {
	t := decodeTokenDef(d)
	t.CreateIndex, t.CreateStamp = d.uvarint(), d.varint()
	return &t
}

// secretIndex rebuilds the secret index of a token tree read from a
// snapshot.
func secretIndex(tokens *iradix.Tree[*ACLToken]) (*iradix.Tree[string], error) {
	txn := iradix.New[string]().Txn()
	var err error
	tokens.Root().Walk(func(_ []byte, t *ACLToken) bool {
		if _, dup := txn.Get(t.SecretHash[:]); dup {
			err = fmt.Errorf("fsm: snapshot: two tokens with one secret (%s)", t.AccessorID)
			return true
		}
		txn.Insert(t.SecretHash[:], t.AccessorID)
		return false
	})
	return txn.CommitOnly(), err
}
