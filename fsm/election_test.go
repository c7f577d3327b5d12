package fsm_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/coordd/coordd/fsm"
)

// replica applies commands with increasing indexes and a settable stamp.
type replica struct {
	t     *testing.T
	f     *fsm.FSM
	index uint64
	stamp int64
}

func newReplica(t *testing.T) *replica { return &replica{t: t, f: fsm.New(), stamp: 1e18} }

func (r *replica) apply(cmd fsm.Command) *fsm.Result {
	r.t.Helper()
	r.index++
	cmd.Stamp = r.stamp
	res, ok := r.f.Apply(&raft.Log{Index: r.index, Term: 1, Data: cmd.Encode()}).(*fsm.Result)
	if !ok {
		r.t.Fatalf("apply %s: no result", cmd.Type)
	}
	return res
}

func (r *replica) grant(ttl int64) uint64 {
	r.t.Helper()
	res := r.apply(cmdOf(fsm.LeaseGrant{TTL: ttl}))
	if res.Err != nil || res.Lease == nil || res.Lease.ID != res.Index {
		r.t.Fatalf("grant: %+v", res)
	}
	return res.Lease.ID
}

func (r *replica) campaign(name string, lease uint64, value string) *fsm.Result {
	r.t.Helper()
	return r.apply(cmdOf(fsm.Campaign{Kind: fsm.KindElection, Name: name, Lease: lease, Value: []byte(value)}))
}

func (r *replica) leader(name string) (fsm.Candidate, bool) {
	e, ok := r.f.State().Election(name)
	if !ok {
		return fsm.Candidate{}, false
	}
	return e.Leader()
}

func TestCampaign_FirstLeadsWithTokenEqualToItsIndex_OthersQueueInOrder(t *testing.T) {
	r := newReplica(t)
	a, b, c := r.grant(1000), r.grant(1000), r.grant(1000)
	ra := r.campaign("db", a, "A")
	if !ra.Campaign.Holder || ra.Campaign.Token != ra.Index || ra.Campaign.Position != 0 {
		t.Fatalf("first campaign: %+v", ra.Campaign)
	}
	rb, rc := r.campaign("db", b, "B"), r.campaign("db", c, "C")
	if rb.Campaign.Holder || rb.Campaign.Position != 1 || rc.Campaign.Position != 2 {
		t.Fatalf("queue: %+v %+v", rb.Campaign, rc.Campaign)
	}
	// Campaigning again with the same lease does not queue twice.
	if again := r.campaign("db", b, "B2"); again.Campaign.Position != 1 {
		t.Fatalf("repeat campaign: %+v", again.Campaign)
	}
	e, _ := r.f.State().Election("db")
	if len(e.Waiting) != 2 {
		t.Fatalf("waiting: %+v", e.Waiting)
	}
}

func TestResign_HandsOverToTheNextCandidateInTheSameEntry(t *testing.T) {
	r := newReplica(t)
	a, b := r.grant(1000), r.grant(1000)
	ta := r.campaign("db", a, "A").Campaign.Token
	r.campaign("db", b, "B")
	res := r.apply(cmdOf(fsm.Resign{Name: "db", Lease: a, Token: ta}))
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	l, ok := r.leader("db")
	if !ok || l.Lease != b || l.Token != res.Index || string(l.Value) != "B" || l.Token <= ta {
		t.Fatalf("after resign: %+v (resign index %d)", l, res.Index)
	}
}

