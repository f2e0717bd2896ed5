package safety_test

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/safety"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
	telemetryv1 "github.com/tideline/tideline/schemas/gen/tideline/telemetry/v1"
)

var bike7 = safety.RegisteredDevice{ID: "bike-7", RiderID: "alice"}

func dangerEvent(edit func(d *safetyv1.DangerDetected)) es.Event {
	d := validReport()
	d.DeviceId, d.RiderId = "bike-7", "alice"
	if edit != nil {
		edit(d)
	}
	return es.Event{ID: "01J0000000000000000000000A", Type: safety.LaneDanger.EventType(), Data: d}
}

func samplesEvent(edit func(s *telemetryv1.SamplesRecorded)) es.Event {
	s := &telemetryv1.SamplesRecorded{DeviceId: "bike-7", RiderId: "alice", FirstAt: timestamppb.New(reportNow),
		OffsetMs: []uint32{0, 10}, AccelXMg: []int32{0, 5}, AccelYMg: []int32{0, 0}, AccelZMg: []int32{1000, 990},
		GyroXDdps: []int32{0, 1}, GyroYDdps: []int32{0, 0}, GyroZDdps: []int32{0, 0}}
	if edit != nil {
		edit(s)
	}
	return es.Event{ID: "01J0000000000000000000000B", Type: safety.LaneTelemetry.EventType(), Data: s}
}

