//go:build !race

package edge_test

// raceEnabled: see race_test.go.
const raceEnabled = false
