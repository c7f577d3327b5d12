package fsm

import "fmt"

// Command types for leases, elections and locks. Values are part of the
// log format: never renumber them.
const (
	CmdLeaseGrant      CommandType = 5
	CmdLeaseRevoke     CommandType = 6
	CmdLeaseExpire     CommandType = 7
	CmdLeaseCheckpoint CommandType = 8
	CmdLeaseRenew      CommandType = 9
	CmdCampaign        CommandType = 10
	CmdResign          CommandType = 11
	CmdProclaim        CommandType = 12
	CmdPromote         CommandType = 13
)

var commandNames = map[CommandType]string{
	CmdLeaseGrant: "lease-grant", CmdLeaseRevoke: "lease-revoke", CmdLeaseExpire: "lease-expire",
	CmdLeaseCheckpoint: "lease-checkpoint", CmdLeaseRenew: "lease-renew", CmdCampaign: "campaign",
	CmdResign: "resign", CmdProclaim: "proclaim", CmdPromote: "promote",
}

// LeaseGrant is the payload of CmdLeaseGrant. TTL is in milliseconds.
//
// Owner (the accessor id of the token that asked; empty without ACLs) and
// MaxLeases (the proposing leader's limit of leases per owner; 0: none)
// are stamped by the leader, so that every replica refuses or grants
// alike whatever its own configuration (payload version 2).
type LeaseGrant struct {
	TTL       int64
	Owner     string
	MaxLeases int
}

// LeaseExpiry names a lease and the epoch the proposer saw.
type LeaseExpiry struct{ ID, Epoch uint64 }

// LeaseExpire is the payload of CmdLeaseExpire: a batch of conditional
// expiries proposed by the leader.
type LeaseExpire struct{ Leases []LeaseExpiry }

// LeaseRemaining is one checkpointed lease: its remaining TTL in
// milliseconds, conditional on the epoch.
type LeaseRemaining struct {
	ID, Epoch uint64
	Remaining int64
}

// LeaseCheckpoint is the payload of CmdLeaseCheckpoint.
type LeaseCheckpoint struct{ Leases []LeaseRemaining }

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

// Resign is the payload of CmdResign. Token 0 withdraws a waiting
// candidacy.
type Resign struct {
	Name  string
	Lease uint64
	Token uint64
}

// Proclaim is the payload of CmdProclaim.
type Proclaim struct {
	Name  string
	Lease uint64
	Token uint64
	Value []byte
}

// NewLeaseGrant builds a CmdLeaseGrant command with no owner and no limit.
func NewLeaseGrant(ttlMillis int64) Command {
	return NewLeaseGrantFor(LeaseGrant{TTL: ttlMillis})
}

// payloadV2 is the second payload layout of the types that have one
// (lease grants and campaigns with an owner or limits).
const payloadV2 = 2

// NewLeaseGrantFor builds a CmdLeaseGrant command from a whole payload.
func NewLeaseGrantFor(p LeaseGrant) Command {
	e := enc{}
	e.varint(p.TTL)
	if p.Owner == "" && p.MaxLeases == 0 {
		return Command{Type: CmdLeaseGrant, Version: payloadV1, Payload: e.b}
	}
	e.str(p.Owner)
	e.uvarint(uint64(max(p.MaxLeases, 0)))
	return Command{Type: CmdLeaseGrant, Version: payloadV2, Payload: e.b}
}

func newIDCommand(t CommandType, id uint64) Command {
	e := enc{}
	e.uvarint(id)
	return Command{Type: t, Version: payloadV1, Payload: e.b}
}

// NewLeaseRevoke builds a CmdLeaseRevoke command.
func NewLeaseRevoke(id uint64) Command { return newIDCommand(CmdLeaseRevoke, id) }

// NewLeaseRenew builds a CmdLeaseRenew command (the first keepalive after a
// checkpoint, committed before it is acknowledged).
func NewLeaseRenew(id uint64) Command { return newIDCommand(CmdLeaseRenew, id) }

// NewLeaseExpire builds a CmdLeaseExpire command.
func NewLeaseExpire(p LeaseExpire) Command {
	e := enc{}
	e.uvarint(uint64(len(p.Leases)))
	for _, x := range p.Leases {
		e.uvarint(x.ID)
		e.uvarint(x.Epoch)
	}
	return Command{Type: CmdLeaseExpire, Version: payloadV1, Payload: e.b}
}

// NewLeaseCheckpoint builds a CmdLeaseCheckpoint command.
func NewLeaseCheckpoint(p LeaseCheckpoint) Command {
	e := enc{}
	e.uvarint(uint64(len(p.Leases)))
	for _, x := range p.Leases {
		e.uvarint(x.ID)
		e.uvarint(x.Epoch)
		e.varint(x.Remaining)
	}
	return Command{Type: CmdLeaseCheckpoint, Version: payloadV1, Payload: e.b}
}

// NewCampaign builds a CmdCampaign command.
func NewCampaign(p Campaign) Command {
	e := enc{}
	e.uvarint(uint64(p.Kind))
	e.str(p.Name)
	e.uvarint(p.Lease)
	e.bytes(p.Value)
	e.uvarint(uint64(p.Limit))
	e.varint(p.LockDelay)
	if p.Owner != "" || p.MaxLeases != 0 || p.MaxCandidates != 0 {
		e.varint(p.NewLeaseTTL)
		e.str(p.Owner)
		e.uvarint(uint64(max(p.MaxLeases, 0)))
		e.uvarint(uint64(max(p.MaxCandidates, 0)))
		return Command{Type: CmdCampaign, Version: payloadV2, Payload: e.b}
	}
	if p.NewLeaseTTL != 0 {
		e.varint(p.NewLeaseTTL)
	}
	return Command{Type: CmdCampaign, Version: payloadV1, Payload: e.b}
}

