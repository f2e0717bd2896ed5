package edge

import (
	"context"
	"time"

	"github.com/tideline/tideline/domain/safety"
	"github.com/tideline/tideline/edge/sim"
)

// Sim replays a synthetic scenario from edge/sim (`--source sim:NAME`),
// rebased to the current time and paced like Replay: faster than real
// time it ends now, so no event is dated in the future (unless it repeats
// forever).
type Sim struct {
	Scenario string
	Seed     int64
	// Speed: 1 real time, 0 (or less) as fast as possible.
	Speed float64
	// Repeat plays the scenario this many times back to back (0 means 1,
	// negative means until ctx ends), each with the next seed.
	Repeat int
}

// Run implements Source.
func (s *Sim) Run(ctx context.Context, emit func(safety.Sample) error) error {
	wall := time.Now()
	start := wall
	if aheadOfTime(s.Speed) && s.Repeat >= 0 {
		var length time.Duration
		for play := 0; play < max(1, s.Repeat); play++ {
			tr, err := sim.Scenario(s.Scenario, s.Seed+int64(play))
			if err != nil {
				return err
			}
			if n := len(tr.Samples); n > 0 {
				length += tr.Samples[n-1].T.Sub(sim.Start) + sim.Period
			}
		}
		start = wall.Add(-length)
	}
	var offset time.Duration
	for play := 0; s.Repeat < 0 || play < max(1, s.Repeat); play++ {
		tr, err := sim.Scenario(s.Scenario, s.Seed+int64(play))
		if err != nil {
			return err
		}
		var last time.Duration
		for _, smp := range tr.Samples {
			last = smp.T.Sub(sim.Start)
			at := offset + last
			smp.T = start.Add(at)
			if err := pace(ctx, wall, at, s.Speed); err != nil {
				return err
			}
			if err := emit(smp); err != nil {
				return err
			}
		}
		offset += last + sim.Period
	}
	return nil
}
