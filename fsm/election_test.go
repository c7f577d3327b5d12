package fsm_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
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
	res := r.apply(fsm.NewLeaseGrant(ttl))
	if res.Err != nil || res.Lease == nil || res.Lease.ID != res.Index {
		r.t.Fatalf("grant: %+v", res)
	}
	return res.Lease.ID
}

func (r *replica) campaign(name string, lease uint64, value string) *fsm.Result {
	r.t.Helper()
	return r.apply(fsm.NewCampaign(fsm.Campaign{Kind: fsm.KindElection, Name: name, Lease: lease, Value: []byte(value)}))
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
	res := r.apply(fsm.NewResign(fsm.Resign{Name: "db", Lease: a, Token: ta}))
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
	if res := r.apply(fsm.NewResign(fsm.Resign{Name: "db", Lease: a, Token: ta - 1})); !errors.As(res.Err, &st) || st.Current != ta {
		t.Fatalf("stale resign: %v", res.Err)
	}
	if res := r.apply(fsm.NewProclaim(fsm.Proclaim{Name: "db", Lease: b, Token: ta, Value: []byte("x")})); !errors.Is(res.Err, fsm.ErrNotHolder) {
		t.Fatalf("proclaim by a waiter: %v", res.Err)
	}
	if res := r.apply(fsm.NewResign(fsm.Resign{Name: "nope", Lease: a, Token: ta})); !errors.Is(res.Err, fsm.ErrElectionNotFound) {
		t.Fatalf("resign unknown: %v", res.Err)
	}
	res := r.apply(fsm.NewProclaim(fsm.Proclaim{Name: "db", Lease: a, Token: ta, Value: []byte("A2")}))
	if l, _ := r.leader("db"); res.Err != nil || string(l.Value) != "A2" || l.Token != ta {
		t.Fatalf("proclaim: %v %+v", res.Err, l)
	}
	// A waiter withdraws with token 0.
	if res := r.apply(fsm.NewResign(fsm.Resign{Name: "db", Lease: b})); res.Err != nil {
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
	if res := r.apply(fsm.NewKVPut(fsm.KVPut{Key: "eph", Value: []byte("x"), Lease: a})); res.Err != nil {
		t.Fatal(res.Err)
	}
	la, _ := r.f.State().Lease(a)
	// A checkpoint moves the epoch: an expiry proposed before it is stale.
	ck := r.apply(fsm.NewLeaseCheckpoint(fsm.LeaseCheckpoint{Leases: []fsm.LeaseRemaining{{ID: a, Epoch: la.Epoch, Remaining: 400}}}))
	if len(ck.Checkpointed) != 1 {
		t.Fatalf("checkpoint: %+v", ck)
	}
	if res := r.apply(fsm.NewLeaseExpire(fsm.LeaseExpire{Leases: []fsm.LeaseExpiry{{ID: a, Epoch: la.Epoch}}})); len(res.Expired) != 0 {
		t.Fatalf("stale expiry applied: %+v", res)
	}
	la2, _ := r.f.State().Lease(a)
	if la2.Remaining != 400 || la2.Epoch != ck.Index {
		t.Fatalf("after checkpoint: %+v", la2)
	}
	res := r.apply(fsm.NewLeaseExpire(fsm.LeaseExpire{Leases: []fsm.LeaseExpiry{{ID: a, Epoch: la2.Epoch}}}))
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
	r.apply(fsm.NewLeaseCheckpoint(fsm.LeaseCheckpoint{Leases: []fsm.LeaseRemaining{{ID: a, Epoch: l.Epoch, Remaining: 10}}}))
	res := r.apply(fsm.NewLeaseRenew(a))
	if res.Err != nil || res.Lease.Remaining != 0 || res.Lease.Epoch != res.Index {
		t.Fatalf("renew: %+v %v", res.Lease, res.Err)
	}
	if res := r.apply(fsm.NewLeaseRenew(999)); !errors.Is(res.Err, fsm.ErrLeaseNotFound) {
		t.Fatalf("renew unknown: %v", res.Err)
	}
}

func TestLockDelay_HoldsBackTheNextHolderAfterAFailureButNotAfterARelease(t *testing.T) {
	r := newReplica(t)
	a, b, c := r.grant(1000), r.grant(1000), r.grant(1000)
	lock := func(lease uint64) *fsm.Result {
		return r.apply(fsm.NewCampaign(fsm.Campaign{Kind: fsm.KindLock, Name: "L", Lease: lease, LockDelay: 5000}))
	}
	ta := lock(a).Campaign.Token
	lock(b)
	lock(c)
	// Release: the next holder at once.
	r.apply(fsm.NewResign(fsm.Resign{Name: "L", Lease: a, Token: ta}))
	if l, _ := r.leader("L"); l.Lease != b {
		t.Fatalf("after release: %+v", l)
	}
	// Failure (revoke): nobody for 5 s of leader stamps.
	r.apply(fsm.NewLeaseRevoke(b))
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
	r.apply(fsm.NewPromote("L"))
	if _, ok := r.leader("L"); ok {
		t.Fatal("promoted before the delay ended")
	}
	r.stamp += 1e6
	res := r.apply(fsm.NewPromote("L"))
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
		res := r.apply(fsm.NewCampaign(fsm.Campaign{Kind: fsm.KindLock, Name: "S", Lease: id, Limit: 2}))
		if res.Campaign.Holder != (i < 2) {
			t.Fatalf("lease %d: %+v", i, res.Campaign)
		}
	}
	if res := r.apply(fsm.NewCampaign(fsm.Campaign{Kind: fsm.KindLock, Name: "S", Lease: ids[0], Limit: 3})); !errors.Is(res.Err, fsm.ErrLimitMismatch) {
		t.Fatalf("limit mismatch: %v", res.Err)
	}
	if res := r.apply(fsm.NewCampaign(fsm.Campaign{Kind: fsm.KindElection, Name: "S", Lease: ids[0]})); !errors.Is(res.Err, fsm.ErrKindMismatch) {
		t.Fatalf("kind mismatch: %v", res.Err)
	}
	r.apply(fsm.NewLeaseRevoke(ids[0]))
	if e, _ := r.f.State().Election("S"); len(e.Holders) != 2 || e.Holders[1].Lease != ids[2] {
		t.Fatalf("after a holder left: %+v", e.Holders)
	}
}

