package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/hashicorp/raft"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/fsm"
	"github.com/coordd/coordd/httpapi"
)

// Members lists the Raft configuration, with HTTP addresses where known.
func (s *Server) Members(ctx context.Context) ([]api.Member, error) {
	f := s.raft.GetConfiguration()
	if err := waitFuture(ctx, f); err != nil {
		return nil, translate(err)
	}
	_, leader := s.raft.LeaderWithID()
	var out []api.Member
	for _, srv := range f.Configuration().Servers {
		out = append(out, api.Member{
			ID:       string(srv.ID),
			RaftAddr: string(srv.Address),
			HTTPAddr: s.httpAddrOf(string(srv.ID)),
			Voter:    srv.Suffrage == raft.Voter,
			Leader:   srv.ID == leader,
		})
	}
	return out, nil
}

// Join adds a server to the cluster (as a voter unless req.Voter is false)
// and records its HTTP address. Joining again with the same id and address
// is a no-op, so a retried join is safe.
func (s *Server) Join(ctx context.Context, req api.JoinRequest) error {
	if err := s.waitLeaderReady(ctx); err != nil {
		return err
	}
	voter := req.Voter == nil || *req.Voter
	if err := s.checkJoiner(ctx, req); err != nil {
		return err
	}
	f := s.raft.GetConfiguration()
	if err := waitFuture(ctx, f); err != nil {
		return translate(err)
	}
	for _, srv := range f.Configuration().Servers {
		sameID, sameAddr := string(srv.ID) == req.ID, string(srv.Address) == req.RaftAddr
		if sameID && sameAddr && (srv.Suffrage == raft.Voter) == voter {
			return s.recordMember(ctx, req) // already a member; refresh its HTTP address
		}
		if sameAddr && !sameID {
			return fmt.Errorf("%w: raft address %s already belongs to member %q", httpapi.ErrBadRequest, req.RaftAddr, srv.ID)
		}
	}
	var fut raft.IndexFuture
	if voter {
		fut = s.raft.AddVoter(raft.ServerID(req.ID), raft.ServerAddress(req.RaftAddr), 0, raftTimeout)
	} else {
		fut = s.raft.AddNonvoter(raft.ServerID(req.ID), raft.ServerAddress(req.RaftAddr), 0, raftTimeout)
	}
	if err := waitFuture(ctx, fut); err != nil {
		return translate(err)
	}
	s.log.Info("member joined", "member", req.ID, "raft", req.RaftAddr, "http", req.HTTPAddr, "voter", voter)
	return s.recordMember(ctx, req)
}

func (s *Server) recordMember(ctx context.Context, req api.JoinRequest) error {
	m := fsm.Member{ID: req.ID, RaftAddr: req.RaftAddr, HTTPAddr: req.HTTPAddr}
	if cur, ok := s.fsm.State().Member(req.ID); ok && cur == m {
		return nil
	}
	_, err := s.propose(ctx, fsm.MemberSet{Member: m})
	return err
}

// Remove removes a server from the Raft configuration and the member table.
func (s *Server) Remove(ctx context.Context, id string) error {
	if err := s.waitLeaderReady(ctx); err != nil {
		return err
	}
	f := s.raft.GetConfiguration()
	if err := waitFuture(ctx, f); err != nil {
		return translate(err)
	}
	found := false
	for _, srv := range f.Configuration().Servers {
		found = found || string(srv.ID) == id
	}
	if !found {
		return fmt.Errorf("%w: %q", ErrUnknownMember, id)
	}
	// Drop the address record first: once the leader removes itself it can
	// no longer propose anything.
	if _, ok := s.fsm.State().Member(id); ok {
		if _, err := s.propose(ctx, fsm.MemberRemove{ID: id}); err != nil {
			return err
		}
	}
	if err := waitFuture(ctx, s.raft.RemoveServer(raft.ServerID(id), 0, raftTimeout)); err != nil {
		return translate(err)
	}
	s.log.Info("member removed", "member", id)
	return nil
}