func TestResignAndProclaim_RefuseWrongTokenAndNonHolders(t *testing.T) {
	r := newReplica(t)
	a, b := r.grant(1000), r.grant(1000)
	ta := r.campaign("db", a, "A").Campaign.Token
	r.campaign("db", b, "B")
	var st *fsm.StaleTokenError
	if res := r.apply(cmdOf(fsm.Resign{Name: "db", Lease: a, Token: ta - 1})); !errors.As(res.Err, &st) || st.Current != ta {
		t.Fatalf("stale resign: %v", res.Err)
	}
	if res := r.apply(cmdOf(fsm.Proclaim{Name: "db", Lease: b, Token: ta, Value: []byte("x")})); !errors.Is(res.Err, fsm.ErrNotHolder) {
		t.Fatalf("proclaim by a waiter: %v", res.Err)
	}
	if res := r.apply(cmdOf(fsm.Resign{Name: "nope", Lease: a, Token: ta})); !errors.Is(res.Err, fsm.ErrElectionNotFound) {
		t.Fatalf("resign unknown: %v", res.Err)
	}
	res := r.apply(cmdOf(fsm.Proclaim{Name: "db", Lease: a, Token: ta, Value: []byte("A2")}))
	if l, _ := r.leader("db"); res.Err != nil || string(l.Value) != "A2" || l.Token != ta {
		t.Fatalf("proclaim: %v %+v", res.Err, l)
	}
	// A waiter withdraws with token 0.
	if res := r.apply(cmdOf(fsm.Resign{Name: "db", Lease: b})); res.Err != nil {
		t.Fatal(res.Err)
	}
	if e, _ := r.f.State().Election("db"); len(e.Waiting) != 0 {
		t.Fatalf("withdrawn waiter still queued: %+v", e.Waiting)
	}
}

func TestExpiry_ReleasesElectionsAndKeysInOneEntry_AndIsConditionalOnTheEpoch(t *testing.T) {
	r := newReplica(t)
	a, b := r.grant(1000), r.grant(1000)
	r.campaign("db", a, "A")
	r.campaign("db", b, "B")
	if res := r.apply(cmdOf(fsm.KVPut{Key: "eph", Value: []byte("x"), Lease: a})); res.Err != nil {
		t.Fatal(res.Err)
	}
	la, _ := r.f.State().Lease(a)
	// A checkpoint moves the epoch: an expiry proposed before it is stale.
	ck := r.apply(cmdOf(fsm.LeaseCheckpoint{Leases: []fsm.LeaseRemaining{{ID: a, Epoch: la.Epoch, Remaining: 400}}}))
	if len(ck.Checkpointed) != 1 {
		t.Fatalf("checkpoint: %+v", ck)
	}
	if res := r.apply(cmdOf(fsm.LeaseExpire{Leases: []fsm.LeaseExpiry{{ID: a, Epoch: la.Epoch}}})); len(res.Expired) != 0 {
		t.Fatalf("stale expiry applied: %+v", res)
	}
	la2, _ := r.f.State().Lease(a)
	if la2.Remaining != 400 || la2.Epoch != ck.Index {
		t.Fatalf("after checkpoint: %+v", la2)
	}
	res := r.apply(cmdOf(fsm.LeaseExpire{Leases: []fsm.LeaseExpiry{{ID: a, Epoch: la2.Epoch}}}))
	if len(res.Expired) != 1 {
		t.Fatalf("expiry not applied: %+v", res)
	}
	if _, ok := r.f.State().Lease(a); ok {
		t.Fatal("lease still there")
	}
	if _, ok := r.f.State().Get("eph"); ok {
		t.Fatal("attached key survived its lease")
	}
	if l, ok := r.leader("db"); !ok || l.Lease != b || l.Token != res.Index {
		t.Fatalf("next candidate not promoted by the expiry entry: %+v", l)
	}
	if atts := r.f.State().Attachments(a); len(atts) != 0 {
		t.Fatalf("attachments left: %+v", atts)
	}
}

func TestRenew_ClearsTheCheckpointedRemainder(t *testing.T) {
	r := newReplica(t)
	a := r.grant(1000)
	l, _ := r.f.State().Lease(a)
	r.apply(cmdOf(fsm.LeaseCheckpoint{Leases: []fsm.LeaseRemaining{{ID: a, Epoch: l.Epoch, Remaining: 10}}}))
	res := r.apply(cmdOf(fsm.LeaseRenew{ID: a}))
	if res.Err != nil || res.Lease.Remaining != 0 || res.Lease.Epoch != res.Index {
		t.Fatalf("renew: %+v %v", res.Lease, res.Err)
	}
	if res := r.apply(cmdOf(fsm.LeaseRenew{ID: 999})); !errors.Is(res.Err, fsm.ErrLeaseNotFound) {
		t.Fatalf("renew unknown: %v", res.Err)
	}
}