// NewResign builds a CmdResign command.
func NewResign(p Resign) Command {
	e := enc{}
	e.str(p.Name)
	e.uvarint(p.Lease)
	e.uvarint(p.Token)
	return Command{Type: CmdResign, Version: payloadV1, Payload: e.b}
}

// NewProclaim builds a CmdProclaim command.
func NewProclaim(p Proclaim) Command {
	e := enc{}
	e.str(p.Name)
	e.uvarint(p.Lease)
	e.uvarint(p.Token)
	e.bytes(p.Value)
	return Command{Type: CmdProclaim, Version: payloadV1, Payload: e.b}
}

// NewPromote builds a CmdPromote command: promote waiting candidates of a
// name whose lock-delay has passed.
func NewPromote(name string) Command {
	e := enc{}
	e.str(name)
	return Command{Type: CmdPromote, Version: payloadV1, Payload: e.b}
}

// maxBatch bounds the length prefix of batch payloads before allocating.
const maxBatch = 1 << 20

func decodeWith(c Command, f func(d *dec)) error {
	if err := checkVersion(c); err != nil {
		return err
	}
	return decodeAny(c, f)
}

// decodeWith2 is decodeWith for types with a version 2 layout.
func decodeWith2(c Command, f func(d *dec)) error {
	if c.Version != payloadV1 && c.Version != payloadV2 {
		return fmt.Errorf("fsm: %s payload version %d not supported: %w", c.Type, c.Version, ErrBadCommand)
	}
	return decodeAny(c, f)
}

func decodeAny(c Command, f func(d *dec)) error {
	d := dec{b: c.Payload}
	f(&d)
	if err := d.done(); err != nil {
		return fmt.Errorf("fsm: decode %s: %v: %w", c.Type, err, ErrBadCommand)
	}
	return nil
}

func batchLen(d *dec, itemMin int) int {
	n := d.uvarint()
	if d.err == nil && (n > maxBatch || n*uint64(itemMin) > uint64(len(d.b))) {
		d.fail(fmt.Errorf("batch of %d does not fit", n))
		return 0
	}
	return int(n)
}

// maxLimit bounds the limits a payload may carry.
const maxLimit = 1 << 40

func decodeLeaseGrant(c Command) (p LeaseGrant, err error) {
	err = decodeWith2(c, func(d *dec) {
		p.TTL = d.varint()
		if c.Version == payloadV2 {
			p.Owner = d.str()
			p.MaxLeases = limitField(d)
		}
	})
	return p, err
}

func limitField(d *dec) int {
	v := d.uvarint()
	if v > maxLimit {
		d.fail(fmt.Errorf("limit %d", v))
		return 0
	}
	return int(v)
}

func decodeID(c Command) (id uint64, err error) {
	err = decodeWith(c, func(d *dec) { id = d.uvarint() })
	return id, err
}

func decodeLeaseExpire(c Command) (p LeaseExpire, err error) {
	err = decodeWith(c, func(d *dec) {
		n := batchLen(d, 2)
		for range n {
			p.Leases = append(p.Leases, LeaseExpiry{ID: d.uvarint(), Epoch: d.uvarint()})
		}
	})
	return p, err
}

func decodeLeaseCheckpoint(c Command) (p LeaseCheckpoint, err error) {
	err = decodeWith(c, func(d *dec) {
		n := batchLen(d, 3)
		for range n {
			p.Leases = append(p.Leases, LeaseRemaining{ID: d.uvarint(), Epoch: d.uvarint(), Remaining: d.varint()})
		}
	})
	return p, err
}

func decodeCampaign(c Command) (p Campaign, err error) {
	err = decodeWith2(c, func(d *dec) {
		k := d.uvarint()
		p.Name, p.Lease, p.Value = d.str(), d.uvarint(), d.bytes()
		limit := d.uvarint()
		p.LockDelay = d.varint()
		if c.Version == payloadV2 {
			p.NewLeaseTTL = d.varint()
			p.Owner, p.MaxLeases, p.MaxCandidates = d.str(), limitField(d), limitField(d)
			if d.err == nil && (p.NewLeaseTTL < 0 || p.NewLeaseTTL > 0 && p.Lease != 0) {
				d.fail(fmt.Errorf("new lease ttl %d with lease %d", p.NewLeaseTTL, p.Lease))
			}
		} else if d.err == nil && len(d.b) > 0 {
			if p.NewLeaseTTL = d.varint(); d.err == nil && (p.NewLeaseTTL <= 0 || p.Lease != 0) {
				d.fail(fmt.Errorf("new lease ttl %d with lease %d", p.NewLeaseTTL, p.Lease))
			}
		}
		if d.err == nil && (k != uint64(KindElection) && k != uint64(KindLock) || limit > 1<<20) {
			d.fail(fmt.Errorf("kind %d limit %d", k, limit))
		}
		p.Kind, p.Limit = ElectionKind(k), int(limit)
	})
	return p, err
}

func decodeResign(c Command) (p Resign, err error) {
	err = decodeWith(c, func(d *dec) { p.Name, p.Lease, p.Token = d.str(), d.uvarint(), d.uvarint() })
	return p, err
}

func decodeProclaim(c Command) (p Proclaim, err error) {
	err = decodeWith(c, func(d *dec) { p.Name, p.Lease, p.Token, p.Value = d.str(), d.uvarint(), d.uvarint(), d.bytes() })
	return p, err
}

func decodePromote(c Command) (name string, err error) {
	err = decodeWith(c, func(d *dec) { name = d.str() })
	return name, err
}