// TransferLeadership hands leadership to id, or to the most up-to-date
// voter if id is empty, and waits for the transfer to finish and, within
// ctx, for this node to hear from the new leader (so that Leader names it).
func (s *Server) TransferLeadership(ctx context.Context, id string) error {
	if s.raft.State() != raft.Leader {
		return ErrNotLeader
	}
	var fut raft.Future
	if id == "" {
		fut = s.raft.LeadershipTransfer()
	} else {
		f := s.raft.GetConfiguration()
		if err := waitFuture(ctx, f); err != nil {
			return translate(err)
		}
		var target *raft.Server
		for _, srv := range f.Configuration().Servers {
			if string(srv.ID) == id {
				target = &srv
			}
		}
		switch {
		case target == nil:
			return fmt.Errorf("%w: %q", ErrUnknownMember, id)
		case target.Suffrage != raft.Voter:
			return fmt.Errorf("%w: member %q is not a voter", httpapi.ErrBadRequest, id)
		case id == s.cfg.NodeID:
			return nil // already leads
		}
		fut = s.raft.LeadershipTransferToServer(target.ID, target.Address)
	}
	if err := waitFuture(ctx, fut); err != nil {
		return translate(err)
	}
	// The handover is done once this node has stepped down, usually before
	// the new leader's first heartbeat has reached it: wait for that, so
	// that the caller can be told who leads now.
	for {
		if _, id := s.raft.LeaderWithID(); id != "" && string(id) != s.cfg.NodeID {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil // handed over; who leads is not known yet
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// joinCluster asks a running member, through its HTTP API, to add this
// node, retrying with capped, jittered exponential backoff until it
// succeeds or the node shuts down. The member forwards to the leader.
func (s *Server) joinCluster() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	body, _ := json.Marshal(api.JoinRequest{
		ID: s.cfg.NodeID, RaftAddr: s.RaftAddr(), HTTPAddr: s.cfg.HTTPAdvertise, Voter: ptr(!s.cfg.NonVoter),
		ClusterID: s.clusterID.get(),
	})
	target := s.cfg.Join
	if !strings.Contains(target, "://") {
		target = s.httpScheme() + "://" + target
	}
	url := strings.TrimSuffix(target, "/") + "/v1/cluster/members"
	client := s.peerHTTPClient(15 * time.Second)
	attempt := 0
	op := func() (struct{}, error) {
		attempt++
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return struct{}{}, backoff.Permanent(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if s.cfg.ACLToken != "" {
			req.Header.Set("Authorization", "Bearer "+s.cfg.ACLToken)
		}
		resp, err := client.Do(req)
		if err != nil {
			return struct{}{}, err
		}
		defer resp.Body.Close()
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		switch {
		case resp.StatusCode/100 == 2:
			if id := resp.Header.Get(ClusterIDHeader); id != "" {
				if err := s.clusterID.adopt(id, "join answer"); err != nil {
					return struct{}{}, backoff.Permanent(fmt.Errorf("joined via %s, but: %w", url, err))
				}
			}
			return struct{}{}, nil
		case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests:
			return struct{}{}, fmt.Errorf("join via %s: %s: %s", url, resp.Status, bytes.TrimSpace(msg))
		default:
			return struct{}{}, backoff.Permanent(fmt.Errorf("join via %s refused: %s: %s", url, resp.Status, bytes.TrimSpace(msg)))
		}
	}
	eb := backoff.NewExponentialBackOff()
	eb.InitialInterval, eb.MaxInterval = 200*time.Millisecond, 5*time.Second
	_, err := backoff.Retry(ctx, op,
		backoff.WithBackOff(eb),
		backoff.WithMaxElapsedTime(0),
		backoff.WithNotify(func(err error, next time.Duration) {
			s.log.Warn("join attempt failed; retrying", "attempt", attempt, "in", next, "error", err)
		}))
	switch {
	case err == nil:
		s.log.Info("joined cluster", "via", s.cfg.Join)
	case errors.Is(err, context.Canceled):
	default:
		s.log.Error("giving up on joining the cluster", "via", s.cfg.Join, "error", err)
	}
}

func ptr[T any](v T) *T { return &v }

// memberHTTPAddrs lists the members' advertised HTTP addresses (for the
// console's cross-origin reads, package ui).
func (s *Server) memberHTTPAddrs() []string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	ms, _ := s.Members(ctx)
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.HTTPAddr)
	}
	return out
}
