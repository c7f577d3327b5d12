package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
)

// The election domain: named roles and locks (an election without a
// value, or a counting semaphore), their FIFO queues of candidates, and
// their fencing tokens.

// Election and lock command types. Values are part of the log format.
const (
	CmdCampaign CommandType = 10
	CmdResign   CommandType = 11
	CmdProclaim CommandType = 12
	CmdPromote  CommandType = 13
)

func init() {
	register(CmdCampaign, "campaign", payloadV2, decodeCampaign)
	register(CmdResign, "resign", payloadV1, func(_ uint8, d *dec) Payload {
		return Resign{Name: d.str(), Lease: d.uvarint(), Token: d.uvarint()}
	})
	register(CmdProclaim, "proclaim", payloadV1, func(_ uint8, d *dec) Payload {
		return Proclaim{Name: d.str(), Lease: d.uvarint(), Token: d.uvarint(), Value: d.bytes()}
	})
	register(CmdPromote, "promote", payloadV1, func(_ uint8, d *dec) Payload { return Promote{Name: d.str()} })
}

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

func (k ElectionKind) valid() bool { return k == KindElection || k == KindLock }

// Limits of an election's definition.
const (
	// MaxHolders bounds the holder limit of a semaphore.
	MaxHolders = 1 << 20
	// MaxLockDelay bounds a lock-delay, in milliseconds (a day).
	MaxLockDelay = 24 * 60 * 60 * 1000
)

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
//
// Invariant (bounded state): a name that nobody holds or waits for is
// removed in the entry that emptied it, unless a lock-delay is running;
// then it is removed once the delay has passed (collectElections). Its
// fencing tokens need nothing kept: a token is the Raft index of the entry
// that issued it, so a name made again gets a higher one.
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
	// Changes counts the entries that changed the holders (who holds, or
	// a holder's value) since the name was made: a hand-off from one
	// holder to the next in one entry is one change. Observers compare it
	// to see whether intermediate changes were coalesced.
	Changes uint64
	// ModifyIndex is the Raft index of the last change of any kind.
	ModifyIndex uint64
	// EmptySince is the stamp since which nobody holds or waits (0: in
	// use). Only a name under lock-delay stays empty.
	EmptySince int64
}

// Campaign is the payload of CmdCampaign (and of lock acquisition).
type Campaign struct {
	Kind      ElectionKind
	Name      string
	Lease     uint64
	Value     []byte
	Limit     int   // holders allowed; 0 means 1 for a new name, "any" for an existing one
	LockDelay int64 // milliseconds; 0 keeps the name's setting
	// NewLeaseTTL (milliseconds), when positive, grants a new lease of that
	// TTL and campaigns with it, in this one entry (Lease must be 0): the
	// lease's ID is the entry's index, as for CmdLeaseGrant. If the
	// campaign is refused, no lease is created. Encoded as an optional
	// trailing field: campaigns with an existing lease keep the original
	// layout.
	NewLeaseTTL int64
	// Owner and MaxLeases apply to the lease NewLeaseTTL grants (see
	// LeaseGrant). MaxCandidates is the leader's limit of holders plus
	// waiting candidates of one name (0: none). Any of the three makes the
	// payload version 2, which always carries NewLeaseTTL.
	Owner         string
	MaxLeases     int
	MaxCandidates int
}

// Type implements Payload.
func (Campaign) Type() CommandType { return CmdCampaign }

// encode writes kind name lease value limit lockDelay, then [newLeaseTTL]
// (version 1), or newLeaseTTL owner maxLeases maxCandidates (version 2,
// when any of the last three is set).
func (p Campaign) encode(e *enc) uint8 {
	e.uvarint(uint64(p.Kind))
	e.str(p.Name)
	e.uvarint(p.Lease)
	e.bytes(p.Value)
	e.uvarint(uint64(p.Limit))
	e.varint(p.LockDelay)
	if p.Owner != "" || p.MaxLeases != 0 || p.MaxCandidates != 0 {
		e.varint(p.NewLeaseTTL)
		e.str(p.Owner)
		e.uvarint(uint64(p.MaxLeases))
		e.uvarint(uint64(p.MaxCandidates))
		return payloadV2
	}
	if p.NewLeaseTTL != 0 {
		e.varint(p.NewLeaseTTL)
	}
	return payloadV1
}

