package fencing

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// failingStore is a Store whose every call fails, like a full or broken disk.
type failingStore struct{ err error }

func (s failingStore) Raise(string, Token) (Token, bool, error) { return 0, false, s.err }
func (s failingStore) Highest(string) (Token, error)            { return 0, s.err }
func (s failingStore) Close() error                             { return nil }

var errDiskFull = errors.New("disk full")

// counterValue returns the value of the counter called name whose labels
// include labels, or -1 if there is none.
func counterValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return -1
}