func TestCampaign_UnknownLeaseAndEmptyElectionsAreKeptThenCollected(t *testing.T) {
	r := newReplica(t)
	if res := r.campaign("x", 42, ""); !errors.Is(res.Err, fsm.ErrLeaseNotFound) {
		t.Fatalf("campaign with unknown lease: %v", res.Err)
	}
	a := r.grant(1000)
	tok := r.campaign("x", a, "").Campaign.Token
	r.apply(fsm.NewResign(fsm.Resign{Name: "x", Lease: a, Token: tok}))
	// Kept, with its counters, so observers can see what happened.
	e, ok := r.f.State().Election("x")
	if !ok || e.Changes != 2 || e.EmptySince == 0 {
		t.Fatalf("empty election: %+v %v", e, ok)
	}
	// Collected after ElectionRetention of leader time.
	r.stamp += int64(fsm.ElectionRetention) + 1
	r.grant(1000)
	if _, ok := r.f.State().Election("x"); ok {
		t.Fatal("empty election not collected after the retention")
	}
	if _, idx, _ := r.f.State().WatchElection("x"); idx != r.index {
		t.Fatalf("missing election's change index %d, want %d", idx, r.index)
	}
	// A name in use again is not collected.
	b := r.grant(1000)
	r.campaign("y", b, "")
	r.stamp += int64(fsm.ElectionRetention) * 2
	r.grant(1000)
	if _, ok := r.f.State().Election("y"); !ok {
		t.Fatal("an election in use was collected")
	}
}

