package httpapi_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/coordd/coordd/api"
	"github.com/coordd/coordd/fsm"
	"github.com/coordd/coordd/httpapi"
)

// fakeNode implements httpapi.Node over a real *fsm.FSM. Commands are
// applied directly to the FSM with increasing indices; leadership, the
// leader it reports and the errors of ReadBarrier, Apply and Ready are set
// per test.
type fakeNode struct {
	id  string
	fsm *fsm.FSM

	applyMu sync.Mutex // serialises FSM.Apply and FSM.Restore, as Raft does
	index   uint64     // guarded by applyMu

	mu         sync.Mutex
	isLeader   bool
	leader     api.Member
	hasLeader  bool
	barrierErr error
	applyErr   error
	readyErr   error
	membersErr error
	joinErr    error
	removeErr  error
	xferErr    error
	restoreErr error
	restores   int
	panicIn    string // "Apply", "ReadBarrier", ... : panic in that method
	staleness  httpapi.Staleness
	// resetHook, when set, runs (once) at the start of the next ResetCh
	// call: it lets a test interleave a Restore at that exact point.
	resetHook func()
	members   []api.Member
	// viewCh is closed, and replaced, when set changes the leader.
	viewCh    chan struct{}
	viewSince time.Time

	barrierCalls int
	// secret, when set, replaces testPeerSecret for this node (a node
	// that does not share the cluster's secret).
	secret     []byte
	resetCalls int
	applyCalls int
	applied    []fsm.Command
	joins      []api.JoinRequest
	removes    []string
	transfers  []string
}

var _ httpapi.Node = (*fakeNode)(nil)

// newFakeNode returns a node that leads and knows itself as leader.
func newFakeNode(id string) *fakeNode {
	n := &fakeNode{id: id, fsm: fsm.New(), isLeader: true, hasLeader: true}
	n.leader = api.Member{ID: id, RaftAddr: id + ":7000", Voter: true, Leader: true}
	return n
}

func (n *fakeNode) set(f func(n *fakeNode)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	leader, has := n.leader, n.hasLeader
	f(n)
	if n.leader != leader || n.hasLeader != has {
		if n.viewCh != nil {
			close(n.viewCh)
			n.viewCh = nil
		}
		n.viewSince = time.Now()
	}
}

// LeaderView is Leader with a channel closed by the next set that changes
// the leader.
func (n *fakeNode) LeaderView() httpapi.LeaderView {
	n.maybePanic("LeaderView")
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.viewCh == nil {
		n.viewCh = make(chan struct{})
	}
	if n.viewSince.IsZero() {
		n.viewSince = time.Now()
	}
	return httpapi.LeaderView{Leader: n.leader, Known: n.hasLeader, Since: n.viewSince, Changed: n.viewCh}
}

func (n *fakeNode) maybePanic(method string) {
	n.mu.Lock()
	p := n.panicIn
	n.mu.Unlock()
	if p == method {
		panic("fakeNode: injected panic in " + method)
	}
}

// applyLocal applies cmd to the FSM at the next index, whatever the
// leadership settings: it stands for a committed entry arriving.
func (n *fakeNode) applyLocal(cmd fsm.Command) *fsm.Result {
	n.applyMu.Lock()
	defer n.applyMu.Unlock()
	n.index++
	return n.fsm.Apply(&raft.Log{Index: n.index, Term: 1, Data: cmd.Encode()}).(*fsm.Result)
}

// put writes key directly (as a committed entry from elsewhere would).
func (n *fakeNode) put(t testing.TB, key, value string) *fsm.Result {
	t.Helper()
	res := n.applyLocal(fsmCmd(fsm.KVPut{Key: key, Value: []byte(value)}))
	if res.Err != nil {
		t.Fatalf("put %q: %v", key, res.Err)
	}
	return res
}

// del deletes key directly.
func (n *fakeNode) del(t testing.TB, key string) *fsm.Result {
	t.Helper()
	res := n.applyLocal(fsmCmd(fsm.KVDelete{Key: key}))
	if res.Err != nil {
		t.Fatalf("delete %q: %v", key, res.Err)
	}
	return res
}

