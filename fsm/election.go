package fsm

import (
	"fmt"
	"slices"
	"time"
)

// ElectionKind says which API created a name. Elections and locks share
// one namespace so that a name's fencing token is unambiguous.
type ElectionKind uint8

// Kinds. Values are part of the log format.
const (
	KindElection ElectionKind = 1
	KindLock     ElectionKind = 2
)

func (k ElectionKind) String() string {
	if k == KindLock {
		return "lock"
	}
	return "election"
}

// Candidate is a lease campaigning for, or holding, a name.
type Candidate struct {
	Lease uint64
	Value []byte
	// Token is the fencing token: the Raft index of the entry that made this
	// candidate a holder; 0 while it waits.
	Token uint64
	// Since is the leader's stamp when it became holder (or queued).
	Since int64
	// QueuedIndex is the Raft index of its campaign.
	QueuedIndex uint64
}

// Election is a named role (or lock, or counting semaphore): up to Limit
// holders, and a FIFO queue of waiting candidates. Stored values are never
// mutated; changes store a modified clone.
type Election struct {
	Name  string
	Kind  ElectionKind
	Limit int
	// LockDelay in milliseconds: after a holder fails (its lease expires or
	// is revoked), no new holder before DelayUntil.
	LockDelay  int64
	DelayUntil int64
	Holders    []Candidate
	Waiting    []Candidate
	// LastToken is the highest token issued for this name.
	LastToken uint64
	// Changes counts holder changes; observers compare it to see whether
	// intermediate changes were coalesced.
	Changes uint64
	// ModifyIndex is the Raft index of the last change of any kind.
	ModifyIndex uint64
	// EmptySince is the stamp since which nobody holds or waits (0: in
	// use). An empty name is kept, with its counters, for
	// ElectionRetention of leader time so that observers can tell what
	// happened; then it is collected.
	EmptySince int64
}

// ElectionRetention is how long an election or lock that nobody holds or
// waits for is kept before it is forgotten.
const ElectionRetention = time.Hour

// electionGCPerApply bounds the collection work of one entry.
const electionGCPerApply = 16

func emptyKey(since int64, name string) []byte {
	return append(u64key(uint64(since)), name...)
}

// collectElections forgets names that have been empty for longer than
// ElectionRetention by the leader's stamp.
func collectElections(s *State) {
	cutoff := s.stamp - int64(ElectionRetention)
	it := s.emptyElections.Root().Iterator()
	var drop [][]byte
	for k, _, ok := it.Next(); ok && len(drop) < electionGCPerApply; k, _, ok = it.Next() {
		if int64(keyU64(k)) >= cutoff {
			break
		}
		drop = append(drop, k)
	}
	for _, k := range drop {
		s.emptyElections, _, _ = s.emptyElections.Delete(k)
		s.elections, _ = del(s.elections, k[u64KeyLen:], true)
		s.electionDeleteIndex = s.index
	}
}

func (e *Election) clone() *Election {
	n := *e
	n.Holders = slices.Clone(e.Holders)
	n.Waiting = slices.Clone(e.Waiting)
	return &n
}

// Leader returns the first holder (elections have at most one).
func (e *Election) Leader() (Candidate, bool) {
	if len(e.Holders) == 0 {
		return Candidate{}, false
	}
	return e.Holders[0], true
}

// Position returns where lease stands: 0 if it holds, 1.. in the queue, -1
// if absent.
func (e *Election) Position(lease uint64) int {
	for _, h := range e.Holders {
		if h.Lease == lease {
			return 0
		}
	}
	for i, w := range e.Waiting {
		if w.Lease == lease {
			return i + 1
		}
	}
	return -1
}

// IsCurrent reports whether token is a current holder's token.
func (e *Election) IsCurrent(token uint64) bool {
	for _, h := range e.Holders {
		if h.Token == token {
			return true
		}
	}
	return false
}

// remove takes lease out of the holders or the queue. A holder that failed
// starts the lock-delay.
func (e *Election) remove(lease uint64, failed bool, stamp int64) {
	for i, h := range e.Holders {
		if h.Lease == lease {
			e.Holders = slices.Delete(e.Holders, i, i+1)
			e.Changes++
			if failed && e.LockDelay > 0 {
				e.DelayUntil = max(e.DelayUntil, stamp+e.LockDelay*1e6)
			}
			return
		}
	}
	for i, w := range e.Waiting {
		if w.Lease == lease {
			e.Waiting = slices.Delete(e.Waiting, i, i+1)
			return
		}
	}
}

