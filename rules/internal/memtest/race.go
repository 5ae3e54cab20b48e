//go:build race

package memtest

// raceEnabled: the race detector multiplies memory use, so peak figures mean nothing.
const raceEnabled = true