func TestAdmitDeviceCommit(t *testing.T) {
	revoked := bike7
	revoked.RevokedAt = reportNow.Add(-time.Second)
	revokedLater := bike7
	revokedLater.RevokedAt = reportNow.Add(time.Second)
	cases := []struct {
		name   string
		dev    safety.RegisteredDevice
		lane   safety.DeviceLane
		events []es.Event
		code   safety.RejectCode // "" means admitted
	}{
		{"own_danger_event_admitted", bike7, safety.LaneDanger, []es.Event{dangerEvent(nil)}, ""},
		{"ids_left_empty_are_bound", bike7, safety.LaneDanger, []es.Event{dangerEvent(func(d *safetyv1.DangerDetected) { d.RiderId, d.DeviceId = "", "" })}, ""},
		{"own_telemetry_admitted", bike7, safety.LaneTelemetry, []es.Event{samplesEvent(nil), samplesEvent(nil)}, ""},
		{"telemetry_without_gyro_admitted", bike7, safety.LaneTelemetry, []es.Event{samplesEvent(func(s *telemetryv1.SamplesRecorded) { s.GyroXDdps, s.GyroYDdps, s.GyroZDdps = nil, nil, nil })}, ""},
		{"sent_before_revocation_admitted", revokedLater, safety.LaneDanger, []es.Event{dangerEvent(nil)}, ""},

		{"unknown_device", safety.RegisteredDevice{ID: "ghost"}, safety.LaneDanger, []es.Event{dangerEvent(nil)}, safety.RejectUnknownDevice},
		{"sent_after_revocation", revoked, safety.LaneDanger, []es.Event{dangerEvent(nil)}, safety.RejectRevoked},
		{"empty_commit", bike7, safety.LaneDanger, nil, safety.RejectInvalid},
		{"too_many_events", bike7, safety.LaneTelemetry, make([]es.Event, safety.MaxDeviceCommitEvents+1), safety.RejectInvalid},
		{"danger_for_another_rider", bike7, safety.LaneDanger, []es.Event{dangerEvent(func(d *safetyv1.DangerDetected) { d.RiderId = "bob" })}, safety.RejectForeignRider},
		{"danger_for_another_device", bike7, safety.LaneDanger, []es.Event{dangerEvent(func(d *safetyv1.DangerDetected) { d.DeviceId = "bike-8" })}, safety.RejectForeignDevice},
		{"telemetry_for_another_rider", bike7, safety.LaneTelemetry, []es.Event{samplesEvent(func(s *telemetryv1.SamplesRecorded) { s.RiderId = "bob" })}, safety.RejectForeignRider},
		{"one_bad_event_refuses_the_commit", bike7, safety.LaneDanger, []es.Event{dangerEvent(nil), dangerEvent(func(d *safetyv1.DangerDetected) { d.RiderId = "bob" })}, safety.RejectForeignRider},
		{"danger_failing_validation", bike7, safety.LaneDanger, []es.Event{dangerEvent(func(d *safetyv1.DangerDetected) { d.PeakAccelG = 1e9 })}, safety.RejectInvalid},
		{"danger_without_detected_at", bike7, safety.LaneDanger, []es.Event{dangerEvent(func(d *safetyv1.DangerDetected) { d.DetectedAt = nil })}, safety.RejectInvalid},
		{"telemetry_on_danger_lane", bike7, safety.LaneDanger, []es.Event{samplesEvent(nil)}, safety.RejectWrongType},
		{"danger_on_telemetry_lane", bike7, safety.LaneTelemetry, []es.Event{dangerEvent(nil)}, safety.RejectWrongType},
		{"alert_acknowledgement_from_device", bike7, safety.LaneDanger, []es.Event{{ID: "x1", Type: "tideline.safety.v1.AlertAcknowledged",
			Data: &safetyv1.AlertAcknowledged{AlertId: "alert-1", By: "admin:root"}}}, safety.RejectWrongType},
		{"type_header_lies_about_data", bike7, safety.LaneDanger, []es.Event{{ID: "x1", Type: safety.LaneDanger.EventType(),
			Data: &safetyv1.AlertAcknowledged{AlertId: "alert-1"}}}, safety.RejectWrongType},
		{"undecoded_event", bike7, safety.LaneDanger, []es.Event{{ID: "x1", Type: safety.LaneDanger.EventType()}}, safety.RejectWrongType},
		{"event_without_id", bike7, safety.LaneDanger, []es.Event{func() es.Event { e := dangerEvent(nil); e.ID = ""; return e }()}, safety.RejectInvalid},
		{"unknown_lane", bike7, safety.DeviceLane("orders"), []es.Event{dangerEvent(nil)}, safety.RejectWrongType},
		{"samples_of_unequal_length", bike7, safety.LaneTelemetry, []es.Event{samplesEvent(func(s *telemetryv1.SamplesRecorded) { s.AccelXMg = make([]int32, 50) })}, safety.RejectInvalid},
		{"samples_beyond_physics", bike7, safety.LaneTelemetry, []es.Event{samplesEvent(func(s *telemetryv1.SamplesRecorded) { s.AccelZMg[0] = 1 << 30 })}, safety.RejectInvalid},
		{"empty_window", bike7, safety.LaneTelemetry, []es.Event{samplesEvent(func(s *telemetryv1.SamplesRecorded) { *s = telemetryv1.SamplesRecorded{} })}, safety.RejectInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := make([]proto.Message, len(tc.events))
			for i, e := range tc.events {
				if e.Data != nil {
					before[i] = proto.Clone(e.Data)
				}
			}
			got, err := safety.AdmitDeviceCommit(tc.dev, tc.lane, tc.events, reportNow)
			for i, e := range tc.events {
				if e.Data != nil && !proto.Equal(e.Data, before[i]) {
					t.Fatalf("input event %d was modified", i)
				}
			}
			if tc.code != "" {
				var rej *safety.RejectedError
				if !errors.As(err, &rej) || rej.Code != tc.code {
					t.Fatalf("err = %v, want a rejection %q", err, tc.code)
				}
				if got != nil {
					t.Fatalf("rejected commit admitted %d events", len(got))
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if len(got) != len(tc.events) {
				t.Fatalf("admitted %d of %d events", len(got), len(tc.events))
			}
			for _, e := range got {
				switch d := e.Data.(type) {
				case *safetyv1.DangerDetected:
					if d.RiderId != "alice" || d.DeviceId != "bike-7" || !d.ReceivedAt.AsTime().Equal(reportNow) {
						t.Fatalf("danger event not bound to the registry: %v", d)
					}
				case *telemetryv1.SamplesRecorded:
					if d.RiderId != "alice" || d.DeviceId != "bike-7" {
						t.Fatalf("telemetry not bound to the registry: %v", d)
					}
				}
			}
		})
	}
}

// Telemetry already bound is admitted as it is (the hub then stores the
// device's bytes without encoding them again); other events are copies.
func TestAdmitDeviceCommitCopiesOnlyWhatItBinds(t *testing.T) {
	bound, unbound := samplesEvent(nil), samplesEvent(func(s *telemetryv1.SamplesRecorded) { s.RiderId = "" })
	got, err := safety.AdmitDeviceCommit(bike7, safety.LaneTelemetry, []es.Event{bound, unbound}, reportNow)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Data != bound.Data || got[1].Data == unbound.Data || unbound.Data.(*telemetryv1.SamplesRecorded).RiderId != "" {
		t.Fatal("bound telemetry copied, or unbound telemetry modified in place")
	}
}

// The device cannot choose received_at: the hub's receipt time wins.
func TestAdmitDeviceCommitStampsReceivedAt(t *testing.T) {
	e := dangerEvent(func(d *safetyv1.DangerDetected) { d.ReceivedAt = timestamppb.New(reportNow.Add(-48 * time.Hour)) })
	got, err := safety.AdmitDeviceCommit(bike7, safety.LaneDanger, []es.Event{e}, reportNow)
	if err != nil {
		t.Fatal(err)
	}
	if at := got[0].Data.(*safetyv1.DangerDetected).ReceivedAt.AsTime(); !at.Equal(reportNow) {
		t.Fatalf("received_at = %v, want the hub's %v", at, reportNow)
	}
}

func TestRejectionNamesTheField(t *testing.T) {
	_, err := safety.AdmitDeviceCommit(bike7, safety.LaneDanger, []es.Event{dangerEvent(nil), dangerEvent(func(d *safetyv1.DangerDetected) { d.Location.Lat = 95 })}, reportNow)
	var e *es.Error
	if !errors.As(err, &e) || e.Field != "events[1].data.location.lat" || safety.CodeOf(err) != safety.RejectInvalid {
		t.Fatalf("err = %v (field %q)", err, e.Field)
	}
}