func decodeCampaign(v uint8, d *dec) Payload {
	p := Campaign{Kind: ElectionKind(d.u8()), Name: d.str(), Lease: d.uvarint(), Value: d.bytes(),
		Limit: d.count(MaxHolders), LockDelay: d.varint()}
	switch {
	case v == payloadV2:
		p.NewLeaseTTL = d.varint()
		p.Owner, p.MaxLeases, p.MaxCandidates = d.str(), d.count(MaxLimit), d.count(MaxLimit)
	case d.more():
		if p.NewLeaseTTL = d.varint(); d.err == nil && p.NewLeaseTTL == 0 {
			d.fail(errors.New("explicit zero new lease ttl"))
		}
	}
	return p
}

func (p Campaign) validate() error {
	switch {
	case !p.Kind.valid():
		return fmt.Errorf("kind %d", p.Kind)
	case p.Name == "":
		return errors.New("empty name")
	case p.Limit < 0 || p.Limit > MaxHolders:
		return fmt.Errorf("holder limit %d out of range 0..%d", p.Limit, MaxHolders)
	case p.LockDelay < 0 || p.LockDelay > MaxLockDelay:
		return fmt.Errorf("lock-delay %d ms out of range 0..%d", p.LockDelay, MaxLockDelay)
	case p.NewLeaseTTL < 0 || p.NewLeaseTTL > MaxLeaseTTL || p.NewLeaseTTL > 0 && p.Lease != 0:
		return fmt.Errorf("new lease ttl %d ms with lease %d", p.NewLeaseTTL, p.Lease)
	case p.NewLeaseTTL == 0 && p.Lease == 0:
		return errors.New("neither a lease nor a new lease ttl")
	}
	if err := checkOwner(p.Owner); err != nil {
		return err
	}
	if err := checkLimit("leases per token", p.MaxLeases); err != nil {
		return err
	}
	return checkLimit("candidates per name", p.MaxCandidates)
}

func (p Campaign) apply(a *applier) {
	s, res := a.s, a.res
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
	old, ok := s.Election(p.Name)
	var e *Election
	if !ok {
		e = &Election{Name: p.Name, Kind: p.Kind, Limit: limit, LockDelay: p.LockDelay}
	} else {
		if old.Kind != p.Kind {
			res.Err = fmt.Errorf("%w: %q is a %s, not a %s", ErrKindMismatch, p.Name, old.Kind, p.Kind)
			return
		}
		if p.Limit != 0 && limit != old.Limit {
			res.Err = fmt.Errorf("%w: %q has limit %d, not %d", ErrLimitMismatch, p.Name, old.Limit, limit)
			return
		}
		if n := len(old.Holders) + len(old.Waiting); p.MaxCandidates > 0 && n >= p.MaxCandidates && old.Position(p.Lease) < 0 {
			res.Err = fmt.Errorf("%w: %q has %d holders and waiting candidates, the limit is %d", ErrTooManyCandidates, p.Name, n, p.MaxCandidates)
			return
		}
		e = old.clone()
		if p.LockDelay > 0 {
			e.LockDelay = p.LockDelay
		}
	}
	if p.NewLeaseTTL > 0 {
		// Every check that can refuse the campaign is above: the lease
		// is created only when the campaign will be applied with it.
		grantLease(a, p.NewLeaseTTL, p.Owner, 0)
		p.Lease = res.Lease.ID
	}
	if pos := e.Position(p.Lease); pos >= 0 {
		// Campaigning again with the same lease is not a second candidacy.
		res.Campaign = campaignResult(e, p.Lease)
		res.Election = e
		return
	}
	e.Waiting = append(e.Waiting, Candidate{Lease: p.Lease, Value: p.Value, Since: a.stamp, QueuedIndex: s.index})
	res.Promoted += e.promote(s.index, a.stamp)
	s.attach.put(s.w, attachKeyOf(p.Lease, attachElection, p.Name), struct{}{})
	storeElection(a, old, e)
	res.Campaign = campaignResult(e, p.Lease)
	res.Election = e
}

