//go:build !coordd_unsafe_perturb

package server

import "github.com/coordd/coordd/fsm"

// unsafePerturb is nil in every normal build: only a build with the tag
// coordd_unsafe_perturb can change a replica's state behind the log's back
// (see perturb_unsafe.go).
func unsafePerturb(*Config, *fsm.FSM) func(index uint64) *fsm.State { return nil }
