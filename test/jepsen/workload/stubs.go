package workload

import (
	"context"
	"errors"
	"time"

	"github.com/coordd/coordd/test/jepsen/check"
	"github.com/coordd/coordd/test/jepsen/history"
)

// stub is a placeholder until the workloads land.
type stub struct{ name string }

func (s stub) Name() string { return s.name }
func (s stub) Run(ctx context.Context, env Env) error {
	return errors.New("workload: not implemented yet")
}
func (s stub) Final(ctx context.Context, env Env) (history.FinalState, error) {
	return history.FinalState{}, errors.New("workload: not implemented yet")
}
func (s stub) Check(ops []history.Op, final history.FinalState, outDir string) []check.Result {
	return nil
}
func (s stub) LeaseTTL() time.Duration { return 2 * time.Second }

// Register is the KV register workload on keys keys.
func Register(keys int) Workload { return stub{"register"} }

// FencedLock is the fenced-lock workload (fenced=false: the unfenced variant).
func FencedLock(fenced bool) Workload { return stub{"fenced-lock"} }

// Election is the election workload.
func Election() Workload { return stub{"election"} }
