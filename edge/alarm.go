package edge

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"time"

	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
)

// alarmCommand starts AlarmCmd for ev on a goroutine of its own and
// returns at once. The command runs in its own process group, killed
// whole when it overruns AlarmTimeout or the agent closes. At most
// AlarmSlots commands run at once; an alarm that finds them all running
// waits for one to end (at most AlarmTimeout) on its own goroutine, so a
// hung command never holds up detection, and no alarm's command is lost.
func (a *Agent) alarmCommand(ev *safetyv1.DangerDetected) {
	env := append(os.Environ(),
		"TIDELINE_KIND="+ev.Kind.String(),
		"TIDELINE_SEVERITY="+ev.Severity.String(),
		"TIDELINE_EVENT_ID="+ev.EventId,
		"TIDELINE_DEVICE="+ev.DeviceId,
		"TIDELINE_RIDER="+ev.RiderId,
		"TIDELINE_DETECTED_AT="+ev.DetectedAt.AsTime().Format(time.RFC3339Nano),
		"TIDELINE_PEAK_G="+strconv.FormatFloat(ev.PeakAccelG, 'f', 2, 64),
		"TIDELINE_PEAK_DPS="+strconv.FormatFloat(ev.PeakGyroDps, 'f', 1, 64),
		"TIDELINE_TILT_DEG="+strconv.FormatFloat(ev.TiltDeg, 'f', 1, 64),
	)
	if l := ev.Location; l != nil {
		env = append(env, "TIDELINE_LAT="+strconv.FormatFloat(l.Lat, 'f', 6, 64), "TIDELINE_LNG="+strconv.FormatFloat(l.Lng, 'f', 6, 64))
	}
	run := func() {
		select {
		case a.alarmSlots <- struct{}{}:
		default:
			a.log.Warn("alarm command waits: all slots are taken by commands still running",
				"event_id", ev.EventId, "severity", ev.Severity.String(), "running", AlarmSlots)
			select {
			case a.alarmSlots <- struct{}{}:
			case <-a.life.Done():
				a.log.Warn("alarm command not run: agent closing", "event_id", ev.EventId)
				return
			}
		}
		defer func() { <-a.alarmSlots }()
		ctx, cancel := context.WithTimeout(a.life, a.cfg.AlarmTimeout)
		defer cancel()
		c := exec.CommandContext(ctx, "/bin/sh", "-c", a.cfg.AlarmCmd)
		c.Env = env
		c.Stdout, c.Stderr = os.Stderr, os.Stderr
		killGroupOnCancel(c)
		c.WaitDelay = time.Second // a child keeping stdout open
		err := c.Run()
		switch {
		case err == nil:
		case errors.Is(ctx.Err(), context.DeadlineExceeded):
			a.log.Error("alarm command timed out: killed", "event_id", ev.EventId, "timeout", a.cfg.AlarmTimeout)
		case ctx.Err() != nil:
			a.log.Warn("alarm command killed: agent closing", "event_id", ev.EventId)
		default:
			a.log.Error("alarm command failed", "event_id", ev.EventId, "cmd", a.cfg.AlarmCmd, "err", err)
		}
	}
	a.spawn(run)
}