// Resign is the payload of CmdResign. Token 0 withdraws a waiting
// candidacy.
type Resign struct {
	Name  string
	Lease uint64
	Token uint64
}

// Type implements Payload.
func (Resign) Type() CommandType { return CmdResign }

func (p Resign) encode(e *enc) uint8 {
	e.str(p.Name)
	e.uvarint(p.Lease)
	e.uvarint(p.Token)
	return payloadV1
}

func (Resign) validate() error { return nil }

func (p Resign) apply(a *applier) {
	s, res := a.s, a.res
	var old *Election
	if p.Token == 0 {
		// Withdraw a waiting candidacy.
		var ok bool
		if old, ok = s.Election(p.Name); !ok || old.Position(p.Lease) < 1 {
			res.Err = fmt.Errorf("%w: lease %d is not waiting for %q", ErrNotHolder, p.Lease, p.Name)
			return
		}
	} else {
		var err error
		if old, _, err = holderCheck(s, p.Name, p.Lease, p.Token); err != nil {
			res.Err = err
			return
		}
	}
	e := old.clone()
	e.remove(p.Lease, false, a.stamp)
	res.Promoted += e.promote(s.index, a.stamp)
	s.attach.del(s.w, attachKeyOf(p.Lease, attachElection, p.Name))
	storeElection(a, old, e)
	res.Election = e
}

// Proclaim is the payload of CmdProclaim: a holder sets its value.
type Proclaim struct {
	Name  string
	Lease uint64
	Token uint64
	Value []byte
}

// Type implements Payload.
func (Proclaim) Type() CommandType { return CmdProclaim }

func (p Proclaim) encode(e *enc) uint8 {
	e.str(p.Name)
	e.uvarint(p.Lease)
	e.uvarint(p.Token)
	e.bytes(p.Value)
	return payloadV1
}

func (Proclaim) validate() error { return nil }

func (p Proclaim) apply(a *applier) {
	old, i, err := holderCheck(a.s, p.Name, p.Lease, p.Token)
	if err != nil {
		a.res.Err = err
		return
	}
	e := old.clone()
	e.Holders[i].Value = p.Value
	storeElection(a, old, e)
	a.res.Election = e
}

// Promote is the payload of CmdPromote: promote waiting candidates of a
// name whose lock-delay has passed (proposed by the leader).
type Promote struct{ Name string }

// Type implements Payload.
func (Promote) Type() CommandType { return CmdPromote }

func (p Promote) encode(e *enc) uint8 {
	e.str(p.Name)
	return payloadV1
}

func (Promote) validate() error { return nil }

func (p Promote) apply(a *applier) {
	old, ok := a.s.Election(p.Name)
	if !ok {
		return
	}
	e := old.clone()
	if n := e.promote(a.s.index, a.stamp); n > 0 {
		a.res.Promoted += n
		storeElection(a, old, e)
	}
	a.res.Election = e
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

// IsCurrent reports whether token is a current holder's token. A holder
// whose lease expired and whose release entry is still to come
// (lease.go: LeaseRelease) is current by this test; State.TokenCurrent
// says no for it.
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
		promoted++
	}
	return promoted
}

// sameHolders reports whether a and b have the same holders with the same
// tokens and values.
func sameHolders(a, b []Candidate) bool {
	return slices.EqualFunc(a, b, func(x, y Candidate) bool {
		return x.Lease == y.Lease && x.Token == y.Token && bytes.Equal(x.Value, y.Value)
	})
}

