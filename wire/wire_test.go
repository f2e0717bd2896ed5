package wire_test

import (
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tideline/tideline/domain/safety"
	"github.com/tideline/tideline/wire"
)

func TestDirectGetSubject(t *testing.T) {
	for _, api := range []string{jetstream.DefaultAPIPrefix, "$JS.API"} {
		if got := wire.DirectGetLastSubject(api, "EVENTS", "ev.a.b.c"); got != "$JS.API.DIRECT.GET.EVENTS.ev.a.b.c" {
			t.Errorf("%q: %q", api, got)
		}
	}
}

func TestParseDeviceRequest(t *testing.T) {
	for _, lane := range wire.Lanes {
		for subj, last := range map[string]bool{wire.CommitSubject(lane, "d-1"): false, wire.LastSubject(lane, "d-1"): true} {
			l, id, isLast, ok := wire.ParseDeviceRequest(subj)
			if !ok || l != lane || id != "d-1" || isLast != last {
				t.Errorf("%s: %q %q %v %v", subj, l, id, isLast, ok)
			}
		}
	}
	for _, subj := range []string{"in.danger.device", "in.fire.device.d", "in.danger.host.d", "out.danger.device.d",
		"in.danger.device.d.first", "in.danger.device.d.last.x", wire.EventsSubject(safety.LaneDanger, "d")} {
		if _, _, _, ok := wire.ParseDeviceRequest(subj); ok {
			t.Errorf("%s parsed", subj)
		}
	}
}

func TestDeviceSubjects(t *testing.T) {
	want := []string{"in.danger.device.d", "in.danger.device.d.last", "in.telemetry.device.d", "in.telemetry.device.d.last"}
	got := wire.DeviceSubjects("d")
	if len(got) != len(want) {
		t.Fatalf("%q", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("%q, want %q", got, want)
		}
	}
	if wire.EventsSubject(safety.LaneDanger, "d") != "ev.safety.device.d" || wire.EventsSubject(safety.LaneTelemetry, "d") != "ev.telemetry.device.d" {
		t.Fatal("events subjects")
	}
}
