package fsm

import (
	"errors"
	"fmt"
)

// The peer domain: the cluster's peer secret, with which nodes
// authenticate the requests they forward to each other when they do not
// use TLS (see httpapi/peerauth.go). It is replicated so that every node,
// a joining one included, has it; a restore keeps the running cluster's
// (WithClusterOf); it is never served by the API, but a backup file holds
// it, as it holds the data.

// CmdPeerSecret sets the peer secret. Value is part of the log format
// (chosen away from the domains' consecutive numbers).
const CmdPeerSecret CommandType = 24

// recPeerSecret is the snapshot record of the peer secret, written only
// when there is one (older builds read files without it).
const recPeerSecret = 16

// PeerSecretSize is the length of a peer secret in bytes.
const PeerSecretSize = 32

// ErrPeerSecretSet means the cluster has a peer secret already: the first
// one proposed stays.
var ErrPeerSecretSet = errors.New("fsm: the cluster has a peer secret already")

func init() {
	register(CmdPeerSecret, "peer-secret", payloadV1, func(_ uint8, d *dec) Payload { return PeerSecret{Secret: d.bytes()} })
}

// PeerSecret is the payload of CmdPeerSecret: random bytes drawn by the
// leader that proposes it (Apply reads no random source).
type PeerSecret struct{ Secret []byte }

// Type implements Payload.
func (PeerSecret) Type() CommandType { return CmdPeerSecret }

func (p PeerSecret) encode(e *enc) uint8 {
	e.bytes(p.Secret)
	return payloadV1
}

func (p PeerSecret) validate() error { return validatePeerSecret(p.Secret) }

func validatePeerSecret(b []byte) error {
	if len(b) != PeerSecretSize {
		return fmt.Errorf("peer secret of %d bytes, want %d", len(b), PeerSecretSize)
	}
	return nil
}

// apply sets the secret once: a second proposal (two leaders in quick
// succession) changes nothing, so that every node keeps the one it has.
func (p PeerSecret) apply(a *applier) {
	if a.s.peerSecret != nil {
		a.res.Err = ErrPeerSecretSet
		return
	}
	a.s.peerSecret = append([]byte(nil), p.Secret...)
}

// PeerSecret is the cluster's peer secret (nil until the first leader has
// set one). Callers must not modify it.
func (s *State) PeerSecret() []byte { return s.peerSecret }

// WithClusterOf returns s with what belongs to the running cluster cur
// rather than to the data: its access tokens (WithACLOf) and its peer
// secret. A restore keeps both.
func (s *State) WithClusterOf(cur *State) *State {
	next := s.WithACLOf(cur)
	next.peerSecret = cur.peerSecret
	return next
}
