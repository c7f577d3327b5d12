package fsm

import (
	"errors"
	"fmt"

	iradix "github.com/hashicorp/go-immutable-radix/v2"
)

// The alarm domain: what the cluster agreed about members whose state
// differs from the others', and digest points.
//
// An alarm is replicated state, like a key: the leader commits one when it
// finds a member whose replica digest (State.ReplicaDigest) at an agreed
// index differs from the digest most members reported there, and an
// operator's disarm is committed too. Every member therefore agrees on who
// is odd and on whether an operator acted, across leader changes,
// restarts and snapshots; a member started with -corrupt-check=refuse
// reads the alarm that names it and stops serving.
//
// A digest point is an entry that changes nothing but whose index every
// member takes a replica digest at (coordctl check consistency commits
// one, so that every member has a digest at one common index).

// Alarm command types. Values are part of the log format; they are far
// from the other domains' so that new domains keep counting up from 18.
const (
	CmdAlarmRaise  CommandType = 40
	CmdAlarmDisarm CommandType = 41
	CmdDigestPoint CommandType = 42
)

func init() {
	register(CmdAlarmRaise, "alarm-raise", payloadV1, func(_ uint8, d *dec) Payload { return AlarmRaise{decodeAlarmFields(d)} })
	register(CmdAlarmDisarm, "alarm-disarm", payloadV1, func(_ uint8, d *dec) Payload { return AlarmDisarm{Member: d.str()} })
	register(CmdDigestPoint, "digest-point", payloadV1, func(_ uint8, d *dec) Payload { return DigestPoint{} })
}

// recAlarm is the snapshot record of one alarm (written only when there
// are alarms, so that snapshots without any stay readable by builds that
// know no alarms).
const recAlarm = 9

// AlarmKind says what an alarm is about. The zero value is invalid.
type AlarmKind uint8

// Alarm kinds. Values are part of the log format.
const (
	// AlarmDigestMismatch: the member's replica digest at an agreed index
	// differs from the one most members reported there.
	AlarmDigestMismatch AlarmKind = 1
)

// String is the kind's name as the API shows it.
func (k AlarmKind) String() string {
	if k == AlarmDigestMismatch {
		return "digest_mismatch"
	}
	return fmt.Sprintf("unknown(%d)", uint8(k))
}

// Limits of an alarm's fields.
const (
	maxAlarmMember = 256
	maxAlarmDigest = 128
	maxAlarmDetail = 1024
)

// ErrAlarmNotFound means no alarm names that member.
var ErrAlarmNotFound = errors.New("fsm: no alarm for that member")

// Alarm is one member's alarm.
type Alarm struct {
	// Member is the id of the member the alarm is about.
	Member string
	Kind   AlarmKind
	// Index is the agreed index whose digests differed.
	Index uint64
	// Digest is the member's digest at Index, Expected the one most
	// members reported there.
	Digest, Expected string
	// Detail says more (which members agreed), for people.
	Detail string
	// RaisedIndex and RaisedStamp are the index and the leader's stamp of
	// the entry that raised the alarm.
	RaisedIndex uint64
	RaisedStamp int64
}

func encodeAlarmFields(e *enc, a *Alarm) {
	e.str(a.Member)
	e.uvarint(uint64(a.Kind))
	e.uvarint(a.Index)
	e.str(a.Digest)
	e.str(a.Expected)
	e.str(a.Detail)
}

func decodeAlarmFields(d *dec) Alarm {
	return Alarm{Member: d.str(), Kind: AlarmKind(d.u8()), Index: d.uvarint(), Digest: d.str(), Expected: d.str(), Detail: d.str()}
}

// encodeAlarm writes the snapshot record of a: the command's fields, then
// where and when it was raised.
func encodeAlarm(e *enc, a *Alarm) {
	encodeAlarmFields(e, a)
	e.uvarint(a.RaisedIndex)
	e.varint(a.RaisedStamp)
}

func decodeAlarm(d *dec) *Alarm {
	a := decodeAlarmFields(d)
	a.RaisedIndex, a.RaisedStamp = d.uvarint(), d.varint()
	return &a
}

// validateAlarmFields checks what a raise carries.
func validateAlarmFields(a Alarm) error {
	switch {
	case a.Member == "" || len(a.Member) > maxAlarmMember:
		return fmt.Errorf("alarm member id of %d bytes (1 to %d)", len(a.Member), maxAlarmMember)
	case a.Kind != AlarmDigestMismatch:
		return fmt.Errorf("alarm kind %d unknown", a.Kind)
	case a.Index == 0:
		return errors.New("alarm at index 0")
	case len(a.Digest) > maxAlarmDigest || len(a.Expected) > maxAlarmDigest:
		return fmt.Errorf("alarm digests longer than %d bytes", maxAlarmDigest)
	case len(a.Detail) > maxAlarmDetail:
		return fmt.Errorf("alarm detail of %d bytes (at most %d)", len(a.Detail), maxAlarmDetail)
	}
	return nil
}

