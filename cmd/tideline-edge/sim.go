package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/tideline/tideline/edge"
	"github.com/tideline/tideline/edge/sim"
)

// simSource builds --source sim:SCENARIO[:SEED].
func simSource(arg string, speed float64) (edge.Source, error) {
	name, seedStr, _ := strings.Cut(arg, ":")
	seed := int64(1)
	if seedStr != "" {
		var err error
		if seed, err = strconv.ParseInt(seedStr, 10, 64); err != nil {
			return nil, fmt.Errorf("--source sim:%s: bad seed %q", arg, seedStr)
		}
	}
	if _, err := sim.Scenario(name, seed); err != nil {
		return nil, fmt.Errorf("--source sim:%s: %w (scenarios: %s)", arg, err, strings.Join(sim.Names(), ", "))
	}
	return &edge.Sim{Scenario: name, Seed: seed, Speed: speed}, nil
}
