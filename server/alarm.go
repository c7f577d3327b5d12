package server

import (
	"time"

	"github.com/hashicorp/raft"
)

// runAlarmWatch keeps this node's refuse mode in step with the replicated
// alarms: with -corrupt-check=refuse, while an alarm names this node it
// refuses every request but health, status, metrics, digests and alarms
// (503 state_corrupt), and hands leadership to another voter whenever it
// finds itself leading. Without refuse it only logs. Disarming the alarm
// (coordctl alarm disarm) ends it.
func (s *Server) runAlarmWatch() {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var lastTransfer, lastSuffrage time.Time
	alarmed, warnedVoter := false, false
	for {
		if s.cfg.Shadow && time.Since(lastSuffrage) > 5*time.Second {
			lastSuffrage = time.Now()
			if voter := s.isVoter(); voter && !warnedVoter {
				s.log.Error("this shadow member was made a voter: a shadow must never vote or lead; remove it (coordctl members remove " + s.cfg.NodeID + ") and rejoin it with -shadow")
				warnedVoter = true
			} else if !voter {
				warnedVoter = false
			}
		}
		st := s.fsm.State()
		a, named := st.Alarm(s.cfg.NodeID)
		refuse := named && s.cfg.CorruptCheck == CorruptCheckRefuse
		if named != alarmed {
			alarmed = named
			switch {
			case named && refuse:
				s.log.Error("an alarm names this node: its state differs from the cluster's; refusing reads and leadership until an operator disarms it (coordctl alarm disarm "+s.cfg.NodeID+")",
					"kind", a.Kind.String(), "index", a.Index, "digest", a.Digest, "expected", a.Expected)
			case named:
				s.log.Error("an alarm names this node: its state differs from the cluster's (-corrupt-check=warn: it goes on serving; replace its data or disarm the alarm)",
					"kind", a.Kind.String(), "index", a.Index, "digest", a.Digest, "expected", a.Expected)
			default:
				s.log.Info("the alarm naming this node was disarmed")
			}
		}
		s.refusing.Store(refuse)
		// A shadow joins as a non-voter and cannot be elected; should an
		// operator make it a voter anyway, it still hands leadership away.
		if (refuse || s.cfg.Shadow) && s.raft.State() == raft.Leader && time.Since(lastTransfer) > time.Second {
			lastTransfer = time.Now()
			if s.cfg.Shadow {
				s.log.Error("a shadow member must never lead (was it made a voter? remove it and rejoin it with -shadow); transferring leadership")
			} else {
				s.log.Warn("refusing leadership: an alarm names this node; transferring leadership")
			}
			if err := s.raft.LeadershipTransfer().Error(); err != nil {
				s.log.Warn("leadership transfer failed; retrying", "error", err)
			}
		}
		select {
		case <-s.stop:
			return
		case <-st.AlarmWatch():
		case <-s.fsm.ResetCh():
		case <-tick.C:
		}
	}
}

// isVoter reports whether the Raft configuration makes this node a voter.
func (s *Server) isVoter() bool {
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	for _, srv := range f.Configuration().Servers {
		if string(srv.ID) == s.cfg.NodeID {
			return srv.Suffrage == raft.Voter
		}
	}
	return false
}
