//go:build !linux

package main

import "os/exec"

// setChildAttrs: elsewhere the nodes stay in the suite's process group, so a Ctrl-C
// reaches them too.
func setChildAttrs(*exec.Cmd) {}

// settleDisk: elsewhere the next measure shares the disk with the last one's writeback.
func settleDisk() {}
