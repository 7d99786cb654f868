//go:build race

package sim

// raceEnabled relaxes timing-dependent assertions: the race detector slows the loopback
// client so much that 2,000 connections no longer open within one stream's lifetime.
const raceEnabled = true
