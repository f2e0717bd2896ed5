//go:build race

package safety_test

// raceEnabled: the race detector slows the fall model's training about
// tenfold; TestFallModel then cross-validates on fewer, larger folds.
const raceEnabled = true
