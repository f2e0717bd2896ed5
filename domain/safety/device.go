package safety

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/es"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
	telemetryv1 "github.com/tideline/tideline/schemas/gen/tideline/telemetry/v1"
)

// DeviceLane is one of an edge device's two ways into the hub. Each lane
// carries one event type only.
type DeviceLane string

const (
	// LaneDanger carries DangerDetected.
	LaneDanger DeviceLane = "danger"
	// LaneTelemetry carries telemetry SamplesRecorded windows.
	LaneTelemetry DeviceLane = "telemetry"
)

// EventType returns the one event type the lane admits ("" for an
// unknown lane).
func (l DeviceLane) EventType() string {
	switch l {
	case LaneDanger:
		return string((*safetyv1.DangerDetected)(nil).ProtoReflect().Descriptor().FullName())
	case LaneTelemetry:
		return string((*telemetryv1.SamplesRecorded)(nil).ProtoReflect().Descriptor().FullName())
	}
	return ""
}

// Bounds of a device commit. The edge agent packs at most 256 events per
// commit and a telemetry window is 100 samples by default.
const (
	MaxDeviceCommitEvents = 1024
	MaxWindowSamples      = 10000
	// MaxSampleAccelMG and MaxSampleGyroDDPS bound raw samples as
	// MaxPeakAccelG and MaxPeakGyroDPS bound reports (milli-g, tenths of
	// a degree per second).
	MaxSampleAccelMG  = int32(MaxPeakAccelG * 1000)
	MaxSampleGyroDDPS = int32(MaxPeakGyroDPS * 10)
)

// RejectCode says why the hub refused a device commit. The values are
// stable: admins filter on them and they are stored with the commit.
type RejectCode string

const (
	// RejectUndecodable: the commit is not a tideline.es.v1.Commit of
	// decodable events.
	RejectUndecodable RejectCode = "undecodable"
	// RejectWrongType: an event is not the lane's type.
	RejectWrongType RejectCode = "wrong_type"
	// RejectForeignRider: an event names a rider other than the one the
	// device is registered to.
	RejectForeignRider RejectCode = "foreign_rider"
	// RejectForeignDevice: an event names another device.
	RejectForeignDevice RejectCode = "foreign_device"
	// RejectInvalid: an event fails validation (ValidateReport,
	// ValidateSamples) or the commit is empty or too long.
	RejectInvalid RejectCode = "invalid"
	// RejectUnknownDevice: no device of that id is registered.
	RejectUnknownDevice RejectCode = "unknown_device"
	// RejectRevoked: the commit reached the hub after the device was
	// revoked.
	RejectRevoked RejectCode = "revoked_device"
)

// RejectedError is the error AdmitDeviceCommit returns: a code, and the
// Invalid (or Forbidden) error naming the offending input.
type RejectedError struct {
	Code RejectCode
	Err  error
}

func (e *RejectedError) Error() string { return string(e.Code) + ": " + e.Err.Error() }
func (e *RejectedError) Unwrap() error { return e.Err }

// Rejected returns a RejectedError.
func Rejected(code RejectCode, err error) error { return &RejectedError{Code: code, Err: err} }

// CodeOf returns the RejectCode of err, RejectInvalid when it has none.
func CodeOf(err error) RejectCode {
	var r *RejectedError
	if errors.As(err, &r) {
		return r.Code
	}
	return RejectInvalid
}

// RegisteredDevice is what the hub's device registry says of a device:
// the rider it belongs to, and when (if ever) it was revoked. A zero
// RiderID means the device is not registered.
type RegisteredDevice struct {
	ID        string
	RiderID   string
	RevokedAt time.Time // zero: not revoked
}

