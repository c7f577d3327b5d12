package fsm_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/coordd/coordd/fsm"
)

func raise(member string, index uint64) fsm.Command {
	return cmdOf(fsm.AlarmRaise{Alarm: fsm.Alarm{Member: member, Kind: fsm.AlarmDigestMismatch, Index: index,
		Digest: "aa", Expected: "bb", Detail: "n1, n2 agree"}})
}

func TestAlarm_RaiseRecordsItOnceAndDisarmClearsIt(t *testing.T) {
	f := fsm.New()
	watch := f.State().AlarmWatch()
	applyTo(t, f, 1, put("k", "v"))
	if closed(watch) {
		t.Fatal("a put closed the alarm watch")
	}
	applyTo(t, f, 2, raise("n3", 1))
	if !closed(watch) {
		t.Fatal("a raise did not close the alarm watch")
	}
	a, ok := f.State().Alarm("n3")
	if !ok || a.Index != 1 || a.RaisedIndex != 2 || a.Kind != fsm.AlarmDigestMismatch || a.Digest != "aa" || a.Expected != "bb" {
		t.Fatalf("alarm = %+v, %v", a, ok)
	}
	// A second raise for the same member keeps the first.
	applyTo(t, f, 3, raise("n3", 3))
	if a, _ := f.State().Alarm("n3"); a.Index != 1 || a.RaisedIndex != 2 {
		t.Fatalf("second raise replaced the first: %+v", a)
	}
	applyTo(t, f, 4, raise("n1", 3))
	if as := f.State().Alarms(); len(as) != 2 || as[0].Member != "n1" || as[1].Member != "n3" {
		t.Fatalf("alarms = %+v", as)
	}
	if r := applyTo(t, f, 5, cmdOf(fsm.AlarmDisarm{Member: "n1"})); r.Err != nil || r.Deleted != 1 {
		t.Fatalf("disarm n1: %+v", r)
	}
	if r := applyTo(t, f, 6, cmdOf(fsm.AlarmDisarm{Member: "n1"})); !errors.Is(r.Err, fsm.ErrAlarmNotFound) {
		t.Fatalf("disarm of a missing alarm: %v", r.Err)
	}
	if r := applyTo(t, f, 7, cmdOf(fsm.AlarmDisarm{})); r.Err != nil || r.Deleted != 1 || len(f.State().Alarms()) != 0 {
		t.Fatalf("disarm all: %+v, left %+v", r, f.State().Alarms())
	}
}

func TestAlarm_NewCommandRefusesInvalidRaises(t *testing.T) {
	for name, a := range map[string]fsm.Alarm{
		"no member":    {Kind: fsm.AlarmDigestMismatch, Index: 1},
		"no kind":      {Member: "n1", Index: 1},
		"index 0":      {Member: "n1", Kind: fsm.AlarmDigestMismatch},
		"raised index": {Member: "n1", Kind: fsm.AlarmDigestMismatch, Index: 1, RaisedIndex: 4},
		"long digest":  {Member: "n1", Kind: fsm.AlarmDigestMismatch, Index: 1, Digest: string(make([]byte, 129))},
	} {
		if _, err := fsm.NewCommand(fsm.AlarmRaise{Alarm: a}); !errors.Is(err, fsm.ErrInvalid) {
			t.Errorf("%s: NewCommand = %v, want ErrInvalid", name, err)
		}
	}
}

func TestAlarm_SurvivesASnapshotAndCountsInTheReplicaDigest(t *testing.T) {
	s := buildState(t, put("k", "v"), raise("n2", 1))
	var buf bytes.Buffer
	if err := fsm.WriteState(&buf, s); err != nil {
		t.Fatal(err)
	}
	r, err := fsm.ReadState(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if a, ok := r.Alarm("n2"); !ok || a.RaisedIndex != 2 || a.Detail != "n1, n2 agree" {
		t.Fatalf("alarm after restore = %+v, %v", a, ok)
	}
	if r.ReplicaDigest() != s.ReplicaDigest() {
		t.Fatal("replica digest changed through a snapshot")
	}
	without := buildState(t, put("k", "v"), cmdOf(fsm.DigestPoint{}))
	if without.ReplicaDigest() == s.ReplicaDigest() {
		t.Fatal("an alarm does not change the replica digest")
	}
}

func TestDigestPoint_ChangesNoData(t *testing.T) {
	a := buildState(t, put("k", "v"))
	b := buildState(t, put("k", "v"), cmdOf(fsm.DigestPoint{}))
	// Same data, one entry later: the stamp is the same (0), so the
	// replica digests agree.
	if a.ReplicaDigest() != b.ReplicaDigest() {
		t.Fatal("a digest point changed the replica digest")
	}
}
