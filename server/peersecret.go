package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/fsm"
)

// The peer secret authenticates the requests nodes forward to each other
// (httpapi/peerauth.go) without TLS. It is replicated (fsm/peer.go): the
// first leader that finds none draws one and commits it, so every member,
// a node that joins later included, has it; a restore keeps the running
// cluster's (fsm.State.WithClusterOf). A member of an older build would
// stop on an entry type it does not know, so the leader waits until every
// member's answers show a build that knows the peer secret
// (peerAuthSupportHeader).

// peerAuthSupport is the value of api.HeaderPeerAuth on every answer of a
// node that knows the peer secret.
const peerAuthSupport = "v1"

// PeerSecret implements httpapi.Node.
func (s *Server) PeerSecret() []byte { return s.fsm.State().PeerSecret() }

// withPeerAuthSupport marks every answer as coming from a build that
// knows the peer secret.
func withPeerAuthSupport(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(api.HeaderPeerAuth, peerAuthSupport)
		h.ServeHTTP(w, r)
	})
}

// givePeerSecret runs on a leader of a cluster without a peer secret: it
// commits one once every member knows what it is, retrying every 5 s until
// done or ctx ends.
func (s *Server) givePeerSecret(ctx context.Context) {
	for s.fsm.State().PeerSecret() == nil {
		err := s.tryGivePeerSecret(ctx)
		if err == nil {
			return
		}
		s.log.Debug("no peer secret yet", "reason", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Second):
		}
	}
}

func (s *Server) tryGivePeerSecret(ctx context.Context) error {
	err := s.otherMembers(ctx, func(member, addr string) (bool, error) {
		h, err := s.peerHealthzHeader(ctx, addr)
		switch {
		case err != nil:
			return false, fmt.Errorf("member %s: %w", member, err)
		case h.Get(api.HeaderPeerAuth) != peerAuthSupport:
			return false, fmt.Errorf("member %s runs a build without the peer secret", member)
		}
		return false, nil
	})
	if err != nil {
		return err
	}
	secret := make([]byte, fsm.PeerSecretSize)
	if _, err := rand.Read(secret); err != nil {
		return err
	}
	if _, err := s.propose(ctx, fsm.PeerSecret{Secret: secret}); err != nil && !errors.Is(err, fsm.ErrPeerSecretSet) {
		return err
	}
	s.log.Info("peer secret set: nodes authenticate the requests they forward")
	return nil
}