func TestRenewMany_RenewsEachLeaseThatExistsInOneEntry(t *testing.T) {
	r := newReplica(t)
	a, b, c := r.grant(1000), r.grant(1000), r.grant(1000)
	var cps []fsm.LeaseRemaining
	for _, id := range []uint64{a, b} {
		l, _ := r.f.State().Lease(id)
		cps = append(cps, fsm.LeaseRemaining{ID: id, Epoch: l.Epoch, Remaining: 10})
	}
	r.apply(cmdOf(fsm.LeaseCheckpoint{Leases: cps}))
	r.apply(cmdOf(fsm.LeaseRevoke{ID: c}))
	res := r.apply(cmdOf(fsm.LeaseRenewMany{IDs: []uint64{b, c, 999, a}}))
	if res.Err != nil || !slices.Equal(res.Renewed, []uint64{b, a}) {
		t.Fatalf("renewed %v, err %v; want [%d %d]", res.Renewed, res.Err, b, a)
	}
	for _, id := range []uint64{a, b} {
		if l, _ := r.f.State().Lease(id); l.Remaining != 0 || l.CheckpointStamp != 0 || l.Epoch != res.Index {
			t.Fatalf("lease %d after the renew: %+v (entry %d)", id, l, res.Index)
		}
	}
	// An empty batch is valid and changes nothing.
	if res := r.apply(cmdOf(fsm.LeaseRenewMany{})); res.Err != nil || len(res.Renewed) != 0 {
		t.Fatalf("empty renew: %+v", res)
	}
}

func TestLockDelay_HoldsBackTheNextHolderAfterAFailureButNotAfterARelease(t *testing.T) {
	r := newReplica(t)
	a, b, c := r.grant(1000), r.grant(1000), r.grant(1000)
	lock := func(lease uint64) *fsm.Result {
		return r.apply(cmdOf(fsm.Campaign{Kind: fsm.KindLock, Name: "L", Lease: lease, LockDelay: 5000}))
	}
	ta := lock(a).Campaign.Token
	lock(b)
	lock(c)
	// Release: the next holder at once.
	r.apply(cmdOf(fsm.Resign{Name: "L", Lease: a, Token: ta}))
	if l, _ := r.leader("L"); l.Lease != b {
		t.Fatalf("after release: %+v", l)
	}
	// Failure (revoke): nobody for 5 s of leader stamps.
	r.apply(cmdOf(fsm.LeaseRevoke{ID: b}))
	if _, ok := r.leader("L"); ok {
		t.Fatal("a new holder during the lock-delay")
	}
	if d := r.f.State().DelayedElections(); d["L"] != r.stamp+5000*1e6 || len(d) != 1 {
		t.Fatalf("delayed: %v", d)
	}
	// The index of delayed names is rebuilt from a snapshot.
	restored, err := fsm.ReadState(bytes.NewReader(stateBytes(t, r.f.State())))
	if err != nil {
		t.Fatal(err)
	}
	if d := restored.DelayedElections(); d["L"] != r.stamp+5000*1e6 || len(d) != 1 {
		t.Fatalf("delayed after restore: %v", d)
	}
	r.stamp += 4999 * 1e6
	r.apply(cmdOf(fsm.Promote{Name: "L"}))
	if _, ok := r.leader("L"); ok {
		t.Fatal("promoted before the delay ended")
	}
	r.stamp += 1e6
	res := r.apply(cmdOf(fsm.Promote{Name: "L"}))
	if l, ok := r.leader("L"); !ok || l.Lease != c || l.Token != res.Index || res.Promoted != 1 {
		t.Fatalf("after the delay: %+v", l)
	}
	if d := r.f.State().DelayedElections(); len(d) != 0 {
		t.Fatalf("still delayed after the promote: %v", d)
	}
}

