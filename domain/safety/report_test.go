package safety_test

import (
	"errors"
	"math"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/safety"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
)

var reportNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func validReport() *safetyv1.DangerDetected {
	return &safetyv1.DangerDetected{
		EventId: "phone7:crash-1", DeviceId: "phone7", RiderId: "rider-1",
		Kind: safetyv1.DangerKind_DANGER_KIND_CRASH, Severity: safetyv1.Severity_SEVERITY_HIGH,
		PeakAccelG: 6.5, PeakGyroDps: 420, DurationMs: 120, TiltDeg: 80,
		Location:   &safetyv1.Location{Lat: 37.5665, Lng: 126.978, AccuracyM: 8},
		DetectedAt: timestamppb.New(reportNow.Add(-time.Minute)),
	}
}

func TestValidateReport(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(d *safetyv1.DangerDetected)
		field string // "" means valid
	}{
		{"valid_report", func(*safetyv1.DangerDetected) {}, ""},
		{"no_device_is_fine", func(d *safetyv1.DangerDetected) { d.DeviceId = "" }, ""},
		{"no_location_is_fine", func(d *safetyv1.DangerDetected) { d.Location = nil }, ""},
		{"small_clock_skew_is_fine", func(d *safetyv1.DangerDetected) { d.DetectedAt = timestamppb.New(reportNow.Add(time.Minute)) }, ""},
		{"event_id_missing", func(d *safetyv1.DangerDetected) { d.EventId = "" }, "event_id"},
		{"event_id_with_dot", func(d *safetyv1.DangerDetected) { d.EventId = "a.b" }, "event_id"},
		{"rider_id_with_wildcard", func(d *safetyv1.DangerDetected) { d.RiderId = "r*" }, "rider_id"},
		{"device_id_with_space", func(d *safetyv1.DangerDetected) { d.DeviceId = "a b" }, "device_id"},
		{"kind_unspecified", func(d *safetyv1.DangerDetected) { d.Kind = 0 }, "kind"},
		{"kind_unknown", func(d *safetyv1.DangerDetected) { d.Kind = 99 }, "kind"},
		{"severity_unspecified", func(d *safetyv1.DangerDetected) { d.Severity = 0 }, "severity"},
		{"severity_unknown", func(d *safetyv1.DangerDetected) { d.Severity = 7 }, "severity"},
		{"accel_nan", func(d *safetyv1.DangerDetected) { d.PeakAccelG = math.NaN() }, "peak_accel_g"},
		{"accel_negative", func(d *safetyv1.DangerDetected) { d.PeakAccelG = -1 }, "peak_accel_g"},
		{"accel_beyond_physics", func(d *safetyv1.DangerDetected) { d.PeakAccelG = 1000 }, "peak_accel_g"},
		{"gyro_infinite", func(d *safetyv1.DangerDetected) { d.PeakGyroDps = math.Inf(1) }, "peak_gyro_dps"},
		{"duration_negative", func(d *safetyv1.DangerDetected) { d.DurationMs = -5 }, "duration_ms"},
		{"duration_over_an_hour", func(d *safetyv1.DangerDetected) { d.DurationMs = 3600001 }, "duration_ms"},
		{"tilt_over_180", func(d *safetyv1.DangerDetected) { d.TiltDeg = 181 }, "tilt_deg"},
		{"lat_out_of_range", func(d *safetyv1.DangerDetected) { d.Location.Lat = 91 }, "location.lat"},
		{"lng_out_of_range", func(d *safetyv1.DangerDetected) { d.Location.Lng = -181 }, "location.lng"},
		{"lng_nan", func(d *safetyv1.DangerDetected) { d.Location.Lng = math.NaN() }, "location.lng"},
		{"accuracy_negative", func(d *safetyv1.DangerDetected) { d.Location.AccuracyM = -1 }, "location.accuracy_m"},
		{"detected_at_missing", func(d *safetyv1.DangerDetected) { d.DetectedAt = nil }, "detected_at"},
		{"detected_at_in_future", func(d *safetyv1.DangerDetected) { d.DetectedAt = timestamppb.New(reportNow.Add(10 * time.Minute)) }, "detected_at"},
		{"detected_at_too_old", func(d *safetyv1.DangerDetected) { d.DetectedAt = timestamppb.New(reportNow.Add(-31 * 24 * time.Hour)) }, "detected_at"},
		{"detected_at_invalid", func(d *safetyv1.DangerDetected) { d.DetectedAt = &timestamppb.Timestamp{Nanos: -1} }, "detected_at"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := validReport()
			tc.edit(d)
			err := safety.ValidateReport(d, reportNow)
			if tc.field == "" {
				if err != nil {
					t.Fatalf("valid report rejected: %v", err)
				}
				return
			}
			var e *es.Error
			if !errors.As(err, &e) || e.Kind != es.Invalid || e.Field != tc.field {
				t.Fatalf("err = %v, want Invalid naming %s", err, tc.field)
			}
		})
	}
	if err := safety.ValidateReport(nil, reportNow); es.KindOf(err) != es.Invalid {
		t.Fatalf("nil report: %v", err)
	}
}

func TestValidateReportAcceptsDetectorEvents(t *testing.T) {
	d := safety.Detection{EventID: "crash-1", Kind: safety.Crash, Severity: safetyv1.Severity_SEVERITY_CRITICAL,
		PeakAccelG: 9, PeakGyroDPS: 800, TiltDeg: 95, Duration: 4 * time.Second, At: reportNow.Add(-time.Hour)}
	if err := safety.ValidateReport(d.Event("dev7", "rider-1"), reportNow); err != nil {
		t.Fatal(err)
	}
}

func TestAuthorizeReport(t *testing.T) {
	cases := []struct {
		name string
		p    auth.Principal
		kind es.Kind // Internal means allowed
	}{
		{"rider_reports_for_themself", auth.Principal{Subject: "r1", Role: auth.Rider}, es.Internal},
		{"rider_cannot_report_for_another", auth.Principal{Subject: "r2", Role: auth.Rider}, es.Forbidden},
		{"device_reports_for_anyone", auth.Principal{Subject: "dev1", Role: auth.Device}, es.Internal},
		{"service_reports_for_anyone", auth.Principal{Subject: "hub", Role: auth.Service}, es.Internal},
		{"admin_reports_for_anyone", auth.Principal{Subject: "ops", Role: auth.Admin}, es.Internal},
		{"walker_cannot_report", auth.Principal{Subject: "r1", Role: auth.Walker}, es.Forbidden},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := safety.AuthorizeReport(tc.p, "r1")
			if tc.kind == es.Internal && err != nil || tc.kind != es.Internal && es.KindOf(err) != tc.kind {
				t.Fatalf("err = %v, want kind %v", err, tc.kind)
			}
		})
	}
}
