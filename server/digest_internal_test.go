package server

import (
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/coordd/coordd/api"
)

func TestCollector_NamesTheMemberThatDiffersFromTheQuorum(t *testing.T) {
	c := newCollector()
	for _, id := range []string{"n1", "n2", "n3", "s1"} {
		c.members[id] = &memberAgreement{ShadowStatus: api.ShadowStatus{Member: id, Voter: id != "s1", Shadow: id == "s1"}}
	}
	known := map[string]bool{"n1": true, "n2": true, "n3": true, "s1": true}
	c.add("n1", []api.Digest{{Index: 100, Digest: "a"}, {Index: 200, Digest: "b"}})
	c.add("n2", []api.Digest{{Index: 100, Digest: "a"}, {Index: 200, Digest: "b"}})
	c.add("n3", []api.Digest{{Index: 100, Digest: "a"}, {Index: 200, Digest: "X"}})
	c.add("gone", []api.Digest{{Index: 200, Digest: "Z"}}) // removed from the configuration: ignored
	found := c.compare(3, known, hclog.NewNullLogger())
	if len(found) != 1 || found[0].member != "n3" || found[0].index != 200 || found[0].expected != "b" || len(found[0].agreeing) != 2 {
		t.Fatalf("found %+v", found)
	}
	// The shadow reports late: it is compared then, once.
	c.add("s1", []api.Digest{{Index: 100, Digest: "a"}, {Index: 200, Digest: "Y"}})
	found = c.compare(3, known, hclog.NewNullLogger())
	if len(found) != 1 || found[0].member != "s1" {
		t.Fatalf("found %+v", found)
	}
	if again := c.compare(3, known, hclog.NewNullLogger()); len(again) != 0 {
		t.Fatalf("compared twice: %+v", again)
	}
	if m := c.members["s1"]; m.Compared != 2 || m.Agreed != 1 || m.Mismatches != 1 || m.LastAgreedIndex != 100 {
		t.Fatalf("shadow agreement %+v", m.ShadowStatus)
	}
	if c.lastAgreed.Load() != 100 {
		t.Fatalf("last agreed %d", c.lastAgreed.Load())
	}
}

func TestCollector_NoQuorumNoAlarm(t *testing.T) {
	c := newCollector()
	for _, id := range []string{"n1", "n2", "n3"} {
		c.members[id] = &memberAgreement{ShadowStatus: api.ShadowStatus{Member: id, Voter: true}}
	}
	c.add("n1", []api.Digest{{Index: 100, Digest: "a"}})
	c.add("n2", []api.Digest{{Index: 100, Digest: "b"}})
	if found := c.compare(3, map[string]bool{"n1": true, "n2": true, "n3": true}, hclog.NewNullLogger()); len(found) != 0 {
		t.Fatalf("an alarm without a quorum: %+v", found)
	}
}
