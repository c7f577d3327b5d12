//go:build !unix

package main

import (
	"os"
	"os/exec"
	"syscall"
)

func ownProcessGroup(*exec.Cmd) {}

// signalGroup signals the command itself: there are no process groups to
// signal here. SIGTERM cannot be delivered everywhere; it becomes a kill.
func signalGroup(cmd *exec.Cmd, sig syscall.Signal) error {
	if sig == syscall.SIGKILL {
		return cmd.Process.Kill()
	}
	if err := cmd.Process.Signal(sig); err != nil {
		return cmd.Process.Signal(os.Kill)
	}
	return nil
}
