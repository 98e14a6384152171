//go:build !unix

package main

import "time"

// processCPU: elsewhere the fan-out bench reports no CPU time.
func processCPU() time.Duration { return 0 }
