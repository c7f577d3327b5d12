package fsm

import "fmt"

// The member domain: what the cluster knows about its nodes besides Raft's
// own configuration.

// Member command types. Values are part of the log format.
const (
	CmdMemberSet    CommandType = 3
	CmdMemberRemove CommandType = 4
)

func init() {
	register(CmdMemberSet, "member-set", payloadV1, decodeMemberSet)
	register(CmdMemberRemove, "member-remove", payloadV1, decodeMemberRemove)
}

// Member is what the cluster knows about one node besides Raft's own
// configuration: the address its HTTP API is reachable at, so that followers
// can forward requests to the leader.
type Member struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	HTTPAddr string `json:"http_addr"`
}

func encodeMember(e *enc, m Member) {
	e.str(m.ID)
	e.str(m.RaftAddr)
	e.str(m.HTTPAddr)
}

func decodeMember(d *dec) Member { return Member{ID: d.str(), RaftAddr: d.str(), HTTPAddr: d.str()} }

// MemberSet is the payload of CmdMemberSet: record (or replace) a member.
type MemberSet struct{ Member }

// Type implements Payload.
func (MemberSet) Type() CommandType { return CmdMemberSet }

func (p MemberSet) encode(e *enc) uint8 {
	encodeMember(e, p.Member)
	return payloadV1
}

func decodeMemberSet(_ uint8, d *dec) Payload { return MemberSet{decodeMember(d)} }

func (MemberSet) validate() error { return nil }

func (p MemberSet) apply(a *applier) {
	a.s.members.put(a.s.w, []byte(p.ID), p.Member)
}

// MemberRemove is the payload of CmdMemberRemove.
type MemberRemove struct {
	ID string
}

// Type implements Payload.
func (MemberRemove) Type() CommandType { return CmdMemberRemove }

func (p MemberRemove) encode(e *enc) uint8 {
	e.str(p.ID)
	return payloadV1
}

func decodeMemberRemove(_ uint8, d *dec) Payload { return MemberRemove{ID: d.str()} }

func (MemberRemove) validate() error { return nil }

func (p MemberRemove) apply(a *applier) {
	if _, ok := a.s.members.del(a.s.w, []byte(p.ID)); !ok {
		a.res.Err = fmt.Errorf("%w: %q", ErrMemberNotFound, p.ID)
	}
}

// Members returns the known members in id order.
func (s *State) Members() []Member {
	out := make([]Member, 0, s.members.Len())
	s.members.Root().Walk(func(_ []byte, m Member) bool {
		out = append(out, m)
		return false
	})
	return out
}

// Member returns the member with the given id.
func (s *State) Member(id string) (Member, bool) {
	return s.members.Get([]byte(id))
}