// restore replaces the FSM's whole state by one read from a snapshot
// stream, as Raft does when it installs a snapshot.
func (n *fakeNode) restore(t testing.TB, s *fsm.State) {
	t.Helper()
	var buf bytes.Buffer
	if err := fsm.WriteState(&buf, s); err != nil {
		t.Fatalf("WriteState: %v", err)
	}
	n.applyMu.Lock()
	defer n.applyMu.Unlock()
	if err := n.fsm.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	n.index = max(n.index, s.Index())
}

func (n *fakeNode) counts() (barriers, applies int) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.barrierCalls, n.applyCalls
}

// resets counts ResetCh calls. A blocking query calls ResetCh after it has
// taken the state it evaluates, so once the count has grown, any later write
// must wake the query.
func (n *fakeNode) resets() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.resetCalls
}

func (n *fakeNode) ID() string {
	n.maybePanic("ID")
	return n.id
}

func (n *fakeNode) IsLeader() bool {
	n.maybePanic("IsLeader")
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.isLeader
}

func (n *fakeNode) Leader() (api.Member, bool) {
	n.maybePanic("Leader")
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.leader, n.hasLeader
}

func (n *fakeNode) Apply(ctx context.Context, cmd fsm.Command) (*fsm.Result, error) {
	n.maybePanic("Apply")
	n.mu.Lock()
	n.applyCalls++
	err := n.applyErr
	n.mu.Unlock()
	if err != nil {
		return nil, err
	}
	res := n.applyLocal(cmd)
	n.mu.Lock()
	n.applied = append(n.applied, cmd)
	n.mu.Unlock()
	return res, nil
}

func (n *fakeNode) ReadBarrier(ctx context.Context) error {
	n.maybePanic("ReadBarrier")
	n.mu.Lock()
	defer n.mu.Unlock()
	n.barrierCalls++
	return n.barrierErr
}

func (n *fakeNode) State() *fsm.State {
	n.maybePanic("State")
	return n.fsm.State()
}

func (n *fakeNode) ResetCh() <-chan struct{} {
	n.mu.Lock()
	hook := n.resetHook
	n.resetHook = nil
	n.resetCalls++
	n.mu.Unlock()
	if hook != nil {
		hook()
	}
	return n.fsm.ResetCh()
}

func (n *fakeNode) Staleness() httpapi.Staleness {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := n.staleness
	s.AppliedIndex = n.fsm.State().Index()
	return s
}

func (n *fakeNode) Status() api.Status {
	n.maybePanic("Status")
	n.mu.Lock()
	defer n.mu.Unlock()
	st := api.Status{ID: n.id, State: "Follower", Term: 1, Ready: n.readyErr == nil, Members: n.members}
	if n.isLeader {
		st.State = "Leader"
	}
	if n.hasLeader {
		l := n.leader
		st.Leader = &l
	}
	idx := n.fsm.State().Index()
	st.CommitIndex, st.AppliedIndex, st.LastIndex = idx, idx, idx
	return st
}

func (n *fakeNode) Members(ctx context.Context) ([]api.Member, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.membersErr != nil {
		return nil, n.membersErr
	}
	return append([]api.Member{}, n.members...), nil
}

func (n *fakeNode) Join(ctx context.Context, req api.JoinRequest) error {
	n.maybePanic("Join")
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.joinErr != nil {
		return n.joinErr
	}
	n.joins = append(n.joins, req)
	n.members = append(n.members, api.Member{ID: req.ID, RaftAddr: req.RaftAddr, HTTPAddr: req.HTTPAddr,
		Voter: req.Voter == nil || *req.Voter})
	return nil
}

func (n *fakeNode) Remove(ctx context.Context, id string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.removeErr != nil {
		return n.removeErr
	}
	n.removes = append(n.removes, id)
	return nil
}

func (n *fakeNode) TransferLeadership(ctx context.Context, id string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.xferErr != nil {
		return n.xferErr
	}
	n.transfers = append(n.transfers, id)
	return nil
}