func TestSemaphore_AdmitsUpToItsLimit(t *testing.T) {
	r := newReplica(t)
	var ids []uint64
	for range 4 {
		ids = append(ids, r.grant(1000))
	}
	for i, id := range ids {
		res := r.apply(cmdOf(fsm.Campaign{Kind: fsm.KindLock, Name: "S", Lease: id, Limit: 2}))
		if res.Campaign.Holder != (i < 2) {
			t.Fatalf("lease %d: %+v", i, res.Campaign)
		}
	}
	if res := r.apply(cmdOf(fsm.Campaign{Kind: fsm.KindLock, Name: "S", Lease: ids[0], Limit: 3})); !errors.Is(res.Err, fsm.ErrLimitMismatch) {
		t.Fatalf("limit mismatch: %v", res.Err)
	}
	if res := r.apply(cmdOf(fsm.Campaign{Kind: fsm.KindElection, Name: "S", Lease: ids[0]})); !errors.Is(res.Err, fsm.ErrKindMismatch) {
		t.Fatalf("kind mismatch: %v", res.Err)
	}
	r.apply(cmdOf(fsm.LeaseRevoke{ID: ids[0]}))
	if e, _ := r.f.State().Election("S"); len(e.Holders) != 2 || e.Holders[1].Lease != ids[2] {
		t.Fatalf("after a holder left: %+v", e.Holders)
	}
}

func TestCampaign_ReleasedNamesAreCollectedAtOnceAndTokensStayMonotonic(t *testing.T) {
	r := newReplica(t)
	if res := r.campaign("x", 42, ""); !errors.Is(res.Err, fsm.ErrLeaseNotFound) {
		t.Fatalf("campaign with unknown lease: %v", res.Err)
	}
	if _, ok := r.f.State().Election("x"); ok {
		t.Fatal("a refused campaign made the election")
	}
	a := r.grant(1000)
	tok := r.campaign("x", a, "").Campaign.Token
	res := r.apply(cmdOf(fsm.Resign{Name: "x", Lease: a, Token: tok}))
	if res.Err != nil || res.Election == nil || res.Election.Changes != 2 || len(res.Election.Holders) != 0 {
		t.Fatalf("resign: %+v", res)
	}
	// Nobody holds or waits: gone in the same entry.
	if _, ok := r.f.State().Election("x"); ok {
		t.Fatal("released election kept")
	}
	if _, idx, _ := r.f.State().WatchElection("x"); idx != r.index {
		t.Fatalf("missing election's change index %d, want %d (the release)", idx, r.index)
	}
	if len(r.f.State().Attachments(a)) != 0 {
		t.Fatalf("lease %d still attached: %+v", a, r.f.State().Attachments(a))
	}
	// Made again, the name gets a higher token: tokens are Raft indexes.
	b := r.grant(1000)
	if again := r.campaign("x", b, "").Campaign.Token; again <= tok {
		t.Fatalf("token %d after re-creation, not above %d", again, tok)
	}
	// A name under lock-delay is kept until the delay has passed.
	c := r.grant(1000)
	r.apply(cmdOf(fsm.Campaign{Kind: fsm.KindLock, Name: "L", Lease: c, LockDelay: 100}))
	r.apply(cmdOf(fsm.LeaseRevoke{ID: c}))
	e, ok := r.f.State().Election("L")
	if !ok || e.EmptySince == 0 || e.DelayUntil != r.stamp+100e6 {
		t.Fatalf("lock under lock-delay: %+v, %v", e, ok)
	}
	r.stamp += 100e6 - 1
	r.grant(1000)
	if _, ok := r.f.State().Election("L"); !ok {
		t.Fatal("lock collected before its lock-delay passed")
	}
	r.stamp += 2
	r.grant(1000)
	if _, ok := r.f.State().Election("L"); ok {
		t.Fatal("lock not collected after its lock-delay passed")
	}
}