// validateAlarm checks an alarm read from a snapshot taken at index.
func validateAlarm(a *Alarm, index uint64) error {
	if err := validateAlarmFields(*a); err != nil {
		return err
	}
	if a.RaisedIndex == 0 || a.RaisedIndex > index {
		return fmt.Errorf("alarm for %q raised at index %d, state at %d", a.Member, a.RaisedIndex, index)
	}
	return nil
}

// AlarmRaise is the payload of CmdAlarmRaise: record an alarm about a
// member. A member has at most one alarm: a raise for a member already
// alarmed keeps the first (the operator disarms it after acting).
type AlarmRaise struct{ Alarm }

// Type implements Payload.
func (AlarmRaise) Type() CommandType { return CmdAlarmRaise }

func (p AlarmRaise) encode(e *enc) uint8 {
	encodeAlarmFields(e, &p.Alarm)
	return payloadV1
}

func (p AlarmRaise) validate() error {
	if p.RaisedIndex != 0 || p.RaisedStamp != 0 {
		return errors.New("alarm raise carries a raised index or stamp (the entry sets them)")
	}
	return validateAlarmFields(p.Alarm)
}

func (p AlarmRaise) apply(a *applier) {
	if _, ok := a.s.alarmTree().Get([]byte(p.Member)); ok {
		return
	}
	al := p.Alarm
	al.RaisedIndex, al.RaisedStamp = a.res.Index, a.stamp
	a.s.alarms.put(a.s.w, []byte(p.Member), &al)
}

// AlarmDisarm is the payload of CmdAlarmDisarm: clear the alarm of one
// member, or every alarm when Member is empty. Result.Deleted counts the
// alarms cleared; clearing one that does not exist fails with
// ErrAlarmNotFound.
type AlarmDisarm struct {
	Member string
}

// Type implements Payload.
func (AlarmDisarm) Type() CommandType { return CmdAlarmDisarm }

func (p AlarmDisarm) encode(e *enc) uint8 {
	e.str(p.Member)
	return payloadV1
}

func (p AlarmDisarm) validate() error {
	if len(p.Member) > maxAlarmMember {
		return fmt.Errorf("alarm member id of %d bytes (at most %d)", len(p.Member), maxAlarmMember)
	}
	return nil
}

func (p AlarmDisarm) apply(a *applier) {
	t := a.s.alarmTree()
	if p.Member == "" {
		a.res.Deleted = t.Len()
		t.deletePrefix(a.s.w, nil, t.Len())
		return
	}
	if _, ok := t.del(a.s.w, []byte(p.Member)); !ok {
		a.res.Err = fmt.Errorf("%w: %q", ErrAlarmNotFound, p.Member)
		return
	}
	a.res.Deleted = 1
}

// DigestPoint is the payload of CmdDigestPoint. It changes no data: its
// index is where every member takes a replica digest.
type DigestPoint struct{}

// Type implements Payload.
func (DigestPoint) Type() CommandType { return CmdDigestPoint }

func (DigestPoint) encode(*enc) uint8 { return payloadV1 }
func (DigestPoint) validate() error   { return nil }
func (DigestPoint) apply(*applier)    {}

// alarmTree is s.alarms (empty when the state has none yet: tree.base).
func (s *State) alarmTree() *tree[*Alarm] { return &s.alarms }

// Alarms returns the alarms in member id order.
func (s *State) Alarms() []Alarm {
	var out []Alarm
	s.alarmTree().Root().Walk(func(_ []byte, a *Alarm) bool {
		out = append(out, *a)
		return false
	})
	return out
}

// Alarm returns the alarm about a member.
func (s *State) Alarm(member string) (Alarm, bool) {
	a, ok := s.alarmTree().Get([]byte(member))
	if !ok {
		return Alarm{}, false
	}
	return *a, true
}

// AlarmWatch returns a channel closed when the alarms change (with the
// alarm tree of the live state).
func (s *State) AlarmWatch() <-chan struct{} {
	ch, _, _ := s.alarmTree().Root().GetWatch(nil)
	return ch
}

// readAlarm is the snapshot reader's case for recAlarm.
func readAlarm(d *dec, t *iradix.Txn[*Alarm], index uint64) error {
	a := decodeAlarm(d)
	if _, found := t.Insert([]byte(a.Member), a); found && d.err == nil {
		d.fail(fmt.Errorf("alarm for %q twice", a.Member))
	}
	if d.err != nil {
		return nil
	}
	return validateAlarm(a, index)
}
