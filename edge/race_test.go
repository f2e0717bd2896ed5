//go:build race

package edge_test

// raceEnabled: the race detector slows the agent and the hub several
// times over; heavy tests shrink their streams under it (the same checks
// on fewer events).
const raceEnabled = true
