//go:build race

package main

// raceEnabled: the race detector slows the in-process agent several
// times over; heavy tests shrink their streams under it (the same checks
// on fewer events).
const raceEnabled = true