// AdmitDeviceCommit decides whether a commit a device sent on lane may
// enter the event store, the same way whoever the device claims to be:
// nothing of the payload's rider or device ids is trusted. receivedAt is
// when the hub received the commit, so the decision
// for a commit never changes when it is decided again.
//
// A commit is admitted whole or not at all. It is refused when the device
// is unknown or was revoked before receivedAt, when it holds no events or
// more than MaxDeviceCommitEvents, when an event has no valid id, is not
// the lane's type (or could not be decoded: nil Data), names a rider
// other than dev.RiderID or a device other than dev.ID (empty is fine),
// or fails ValidateReport (danger, at receivedAt) or ValidateSamples
// (telemetry). The error is a *RejectedError.
//
// Admitted events are bound to the registry: rider_id and device_id set
// from dev, and a DangerDetected's received_at set to receivedAt (a device
// cannot choose it). An event that needs no change (telemetry that
// already names its rider and device) is returned as it is; the others
// are copies. The input is never modified.
func AdmitDeviceCommit(dev RegisteredDevice, lane DeviceLane, events []es.Event, receivedAt time.Time) ([]es.Event, error) {
	if dev.RiderID == "" {
		return nil, Rejected(RejectUnknownDevice, es.Errorf(es.Forbidden, "device %q is not registered", dev.ID))
	}
	if !dev.RevokedAt.IsZero() && !receivedAt.Before(dev.RevokedAt) {
		return nil, Rejected(RejectRevoked, es.Errorf(es.Forbidden, "device %q was revoked at %s", dev.ID, dev.RevokedAt.UTC().Format(time.RFC3339)))
	}
	want := lane.EventType()
	if want == "" {
		return nil, Rejected(RejectWrongType, es.Invalidf("lane", "unknown lane %q", lane))
	}
	if len(events) == 0 || len(events) > MaxDeviceCommitEvents {
		return nil, Rejected(RejectInvalid, es.Invalidf("events", "a device commit holds 1 to %d events, got %d", MaxDeviceCommitEvents, len(events)))
	}
	out := make([]es.Event, len(events))
	for i, e := range events {
		field := func(f string) string { return fmt.Sprintf("events[%d].%s", i, f) }
		if err := es.ValidateToken(field("id"), e.ID); err != nil {
			return nil, Rejected(RejectInvalid, err)
		}
		if e.Type != want || e.Data == nil {
			return nil, Rejected(RejectWrongType, es.Invalidf(field("type"), "lane %s admits only %s, got %q", lane, want, e.Type))
		}
		var err error
		switch d := e.Data.(type) {
		case *safetyv1.DangerDetected:
			if err = bind(field, dev, &d.RiderId, &d.DeviceId); err != nil {
				return nil, err
			}
			d = proto.Clone(d).(*safetyv1.DangerDetected)
			d.RiderId, d.DeviceId, d.ReceivedAt = dev.RiderID, dev.ID, timestamppb.New(receivedAt)
			if err = ValidateReport(d, receivedAt); err != nil {
				return nil, Rejected(RejectInvalid, prefix(field("data"), err))
			}
			e.Data = d
		case *telemetryv1.SamplesRecorded:
			if err = bind(field, dev, &d.RiderId, &d.DeviceId); err != nil {
				return nil, err
			}
			if err = ValidateSamples(d); err != nil {
				return nil, Rejected(RejectInvalid, prefix(field("data"), err))
			}
			if d.RiderId != dev.RiderID || d.DeviceId != dev.ID {
				d = proto.Clone(d).(*telemetryv1.SamplesRecorded)
				d.RiderId, d.DeviceId = dev.RiderID, dev.ID
				e.Data = d
			}
		default:
			return nil, Rejected(RejectWrongType, es.Invalidf(field("type"), "lane %s admits only %s, got %T", lane, want, e.Data))
		}
		out[i] = e
	}
	return out, nil
}

// bind checks that an event's rider and device ids, when present, are
// the registered ones.
func bind(field func(string) string, dev RegisteredDevice, rider, device *string) error {
	if *rider != "" && *rider != dev.RiderID {
		return Rejected(RejectForeignRider, es.Invalidf(field("data.rider_id"), "is %q but device %q is registered to %q", *rider, dev.ID, dev.RiderID))
	}
	if *device != "" && *device != dev.ID {
		return Rejected(RejectForeignDevice, es.Invalidf(field("data.device_id"), "is %q but the commit came from device %q", *device, dev.ID))
	}
	return nil
}

// prefix puts where an Invalid error's field is in front of it.
func prefix(where string, err error) error {
	var e *es.Error
	if errors.As(err, &e) && e.Kind == es.Invalid {
		c := *e
		c.Field = where + "." + e.Field
		return &c
	}
	return err
}

// ValidateSamples checks a telemetry window: 1 to MaxWindowSamples
// samples (offset_ms), every axis either absent or one value per sample
// and within physical bounds (MaxSampleAccelMG, MaxSampleGyroDDPS), and
// first_at valid when present. It returns an Invalid error naming the
// field.
func ValidateSamples(s *telemetryv1.SamplesRecorded) error {
	if s == nil {
		return es.Invalidf("samples", "is required")
	}
	n := len(s.OffsetMs)
	if n == 0 || n > MaxWindowSamples {
		return es.Invalidf("offset_ms", "a window holds 1 to %d samples, got %d", MaxWindowSamples, n)
	}
	if s.FirstAt != nil {
		if err := s.FirstAt.CheckValid(); err != nil {
			return es.Invalidf("first_at", "%v", err)
		}
	}
	for _, ax := range []struct {
		name  string
		v     []int32
		bound int32
	}{
		{"accel_x_mg", s.AccelXMg, MaxSampleAccelMG}, {"accel_y_mg", s.AccelYMg, MaxSampleAccelMG}, {"accel_z_mg", s.AccelZMg, MaxSampleAccelMG},
		{"gyro_x_ddps", s.GyroXDdps, MaxSampleGyroDDPS}, {"gyro_y_ddps", s.GyroYDdps, MaxSampleGyroDDPS}, {"gyro_z_ddps", s.GyroZDdps, MaxSampleGyroDDPS},
	} {
		if len(ax.v) != 0 && len(ax.v) != n {
			return es.Invalidf(ax.name, "has %d values for %d samples", len(ax.v), n)
		}
		for i, v := range ax.v {
			if v > ax.bound || v < -ax.bound {
				return es.Invalidf(ax.name, "sample %d is %d, beyond ±%d", i, v, ax.bound)
			}
		}
	}
	return nil
}
