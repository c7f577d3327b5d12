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
	commandNames[CmdACLBootstrap] = "acl-bootstrap"
	commandNames[CmdACLTokenCreate] = "acl-token-create"
	commandNames[CmdACLTokenDelete] = "acl-token-delete"
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

// NewACLBootstrap builds a CmdACLBootstrap command: it creates the first
// management token, once in the cluster's life.
func NewACLBootstrap(accessor string, secretHash [sha256.Size]byte, description string) Command {
	t := ACLToken{AccessorID: accessor, SecretHash: secretHash, Description: description, Management: true}
	return Command{Type: CmdACLBootstrap, Version: payloadV1, Payload: encodeTokenDef(&t)}
}

// NewACLTokenCreate builds a CmdACLTokenCreate command. The caller has
// validated the token (ValidateToken).
func NewACLTokenCreate(t ACLToken) Command {
	return Command{Type: CmdACLTokenCreate, Version: payloadV1, Payload: encodeTokenDef(&t)}
}

// NewACLTokenDelete builds a CmdACLTokenDelete command.
func NewACLTokenDelete(accessor string) Command {
	e := enc{}
	e.str(accessor)
	return Command{Type: CmdACLTokenDelete, Version: payloadV1, Payload: e.b}
}

// ValidateToken checks a token definition before it is proposed: the same
// checks its decoder makes, so that a bad definition is refused with an
// error rather than stopping every replica.
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

func encodeTokenDef(t *ACLToken) []byte {
	e := enc{}
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
	return e.b
}

func decodeTokenDef(d *dec) *ACLToken {
	t := &ACLToken{AccessorID: d.str()}
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
		r := acl.Rule{Resource: acl.Resource(d.str()), Prefix: d.str()}
		a := d.uvarint()
		if a > uint64(acl.Write) {
			d.fail(fmt.Errorf("access %d", a))
		}
		r.Access = acl.Access(a)
		t.Rules = append(t.Rules, r)
	}
	if d.err == nil {
		if err := ValidateToken(t); err != nil {
			d.fail(err)
		}
	}
	return t
}

func decodeACLTokenDef(c Command) (t *ACLToken, err error) {
	err = decodeWith(c, func(d *dec) {
		t = decodeTokenDef(d)
		if d.err == nil && c.Type == CmdACLBootstrap && !t.Management {
			d.fail(errors.New("a bootstrap token that is not a management token"))
		}
	})
	return t, err
}

func decodeACLTokenDelete(c Command) (accessor string, err error) {
	err = decodeWith(c, func(d *dec) { accessor = d.str() })
	return accessor, err
}

// applyACLTokenCreate adds t, made by the entry at s.index; a bootstrap
// marks the ACL system bootstrapped and may happen once.
func applyACLTokenCreate(s *State, res *Result, t *ACLToken, bootstrap bool, stamp int64, notify bool) {
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
	t.CreateIndex, t.CreateStamp = s.index, stamp
	s.aclTokens = put(s.aclTokens, []byte(t.AccessorID), t, notify)
	s.aclBySecret = put(s.aclBySecret, t.SecretHash[:], t.AccessorID, notify)
	if bootstrap {
		s.aclBootstrap = s.index
	}
	res.Token = t
}

func applyACLTokenDelete(s *State, res *Result, accessor string, notify bool) {
	t, ok := s.aclTokens.Get([]byte(accessor))
	if !ok {
		res.Err = fmt.Errorf("%w: %s", ErrTokenNotFound, accessor)
		return
	}
	s.aclTokens, _ = del(s.aclTokens, []byte(accessor), notify)
	s.aclBySecret, _ = del(s.aclBySecret, t.SecretHash[:], notify)
	res.Token = t
}

// encodeToken writes a whole token (snapshot record).
func encodeToken(e *enc, t *ACLToken) {
	e.b = append(e.b, encodeTokenDef(t)...)
	e.uvarint(t.CreateIndex)
	e.varint(t.CreateStamp)
}

func decodeToken(d *dec) *ACLToken {
	t := decodeTokenDef(d)
	t.CreateIndex, t.CreateStamp = d.uvarint(), d.varint()
	return t
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