// promote moves waiting candidates to holders while there is room and no
// lock-delay is running: the hand-off happens in the entry that freed the
// slot, with no client round trip. Their token is this entry's index.
func (e *Election) promote(index uint64, stamp int64) (promoted int) {
	for len(e.Holders) < e.Limit && len(e.Waiting) > 0 && stamp >= e.DelayUntil {
		c := e.Waiting[0]
		e.Waiting = e.Waiting[1:]
		c.Token, c.Since = index, stamp
		e.Holders = append(e.Holders, c)
		e.LastToken = index
		e.Changes++
		promoted++
	}
	return promoted
}

// Election returns the named election or lock.
func (s *State) Election(name string) (*Election, bool) { return s.elections.Get([]byte(name)) }

// Elections returns every election and lock in name order.
func (s *State) Elections() []*Election {
	out := make([]*Election, 0, s.elections.Len())
	s.elections.Root().Walk(func(_ []byte, e *Election) bool {
		out = append(out, e)
		return false
	})
	return out
}

// WatchElection returns the election (nil if none), its change index (its
// ModifyIndex, or for a missing one the last removal anywhere; never below
// 1) and a channel closed when it may change.
func (s *State) WatchElection(name string) (*Election, uint64, <-chan struct{}) {
	w, e, ok := s.elections.Root().GetWatch([]byte(name))
	if !ok {
		return nil, max(s.electionDeleteIndex, 1), w
	}
	return e, max(e.ModifyIndex, 1), w
}

// DelayedElections returns the names whose lock-delay holds back waiting
// candidates, with the stamp at which it ends. The leader proposes a
// promote for each when that time comes. It costs O(delayed names), not
// O(elections): the leader asks often.
func (s *State) DelayedElections() map[string]int64 {
	out := map[string]int64{}
	s.delayed.Root().Walk(func(k []byte, until int64) bool {
		out[string(k)] = until
		return false
	})
	return out
}

// delayedNow reports whether e has candidates held back by its lock-delay.
func (e *Election) delayedNow() bool {
	return len(e.Waiting) > 0 && len(e.Holders) < e.Limit && e.DelayUntil > 0
}

// storeElection writes e back, tracking when it became empty.
func storeElection(s *State, e *Election, notify bool) {
	e.ModifyIndex = s.index
	empty := len(e.Holders) == 0 && len(e.Waiting) == 0
	switch {
	case empty && e.EmptySince == 0:
		e.EmptySince = max(s.stamp, 1)
		s.emptyElections, _, _ = s.emptyElections.Insert(emptyKey(e.EmptySince, e.Name), struct{}{})
	case !empty && e.EmptySince != 0:
		s.emptyElections, _, _ = s.emptyElections.Delete(emptyKey(e.EmptySince, e.Name))
		e.EmptySince = 0
	}
	if e.delayedNow() {
		s.delayed, _, _ = s.delayed.Insert([]byte(e.Name), e.DelayUntil)
	} else if _, ok := s.delayed.Get([]byte(e.Name)); ok {
		s.delayed, _, _ = s.delayed.Delete([]byte(e.Name))
	}
	s.elections = put(s.elections, []byte(e.Name), e, notify)
}

// CampaignResult says where a campaigning lease stands.
type CampaignResult struct {
	Holder   bool
	Token    uint64
	Position int
}

