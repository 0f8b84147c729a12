//go:build !unix

package main

// usage is the whole process's resource use so far.
type usage struct {
	cpu        float64 // user + system CPU seconds
	peakRSSMiB float64
}

// readUsage reports nothing where getrusage does not exist.
func readUsage() usage { return usage{} }
