//go:build !linux

package tether

import "os/exec"

// setDeathSignal has nothing to set where the kernel has no parent-death
// signal (PR_SET_PDEATHSIG is Linux's): there a child only checks its
// parent at start (Orphaned).
func setDeathSignal(c *exec.Cmd) {}