func applyCampaign(s *State, res *Result, p Campaign, stamp int64, notify bool) {
	if p.NewLeaseTTL == 0 {
		if _, ok := s.Lease(p.Lease); !ok {
			res.Err = fmt.Errorf("%w: %d", ErrLeaseNotFound, p.Lease)
			return
		}
	} else if err := leaseLimitErr(s, p.Owner, p.MaxLeases); err != nil {
		res.Err = err
		return
	}
	limit := max(p.Limit, 1)
	e, ok := s.Election(p.Name)
	if !ok {
		e = &Election{Name: p.Name, Kind: p.Kind, Limit: limit, LockDelay: p.LockDelay}
	} else {
		if e.Kind != p.Kind {
			res.Err = fmt.Errorf("%w: %q is a %s, not a %s", ErrKindMismatch, p.Name, e.Kind, p.Kind)
			return
		}
		if p.Limit != 0 && limit != e.Limit {
			res.Err = fmt.Errorf("%w: %q has limit %d, not %d", ErrLimitMismatch, p.Name, e.Limit, limit)
			return
		}
		if n := len(e.Holders) + len(e.Waiting); p.MaxCandidates > 0 && n >= p.MaxCandidates && e.Position(p.Lease) < 0 {
			res.Err = fmt.Errorf("%w: %q has %d holders and waiting candidates, the limit is %d", ErrTooManyCandidates, p.Name, n, p.MaxCandidates)
			return
		}
		e = e.clone()
		if p.LockDelay > 0 {
			e.LockDelay = p.LockDelay
		}
	}
	if p.NewLeaseTTL > 0 {
		// Every check that can refuse the campaign is above: the lease
		// is created only when the campaign will be applied with it.
		applyLeaseGrant(s, res, LeaseGrant{TTL: p.NewLeaseTTL, Owner: p.Owner}, stamp, notify)
		p.Lease = res.Lease.ID
	}
	if pos := e.Position(p.Lease); pos >= 0 {
		// Campaigning again with the same lease is not a second candidacy.
		res.Campaign = campaignResult(e, p.Lease)
		res.Election = e
		return
	}
	e.Waiting = append(e.Waiting, Candidate{Lease: p.Lease, Value: p.Value, Since: stamp, QueuedIndex: s.index})
	res.Promoted += e.promote(s.index, stamp)
	s.attach = put(s.attach, attachKeyOf(p.Lease, attachElection, p.Name), struct{}{}, notify)
	storeElection(s, e, notify)
	res.Campaign = campaignResult(e, p.Lease)
	res.Election = e
}

func campaignResult(e *Election, lease uint64) *CampaignResult {
	r := &CampaignResult{Position: e.Position(lease)}
	for _, h := range e.Holders {
		if h.Lease == lease {
			r.Holder, r.Token = true, h.Token
		}
	}
	return r
}

// holderCheck finds lease among the holders of name with the given token.
func holderCheck(s *State, name string, lease, token uint64) (*Election, int, error) {
	e, ok := s.Election(name)
	if !ok {
		return nil, 0, fmt.Errorf("%w: %q", ErrElectionNotFound, name)
	}
	for i, h := range e.Holders {
		if h.Lease != lease {
			continue
		}
		if h.Token != token {
			return nil, 0, &StaleTokenError{Name: name, Token: token, Current: h.Token}
		}
		return e, i, nil
	}
	return nil, 0, fmt.Errorf("%w: lease %d does not hold %q", ErrNotHolder, lease, name)
}

func applyResign(s *State, res *Result, p Resign, stamp int64, notify bool) {
	if p.Token == 0 {
		// Withdraw a waiting candidacy.
		e, ok := s.Election(p.Name)
		if !ok || e.Position(p.Lease) < 1 {
			res.Err = fmt.Errorf("%w: lease %d is not waiting for %q", ErrNotHolder, p.Lease, p.Name)
			return
		}
		e = e.clone()
		e.remove(p.Lease, false, stamp)
		s.attach, _ = del(s.attach, attachKeyOf(p.Lease, attachElection, p.Name), notify)
		storeElection(s, e, notify)
		res.Election = e
		return
	}
	e, _, err := holderCheck(s, p.Name, p.Lease, p.Token)
	if err != nil {
		res.Err = err
		return
	}
	e = e.clone()
	e.remove(p.Lease, false, stamp)
	res.Promoted += e.promote(s.index, stamp)
	s.attach, _ = del(s.attach, attachKeyOf(p.Lease, attachElection, p.Name), notify)
	storeElection(s, e, notify)
	res.Election = e
}

func applyProclaim(s *State, res *Result, p Proclaim, notify bool) {
	e, i, err := holderCheck(s, p.Name, p.Lease, p.Token)
	if err != nil {
		res.Err = err
		return
	}
	e = e.clone()
	e.Holders[i].Value = p.Value
	e.Changes++
	storeElection(s, e, notify)
	res.Election = e
}

func applyPromote(s *State, res *Result, name string, stamp int64, notify bool) {
	e, ok := s.Election(name)
	if !ok {
		return
	}
	e = e.clone()
	if n := e.promote(s.index, stamp); n > 0 {
		res.Promoted += n
		storeElection(s, e, notify)
	}
	res.Election = e
}
