package safety

import (
	"context"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"math"
	"time"

	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
)

// Bounds of a danger report. Peaks beyond them are not physical for a
// body-worn sensor (consumer accelerometers saturate at 16–200 g, gyros
// at 2000–4000 °/s), so they mean a broken sensor or a forged report.
const (
	MaxPeakAccelG  = 200.0
	MaxPeakGyroDPS = 10000.0
	MaxDuration    = time.Hour
	MaxAccuracyM   = 100000.0
	// MaxClockSkew is how far in the future detected_at may be: device
	// clocks drift.
	MaxClockSkew = 2 * time.Minute
	// MaxReportAge is how old detected_at may be: an edge device offline
	// for weeks still syncs, but nothing older is a live safety matter.
	MaxReportAge = 30 * 24 * time.Hour
)

// ValidateReport checks a DangerDetected report, from a phone (the API's
// ReportDanger) or an edge device (the hub), at time now. It returns an
// Invalid error naming the field: event_id, rider_id (safe tokens),
// device_id (a safe token when present), kind and severity (specified and
// known), peak_accel_g, peak_gyro_dps, duration_ms, tilt_deg (finite and
// within physical bounds), location.lat, location.lng,
// location.accuracy_m, and detected_at (present, not beyond MaxClockSkew
// in the future nor older than MaxReportAge). received_at is not checked:
// the server stamps it.
func ValidateReport(d *safetyv1.DangerDetected, now time.Time) error {
	if d == nil {
		return es.Invalidf("event", "is required")
	}
	if err := es.ValidateToken("event_id", d.EventId); err != nil {
		return err
	}
	if err := es.ValidateToken("rider_id", d.RiderId); err != nil {
		return err
	}
	if d.DeviceId != "" {
		if err := es.ValidateToken("device_id", d.DeviceId); err != nil {
			return err
		}
	}
	if _, known := safetyv1.DangerKind_name[int32(d.Kind)]; !known || d.Kind == safetyv1.DangerKind_DANGER_KIND_UNSPECIFIED {
		return es.Invalidf("kind", "must be a known danger kind, got %d", d.Kind)
	}
	if _, known := safetyv1.Severity_name[int32(d.Severity)]; !known || d.Severity == safetyv1.Severity_SEVERITY_UNSPECIFIED {
		return es.Invalidf("severity", "must be a known severity, got %d", d.Severity)
	}
	if err := within("peak_accel_g", d.PeakAccelG, 0, MaxPeakAccelG); err != nil {
		return err
	}
	if err := within("peak_gyro_dps", d.PeakGyroDps, 0, MaxPeakGyroDPS); err != nil {
		return err
	}
	if d.DurationMs < 0 || d.DurationMs > MaxDuration.Milliseconds() {
		return es.Invalidf("duration_ms", "must be between 0 and %d, got %d", MaxDuration.Milliseconds(), d.DurationMs)
	}
	if err := within("tilt_deg", d.TiltDeg, 0, 180); err != nil {
		return err
	}
	if l := d.Location; l != nil {
		if err := within("location.lat", l.Lat, -90, 90); err != nil {
			return err
		}
		if err := within("location.lng", l.Lng, -180, 180); err != nil {
			return err
		}
		if err := within("location.accuracy_m", l.AccuracyM, 0, MaxAccuracyM); err != nil {
			return err
		}
	}
	if d.DetectedAt == nil {
		return es.Invalidf("detected_at", "is required")
	}
	if err := d.DetectedAt.CheckValid(); err != nil {
		return es.Invalidf("detected_at", "%v", err)
	}
	at := d.DetectedAt.AsTime()
	if at.After(now.Add(MaxClockSkew)) {
		return es.Invalidf("detected_at", "%s is more than %s in the future", at.UTC().Format(time.RFC3339), MaxClockSkew)
	}
	if at.Before(now.Add(-MaxReportAge)) {
		return es.Invalidf("detected_at", "%s is more than %s old", at.UTC().Format(time.RFC3339), MaxReportAge)
	}
	return nil
}

func within(field string, v, lo, hi float64) error {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return es.Invalidf(field, "must be a finite number")
	}
	if v < lo || v > hi {
		return es.Invalidf(field, "must be between %g and %g, got %g", lo, hi, v)
	}
	return nil
}

// AuthorizeReport returns Forbidden unless p may report danger for
// riderID: a rider as themself; a device, service or admin for anyone.
func AuthorizeReport(p auth.Principal, riderID string) error {
	switch p.Role {
	case auth.Admin, auth.Service, auth.Device:
		return nil
	case auth.Rider:
		if p.Subject == riderID {
			return nil
		}
		return ErrNotYourReport
	}
	return es.Errorf(es.Forbidden, "role %q may not report danger", p.Role)
}

// ErrNotYourReport is returned when a rider reports for another rider.
var ErrNotYourReport = &es.Error{Kind: es.Forbidden, Message: "a rider may report danger only for themself"}

// ReportStream is the stream of danger events reported through the API
// for a rider (edge devices' events are on ev.safety.device.<device>).
func ReportStream(riderID string) es.StreamID {
	return es.StreamID{Context: "safety", Type: "rider", ID: riderID}
}

// Service records danger reports and runs alert commands against a store.
// Safe for concurrent use.
type Service struct {
	Store  es.Store
	Alerts *es.Repository[Alert, AlertCommand]
	Now    func() time.Time
}

// NewService returns a service over store.
func NewService(store es.Store) *Service {
	return &Service{Store: store, Alerts: es.NewRepository(store, AlertDecider, 10000)}
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Report validates and authorizes a danger report from p and appends it,
// stamped with received_at, to the rider's report stream. It is a fact:
// no version check; the event id and severity are the idempotency key, so
// a retry within the store's duplicate window appends nothing (Duplicate)
// while a detector's CRITICAL upgrade, which reuses its detection's event
// id, is recorded. Read models merge by rider and event id beyond it.
func (s *Service) Report(ctx context.Context, p auth.Principal, d *safetyv1.DangerDetected) (es.AppendResult, error) {
	now := s.now()
	if err := ValidateReport(d, now); err != nil {
		return es.AppendResult{}, err
	}
	if err := AuthorizeReport(p, d.RiderId); err != nil {
		return es.AppendResult{}, err
	}
	d = proto.Clone(d).(*safetyv1.DangerDetected)
	d.ReceivedAt = timestamppb.New(now)
	return s.Store.Append(ctx, ReportStream(d.RiderId), []proto.Message{d}, es.AppendOptions{
		ExpectedVersion: es.AnyVersion,
		IdempotencyKey:  "danger:" + d.EventId + ":" + d.Severity.String(),
		Meta:            es.Metadata{Actor: p.String(), Source: "api"},
		Now:             now,
	})
}