func TestElectionWatch_FiresOnLeaderChange(t *testing.T) {
	r := newReplica(t)
	a, b := r.grant(1000), r.grant(1000)
	tok := r.campaign("db", a, "A").Campaign.Token
	r.campaign("db", b, "B")
	_, _, w := r.f.State().WatchElection("db")
	_, lw := r.f.State().WatchLease(b)
	r.apply(fsm.NewResign(fsm.Resign{Name: "db", Lease: a, Token: tok}))
	if !closed(w) {
		t.Fatal("election watch did not fire")
	}
	if closed(lw) {
		t.Fatal("lease watch fired without a lease change")
	}
	r.apply(fsm.NewLeaseRevoke(b))
	if !closed(lw) {
		t.Fatal("lease watch did not fire on revoke")
	}
}

func TestLeasesAndElections_SurviveSnapshotRoundTrip(t *testing.T) {
	r := newReplica(t)
	a, b := r.grant(1000), r.grant(2000)
	r.campaign("db", a, "A")
	r.campaign("db", b, "B")
	r.apply(fsm.NewCampaign(fsm.Campaign{Kind: fsm.KindLock, Name: "L", Lease: b, LockDelay: 100}))
	r.apply(fsm.NewKVPut(fsm.KVPut{Key: "k", Value: []byte("v"), Lease: b}))
	cmd := fsm.NewLeaseGrant(3000)
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
				c = fsm.NewLeaseGrant(int64(100 + rng.IntN(5000)))
			case 2:
				c = fsm.NewLeaseRevoke(lease)
			case 3:
				c = fsm.NewLeaseExpire(fsm.LeaseExpire{Leases: []fsm.LeaseExpiry{{ID: lease, Epoch: lease}, {ID: lease + 1, Epoch: uint64(rng.IntN(i + 2))}}})
			case 4:
				c = fsm.NewLeaseCheckpoint(fsm.LeaseCheckpoint{Leases: []fsm.LeaseRemaining{{ID: lease, Epoch: lease, Remaining: int64(rng.IntN(900))}}})
			case 5:
				c = fsm.NewCampaign(fsm.Campaign{Kind: fsm.KindElection, Name: name, Lease: lease, Value: []byte{byte(i)}, LockDelay: int64(rng.IntN(3)) * 100})
			case 6:
				c = fsm.NewCampaign(fsm.Campaign{Kind: fsm.KindLock, Name: "lock-" + name, Lease: lease, Limit: 2})
			case 7:
				c = fsm.NewResign(fsm.Resign{Name: name, Lease: lease, Token: uint64(rng.IntN(i + 2))})
			case 8:
				c = fsm.NewKVPut(fsm.KVPut{Key: "k/" + name, Value: []byte{byte(i)}, Lease: lease})
			default:
				c = fsm.NewPromote(name)
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
	res := r.apply(fsm.NewCampaign(fsm.Campaign{Kind: fsm.KindLock, Name: "job", NewLeaseTTL: 2000}))
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
	res2 := r.apply(fsm.NewCampaign(fsm.Campaign{Kind: fsm.KindLock, Name: "job", NewLeaseTTL: 2000}))
	if res2.Err != nil || res2.Campaign.Holder || res2.Campaign.Position != 1 {
		t.Fatalf("second: %+v %+v", res2, res2.Campaign)
	}
	r.apply(fsm.NewLeaseRevoke(res.Index))
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
	res := r.apply(fsm.NewCampaign(fsm.Campaign{Kind: fsm.KindLock, Name: "db", NewLeaseTTL: 2000}))
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
	s := buildState(t, fsm.NewCampaign(good))
	if len(s.Leases()) != 1 {
		t.Fatalf("leases: %d", len(s.Leases()))
	}
	for _, bad := range []fsm.Campaign{
		{Kind: fsm.KindLock, Name: "n", NewLeaseTTL: -5},
		{Kind: fsm.KindLock, Name: "n", Lease: 3, NewLeaseTTL: 750},
	} {
		v := mustPanic(t, func() { buildState(t, fsm.NewCampaign(bad)) })
		panicMentionsBadCommand(t, v)
	}
}
