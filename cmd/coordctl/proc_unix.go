//go:build unix

package main

import (
	"os/exec"
	"syscall"
)

// ownProcessGroup makes the command the leader of a new process group, so
// that its children are stopped with it.
func ownProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// signalGroup signals the command's whole process group.
func signalGroup(cmd *exec.Cmd, sig syscall.Signal) error {
	err := syscall.Kill(-cmd.Process.Pid, sig)
	if err == syscall.ESRCH {
		return nil // already gone
	}
	return err
}