// Restore installs backup as the server does: prepared, restored, then
// finished with CmdRestored.
func (n *fakeNode) Restore(ctx context.Context, backup *fsm.State, opts httpapi.RestoreOptions) (api.RestoreResult, error) {
	n.mu.Lock()
	isLeader, err := n.isLeader, n.restoreErr
	n.restores++
	n.mu.Unlock()
	if !isLeader {
		return api.RestoreResult{}, httpapi.ErrNotLeader
	}
	if err != nil {
		return api.RestoreResult{}, err
	}
	n.applyMu.Lock()
	bump := fsm.RestoreBump(backup.Index(), n.index, opts.Bump, opts.ExplicitBump)
	prepared := fsm.PrepareRestore(backup, n.fsm.State().Members(), max(n.index, backup.Index())+bump)
	var buf bytes.Buffer
	if err := fsm.WriteState(&buf, prepared); err != nil {
		n.applyMu.Unlock()
		return api.RestoreResult{}, err
	}
	if err := n.fsm.Restore(io.NopCloser(&buf)); err != nil {
		n.applyMu.Unlock()
		return api.RestoreResult{}, err
	}
	n.index = prepared.Index() + 1
	n.applyMu.Unlock()
	res := n.applyLocal(fsmCmd(fsm.Restored{}))
	st := n.fsm.State()
	return api.RestoreResult{BackupIndex: backup.Index(), Index: res.Index, Bump: bump, Keys: st.KVLen(),
		Leases: st.LeaseCount(), Elections: len(st.Elections()), Digest: st.Digest()}, nil
}

func (n *fakeNode) Ready() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.readyErr
}

// KeepaliveMany is Keepalive for each id (-1: not found).
func (n *fakeNode) KeepaliveMany(ctx context.Context, ids []uint64) ([]time.Duration, error) {
	out := make([]time.Duration, len(ids))
	for i, id := range ids {
		rem, err := n.Keepalive(ctx, id)
		switch {
		case errors.Is(err, fsm.ErrLeaseNotFound):
			out[i] = -1
		case err != nil:
			return nil, err
		default:
			out[i] = rem
		}
	}
	return out, nil
}

// Keepalive answers the lease's full TTL when it exists in the FSM.
func (n *fakeNode) Keepalive(ctx context.Context, id uint64) (time.Duration, error) {
	n.maybePanic("Keepalive")
	n.mu.Lock()
	isLeader, err := n.isLeader, n.applyErr
	n.mu.Unlock()
	if !isLeader {
		return 0, httpapi.ErrNotLeader
	}
	if err != nil {
		return 0, err
	}
	l, ok := n.fsm.State().Lease(id)
	if !ok {
		return 0, fmt.Errorf("%w: %d", fsm.ErrLeaseNotFound, id)
	}
	return time.Duration(l.TTL) * time.Millisecond, nil
}

// LeaseRemaining answers the full TTL of a lease that exists.
func (n *fakeNode) LeaseRemaining(id uint64) (time.Duration, error) {
	l, ok := n.fsm.State().Lease(id)
	if !ok {
		return 0, fsm.ErrLeaseNotFound
	}
	return time.Duration(l.TTL) * time.Millisecond, nil
}

// LeaseTTLRange allows 100ms to 1h.
func (n *fakeNode) LeaseTTLRange() (time.Duration, time.Duration) {
	return 100 * time.Millisecond, time.Hour
}

// fsmCmd is fsm.NewCommand for a payload the test knows is valid.
func fsmCmd(p fsm.Payload) fsm.Command {
	c, err := fsm.NewCommand(p)
	if err != nil {
		panic(err)
	}
	return c
}

// testPeerSecret is the peer secret of every fake node: they form one
// cluster.
var testPeerSecret = bytes.Repeat([]byte{0x5e}, fsm.PeerSecretSize)

// PeerSecret implements httpapi.Node.
func (n *fakeNode) PeerSecret() []byte {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.secret != nil {
		return n.secret
	}
	return testPeerSecret
}

// forwardedBy returns the headers (name, value pairs for do) with which
// node from forwards method uri: X-Coordd-Forwarded-By and its
// X-Coordd-Peer-Auth signature, as docs/api.md describes them.
func forwardedBy(from, method, uri string) []string {
	now := time.Now().Unix()
	m := hmac.New(sha256.New, testPeerSecret)
	for _, f := range []string{"v1", method, uri, from, strconv.FormatInt(now, 10)} {
		m.Write([]byte(f))
		m.Write([]byte{0})
	}
	return []string{"X-Coordd-Forwarded-By", from, "X-Coordd-Peer-Auth", fmt.Sprintf("v1 %d %s", now, hex.EncodeToString(m.Sum(nil)))}
}
