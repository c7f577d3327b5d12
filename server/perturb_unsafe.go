//go:build coordd_unsafe_perturb

package server

import (
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/coordd/coordd/fsm"
)

// unsafePerturb, in a build with the tag coordd_unsafe_perturb (TESTS
// ONLY: such a build can corrupt its own replica on purpose), reads
// COORDD_UNSAFE_PERTURB_APPLY_AT=N and, once this node has applied an
// entry at index N or above, applies one extra key to its own state that
// no log entry carries: its replica now differs from every other, as
// after a nondeterministic apply. The digest comparison must catch it
// (Test_E2E_Digest_PerturbedMemberIsAlarmed, BenchmarkE2E_DigestPerturbToAlarm).
func unsafePerturb(cfg *Config, f *fsm.FSM) func(index uint64) *fsm.State {
	at, err := strconv.ParseUint(os.Getenv("COORDD_UNSAFE_PERTURB_APPLY_AT"), 10, 64)
	if err != nil || at == 0 {
		return nil
	}
	cfg.Logger.Warn("UNSAFE TEST BUILD: this node will perturb its own state behind the log's back", "at_index", at)
	var once sync.Once
	return func(index uint64) *fsm.State {
		if index < at {
			return nil
		}
		var out *fsm.State
		once.Do(func() {
			cmd, err := fsm.NewCommand(fsm.KVPut{Key: "coordd-unsafe-perturbed", Value: []byte("not in the log")})
			if err != nil {
				panic(err)
			}
			cmd.Stamp = f.State().Stamp()
			f.Apply(&raft.Log{Index: index, Term: f.State().Term(), Type: raft.LogCommand, Data: cmd.Encode()})
			out = f.State()
			// The time of the perturbation, for the perturbation-to-alarm
			// benchmark (parsed from the log).
			cfg.Logger.Warn("UNSAFE TEST BUILD: perturbed this node's state", "index", index, "unix_nano", time.Now().UnixNano())
		})
		return out
	}
}