func TestChanges_AHandOffIsOneChange(t *testing.T) {
	r := newReplica(t)
	a, b := r.grant(1000), r.grant(1000)
	tok := r.campaign("db", a, "A").Campaign.Token
	r.campaign("db", b, "B")
	e, _ := r.f.State().Election("db")
	before := e.Changes
	res := r.apply(cmdOf(fsm.Resign{Name: "db", Lease: a, Token: tok}))
	if l, ok := res.Election.Leader(); !ok || l.Lease != b || res.Promoted != 1 {
		t.Fatalf("hand-off: %+v", res.Election)
	}
	if got := res.Election.Changes; got != before+1 {
		t.Fatalf("a hand-off counted %d changes, want 1", got-before)
	}
	// An expiry batch that removes two holders of a semaphore, and
	// promotes a waiter, is one entry: one change.
	r2 := newReplica(t)
	ids := []uint64{r2.grant(1000), r2.grant(1000), r2.grant(1000)}
	for _, id := range ids {
		r2.apply(cmdOf(fsm.Campaign{Kind: fsm.KindLock, Name: "S", Lease: id, Limit: 2}))
	}
	e, _ = r2.f.State().Election("S")
	before = e.Changes
	res = r2.apply(cmdOf(fsm.LeaseExpire{Leases: []fsm.LeaseExpiry{{ID: ids[0], Epoch: ids[0]}, {ID: ids[1], Epoch: ids[1]}}}))
	if e, _ = r2.f.State().Election("S"); len(e.Holders) != 1 || e.Changes != before+1 || len(res.Expired) != 2 {
		t.Fatalf("after the batch: %+v (changes %d, before %d)", e, e.Changes, before)
	}
}

func TestAttachments_ReportLocksAsLocks(t *testing.T) {
	r := newReplica(t)
	a := r.grant(1000)
	r.campaign("e", a, "")
	r.apply(cmdOf(fsm.Campaign{Kind: fsm.KindLock, Name: "l", Lease: a}))
	r.apply(cmdOf(fsm.KVPut{Key: "k", Lease: a}))
	got := map[string]string{}
	for _, at := range r.f.State().Attachments(a) {
		got[at.Name] = at.Kind
	}
	if got["e"] != "election" || got["l"] != "lock" || got["k"] != "key" || len(got) != 3 {
		t.Fatalf("attachments %v", got)
	}
}

func TestElectionWatch_FiresOnLeaderChange(t *testing.T) {
	r := newReplica(t)
	a, b := r.grant(1000), r.grant(1000)
	tok := r.campaign("db", a, "A").Campaign.Token
	r.campaign("db", b, "B")
	_, _, w := r.f.State().WatchElection("db")
	_, lw := r.f.State().WatchLease(b)
	r.apply(cmdOf(fsm.Resign{Name: "db", Lease: a, Token: tok}))
	if !closed(w) {
		t.Fatal("election watch did not fire")
	}
	if closed(lw) {
		t.Fatal("lease watch fired without a lease change")
	}
	r.apply(cmdOf(fsm.LeaseRevoke{ID: b}))
	if !closed(lw) {
		t.Fatal("lease watch did not fire on revoke")
	}
}