// delayedNow reports whether e has candidates held back by its lock-delay.
func (e *Election) delayedNow() bool {
	return len(e.Waiting) > 0 && len(e.Holders) < e.Limit && e.DelayUntil > 0
}

func (e *Election) empty() bool { return len(e.Holders) == 0 && len(e.Waiting) == 0 }

// collectAt is when an empty name under lock-delay may be removed.
func (e *Election) collectAt() int64 { return max(e.EmptySince, e.DelayUntil) }

func emptyKey(at int64, name string) []byte {
	return append(u64key(uint64(max(at, 0))), name...)
}

// storeElection writes e, the new version of old (nil for a new name):
// it counts a change of holders once per entry, removes a name that is
// empty and under no lock-delay, and keeps the indexes of empty and
// delayed names.
func storeElection(a *applier, old, e *Election) {
	s := a.s
	e.ModifyIndex = s.index
	var oldHolders []Candidate
	if old != nil {
		oldHolders = old.Holders
		if old.EmptySince != 0 {
			s.emptyElections.del(s.w, emptyKey(old.collectAt(), old.Name))
		}
	}
	if !sameHolders(oldHolders, e.Holders) && !a.holdersChanged[e.Name] {
		e.Changes++
		a.mark(e.Name)
	}
	if !e.empty() {
		e.EmptySince = 0
	} else {
		if e.EmptySince == 0 {
			e.EmptySince = max(a.stamp, 1)
		}
		if e.DelayUntil <= a.stamp {
			removeElection(a, e.Name)
			return
		}
		s.emptyElections.put(s.w, emptyKey(e.collectAt(), e.Name), struct{}{})
	}
	if e.delayedNow() {
		s.delayed.put(s.w, []byte(e.Name), e.DelayUntil)
	} else if _, ok := s.delayed.Get([]byte(e.Name)); ok {
		s.delayed.del(s.w, []byte(e.Name))
	}
	s.elections.put(s.w, []byte(e.Name), e)
}

// removeElection forgets a name nobody holds or waits for.
func removeElection(a *applier, name string) {
	s := a.s
	s.elections.del(s.w, []byte(name))
	if _, ok := s.delayed.Get([]byte(name)); ok {
		s.delayed.del(s.w, []byte(name))
	}
	s.electionDeleteIndex = s.index
}

// electionGCPerApply bounds the collection work of one entry.
const electionGCPerApply = 16

// collectElections forgets empty names whose lock-delay has passed by the
// leader's stamp.
func collectElections(a *applier) {
	s := a.s
	if k, _, ok := s.emptyElections.Root().Minimum(); !ok || int64(keyU64(k)) >= s.stamp {
		return // nothing due (the common case), seen without an iterator
	}
	it := s.emptyElections.Root().Iterator()
	var drop [][]byte
	for k, _, ok := it.Next(); ok && len(drop) < electionGCPerApply; k, _, ok = it.Next() {
		if int64(keyU64(k)) >= s.stamp {
			break
		}
		drop = append(drop, k)
	}
	for _, k := range drop {
		s.emptyElections.del(s.w, k)
		removeElection(a, string(k[u64KeyLen:]))
	}
}

// TokenCurrent reports whether token is the token of a current holder of
// e whose lease is alive (not expired or revoked with its release still
// to come: lease.go).
func (s *State) TokenCurrent(e *Election, token uint64) bool {
	for _, h := range e.Holders {
		if h.Token == token {
			_, ok := s.Lease(h.Lease)
			return ok
		}
	}
	return false
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

// ElectionCount is the number of elections and locks.
func (s *State) ElectionCount() int { return s.elections.Len() }

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

// CampaignResult says where a campaigning lease stands.
type CampaignResult struct {
	Holder   bool
	Token    uint64
	Position int
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
		if _, ok := s.Lease(lease); !ok {
			// Expired or revoked, its release still to come (lease.go):
			// the holder can no longer act through it.
			return nil, 0, fmt.Errorf("%w: %d (it holds %q until its release entry)", ErrLeaseNotFound, lease, name)
		}
		return e, i, nil
	}
	return nil, 0, fmt.Errorf("%w: lease %d does not hold %q", ErrNotHolder, lease, name)
}

