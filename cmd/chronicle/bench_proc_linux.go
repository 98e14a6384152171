//go:build linux

package main

import (
	"os/exec"
	"syscall"
)

// setChildAttrs puts a node the suite starts in its own process group (so a Ctrl-C at
// the terminal reaches only the suite, which stops the nodes in order) and has the kernel
// kill it if the suite dies without stopping it.
func setChildAttrs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// settleDisk writes out every dirty page of the page cache (sync(2)), so that the next
// measure does not pay for the writeback of the one before it.
func settleDisk() { syscall.Sync() }
