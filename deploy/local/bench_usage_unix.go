//go:build unix

package main

import (
	"runtime"
	"syscall"
	"time"
)

// usage is the whole process's resource use so far.
type usage struct {
	cpu        float64 // user + system CPU seconds
	peakRSSMiB float64
}

func readUsage() usage {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return usage{}
	}
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	rss := float64(ru.Maxrss) / 1024 // KiB on Linux
	if runtime.GOOS == "darwin" {
		rss /= 1024 // bytes on macOS
	}
	return usage{cpu: cpu.Seconds(), peakRSSMiB: rss}
}