// Snapshot records of the election domain.

func encodeCandidates(e *enc, cs []Candidate) {
	e.uvarint(uint64(len(cs)))
	for _, c := range cs {
		e.uvarint(c.Lease)
		e.bytes(c.Value)
		e.uvarint(c.Token)
		e.varint(c.Since)
		e.uvarint(c.QueuedIndex)
	}
}

func decodeCandidates(d *dec) []Candidate {
	var cs []Candidate
	for range batchLen(d, 5) {
		cs = append(cs, Candidate{Lease: d.uvarint(), Value: d.bytes(), Token: d.uvarint(), Since: d.varint(), QueuedIndex: d.uvarint()})
	}
	return cs
}

// encodeElection writes an election record: name kind limit lockDelay
// delayUntil holders waiting lastToken changes modifyIndex emptySince.
func encodeElection(e *enc, el *Election) {
	e.str(el.Name)
	e.uvarint(uint64(el.Kind))
	e.uvarint(uint64(el.Limit))
	e.varint(el.LockDelay)
	e.varint(el.DelayUntil)
	encodeCandidates(e, el.Holders)
	encodeCandidates(e, el.Waiting)
	e.uvarint(el.LastToken)
	e.uvarint(el.Changes)
	e.uvarint(el.ModifyIndex)
	e.varint(el.EmptySince)
}

func decodeElection(d *dec) *Election {
	el := &Election{Name: d.str(), Kind: ElectionKind(d.u8()), Limit: d.count(MaxHolders), LockDelay: d.varint(), DelayUntil: d.varint()}
	el.Holders, el.Waiting = decodeCandidates(d), decodeCandidates(d)
	el.LastToken, el.Changes, el.ModifyIndex, el.EmptySince = d.uvarint(), d.uvarint(), d.uvarint(), d.varint()
	return el
}

// validateElection is the rule of a stored election at state index: a
// known kind and a name; a limit from 1 that its holders respect; holders
// with tokens no later than the last token and the index, waiting
// candidates without one; no lease twice; "empty since" set exactly when
// nobody holds or waits.
func validateElection(el *Election, index uint64) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("election %q: %s", el.Name, fmt.Sprintf(format, args...))
	}
	switch {
	case el.Name == "" || !el.Kind.valid():
		return bad("kind %d", el.Kind)
	case el.Limit < 1 || len(el.Holders) > el.Limit:
		return bad("%d holders, limit %d", len(el.Holders), el.Limit)
	case el.LockDelay < 0 || el.LockDelay > MaxLockDelay:
		return bad("lock-delay %d ms", el.LockDelay)
	case el.LastToken > index || el.ModifyIndex > index:
		return bad("last token %d, modify index %d at state index %d", el.LastToken, el.ModifyIndex, index)
	case el.empty() != (el.EmptySince != 0):
		return bad("%d holders, %d waiting, empty since %d", len(el.Holders), len(el.Waiting), el.EmptySince)
	}
	seen := map[uint64]bool{}
	for i, c := range slices.Concat(el.Holders, el.Waiting) {
		holder := i < len(el.Holders)
		switch {
		case c.Lease == 0 || seen[c.Lease]:
			return bad("lease %d twice or zero", c.Lease)
		case holder && (c.Token == 0 || c.Token > el.LastToken):
			return bad("holder %d with token %d, last token %d", c.Lease, c.Token, el.LastToken)
		case !holder && c.Token != 0:
			return bad("waiting candidate %d with token %d", c.Lease, c.Token)
		}
		seen[c.Lease] = true
	}
	return nil
}