func TestLeasesAndElections_SurviveSnapshotRoundTrip(t *testing.T) {
	r := newReplica(t)
	a, b := r.grant(1000), r.grant(2000)
	r.campaign("db", a, "A")
	r.campaign("db", b, "B")
	r.apply(cmdOf(fsm.Campaign{Kind: fsm.KindLock, Name: "L", Lease: b, LockDelay: 100}))
	r.apply(cmdOf(fsm.KVPut{Key: "k", Value: []byte("v"), Lease: b}))
	cmd := cmdOf(fsm.LeaseGrant{TTL: 3000})
	cmd.IdempotencyKey = "grant-1"
	r.apply(cmd)
	var buf bytes.Buffer
	if err := fsm.WriteState(&buf, r.f.State()); err != nil {
		t.Fatal(err)
	}
	want := bytes.Clone(buf.Bytes())
	got, err := fsm.ReadState(bytes.NewReader(want))
	if err != nil {
		t.Fatal(err)
	}
	var again bytes.Buffer
	if err := fsm.WriteState(&again, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(want, again.Bytes()) {
		t.Fatal("state with leases, elections, locks and dedup does not round-trip")
	}
	if len(got.Attachments(b)) != 3 || got.DedupLen() != 1 || got.LeaseCount() != 3 {
		t.Fatalf("restored: attachments %v dedup %d leases %d", got.Attachments(b), got.DedupLen(), got.LeaseCount())
	}
}

// TestLeasesAndElections_ReplicasAgree applies the same random mix of lease,
// election, lock and KV commands to two replicas, and to a third restored
// from a snapshot half way: all end byte-identical, result by result.
func TestLeasesAndElections_ReplicasAgree(t *testing.T) {
	for seed := range uint64(4) {
		rng := rand.New(rand.NewPCG(seed, 7))
		var cmds []fsm.Command
		stamp := int64(1e18)
		for i := range 1500 {
			lease := uint64(1 + rng.IntN(i+1))
			name := []string{"a", "b", "c"}[rng.IntN(3)]
			var c fsm.Command
			switch rng.IntN(10) {
			case 0, 1:
				c = cmdOf(fsm.LeaseGrant{TTL: int64(100 + rng.IntN(5000))})
			case 2:
				c = cmdOf(fsm.LeaseRevoke{ID: lease})
			case 3:
				c = cmdOf(fsm.LeaseExpire{Leases: []fsm.LeaseExpiry{{ID: lease, Epoch: lease}, {ID: lease + 1, Epoch: uint64(rng.IntN(i + 2))}}})
			case 4:
				c = cmdOf(fsm.LeaseCheckpoint{Leases: []fsm.LeaseRemaining{{ID: lease, Epoch: lease, Remaining: int64(rng.IntN(900))}}})
			case 5:
				c = cmdOf(fsm.Campaign{Kind: fsm.KindElection, Name: name, Lease: lease, Value: []byte{byte(i)}, LockDelay: int64(rng.IntN(3)) * 100})
			case 6:
				c = cmdOf(fsm.Campaign{Kind: fsm.KindLock, Name: "lock-" + name, Lease: lease, Limit: 2})
			case 7:
				c = cmdOf(fsm.Resign{Name: name, Lease: lease, Token: uint64(rng.IntN(i + 2))})
			case 8:
				c = cmdOf(fsm.KVPut{Key: "k/" + name, Value: []byte{byte(i)}, Lease: lease})
			default:
				c = cmdOf(fsm.Promote{Name: name})
			}
			if rng.IntN(4) == 0 {
				c.IdempotencyKey = fmt.Sprintf("key-%d", rng.IntN(100))
			}
			stamp += int64(rng.IntN(200)) * 1e6
			c.Stamp = stamp
			cmds = append(cmds, c)
		}
		apply := func(f *fsm.FSM, from int) []string {
			var out []string
			for i := from; i < len(cmds); i++ {
				res := f.Apply(&raft.Log{Index: uint64(i + 1), Term: 1, Data: cmds[i].Encode()}).(*fsm.Result)
				out = append(out, fmt.Sprintf("%d %v %v %v %d", res.Index, res.Err, res.Expired, res.Campaign, res.Promoted))
			}
			return out
		}
		a, b := fsm.New(), fsm.New()
		ra, rb := apply(a, 0), apply(b, 0)
		half := len(cmds) / 2
		c := fsm.New()
		for i := range half {
			c.Apply(&raft.Log{Index: uint64(i + 1), Term: 1, Data: cmds[i].Encode()})
		}
		var buf bytes.Buffer
		if err := fsm.WriteState(&buf, c.State()); err != nil {
			t.Fatal(err)
		}
		d := fsm.New()
		if err := d.Restore(io.NopCloser(&buf)); err != nil {
			t.Fatal(err)
		}
		rd := apply(d, half)
		for i := range ra {
			if ra[i] != rb[i] || (i >= half && ra[i] != rd[i-half]) {
				t.Fatalf("seed %d entry %d: results differ: %q %q", seed, i+1, ra[i], rb[i])
			}
		}
		sa, sb, sd := stateBytes(t, a.State()), stateBytes(t, b.State()), stateBytes(t, d.State())
		if !bytes.Equal(sa, sb) || !bytes.Equal(sa, sd) {
			t.Fatalf("seed %d: replicas diverged", seed)
		}
	}
}

// A campaign with NewLeaseTTL grants the lease and queues it in one entry:
// the lease's ID and the holder's token are both the entry's index.
func TestCampaign_NewLease_GrantsAndQueuesInOneEntry(t *testing.T) {
	r := newReplica(t)
	res := r.apply(cmdOf(fsm.Campaign{Kind: fsm.KindLock, Name: "job", NewLeaseTTL: 2000}))
	if res.Err != nil || res.Lease == nil || res.Lease.ID != res.Index || res.Lease.TTL != 2000 {
		t.Fatalf("campaign with a new lease: %+v", res)
	}
	if !res.Campaign.Holder || res.Campaign.Token != res.Index {
		t.Fatalf("campaign: %+v", res.Campaign)
	}
	if l, ok := r.f.State().Lease(res.Index); !ok || l.TTL != 2000 {
		t.Fatalf("lease in the state: %+v %v", l, ok)
	}
	if att := r.f.State().Attachments(res.Index); len(att) != 1 {
		t.Fatalf("attachments: %+v", att)
	}
	// A second one queues behind it; revoking the first hands over.
	res2 := r.apply(cmdOf(fsm.Campaign{Kind: fsm.KindLock, Name: "job", NewLeaseTTL: 2000}))
	if res2.Err != nil || res2.Campaign.Holder || res2.Campaign.Position != 1 {
		t.Fatalf("second: %+v %+v", res2, res2.Campaign)
	}
	r.apply(cmdOf(fsm.LeaseRevoke{ID: res.Index}))
	e, _ := r.f.State().Election("job")
	if h, ok := e.Leader(); !ok || h.Lease != res2.Index {
		t.Fatalf("after revoke: %+v", e)
	}
}

// A refused campaign with NewLeaseTTL creates no lease: the command is
// applied whole or not at all.
func TestCampaign_NewLease_RefusedCampaignCreatesNoLease(t *testing.T) {
	r := newReplica(t)
	a := r.grant(1000)
	r.campaign("db", a, "A") // an election named db
	before := len(r.f.State().Leases())
	res := r.apply(cmdOf(fsm.Campaign{Kind: fsm.KindLock, Name: "db", NewLeaseTTL: 2000}))
	if !errors.Is(res.Err, fsm.ErrKindMismatch) || res.Lease != nil {
		t.Fatalf("lock on an election with a new lease: %+v", res)
	}
	if got := len(r.f.State().Leases()); got != before {
		t.Fatalf("%d leases after a refused campaign, want %d", got, before)
	}
}

// The combined form round-trips, and the decoder refuses a new-lease TTL
// that is not positive or comes with an existing lease.
func TestCampaign_NewLease_EncodingAndBadForms(t *testing.T) {
	good := fsm.Campaign{Kind: fsm.KindLock, Name: "n", NewLeaseTTL: 750}
	s := buildState(t, cmdOf(good))
	if len(s.Leases()) != 1 {
		t.Fatalf("leases: %d", len(s.Leases()))
	}
	for _, bad := range []fsm.Campaign{
		{Kind: fsm.KindLock, Name: "n", NewLeaseTTL: -5},
		{Kind: fsm.KindLock, Name: "n", Lease: 3, NewLeaseTTL: 750},
		{Kind: fsm.KindLock, Name: "n"},
		{Kind: fsm.KindLock, Lease: 3},
		{Kind: 3, Name: "n", Lease: 3},
		{Kind: fsm.KindLock, Name: "n", Lease: 3, LockDelay: -1},
		{Kind: fsm.KindLock, Name: "n", Lease: 3, MaxCandidates: fsm.MaxLimit + 1},
	} {
		if _, err := fsm.NewCommand(bad); !errors.Is(err, fsm.ErrInvalid) {
			t.Fatalf("NewCommand(%+v) = %v, want ErrInvalid", bad, err)
		}
	}
	// Forged entries (the version 1 trailing TTL made -5, or given with a
	// lease) are bad commands: Check refuses them and Apply panics.
	base := cmdOf(fsm.Campaign{Kind: fsm.KindLock, Name: "n", NewLeaseTTL: 750})
	withLease := cmdOf(fsm.Campaign{Kind: fsm.KindLock, Name: "n", Lease: 3})
	ttl := binary.AppendVarint(nil, 750)
	for _, forged := range [][]byte{
		append(bytes.TrimSuffix(base.Payload, ttl), binary.AppendVarint(nil, -5)...),
		append(slices.Clone(withLease.Payload), ttl...),
	} {
		c := fsm.Command{Type: fsm.CmdCampaign, Version: 1, Payload: forged}
		if err := fsm.Check(c); !errors.Is(err, fsm.ErrBadCommand) {
			t.Fatalf("Check(% x) = %v", forged, err)
		}
		v := mustPanic(t, func() { buildState(t, c) })
		panicMentionsBadCommand(t, v)
	}
}
