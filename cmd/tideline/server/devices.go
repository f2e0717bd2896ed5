package server

import (
	"context"
	"errors"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/adapters/devicegate"
	"github.com/tideline/tideline/adapters/natsserver"
	"github.com/tideline/tideline/adapters/prometheus"
	adminv1 "github.com/tideline/tideline/schemas/gen/tideline/admin/v1"
)

// devicesModule wires the device gate (with --leaf-listen): the only way
// edge devices' commits reach the event store, each admitted by the
// safety domain or quarantined with its reason, which admins list.
func devicesModule(ctx context.Context, h *Host) error {
	if h.Devices == nil {
		return nil
	}
	nc, err := h.Connect("device-gate")
	if err != nil {
		return err
	}
	var gate *devicegate.Gate
	err = h.Provision(ctx, func(ctx context.Context) (err error) {
		gate, err = devicegate.Open(ctx, devicegate.Config{Conn: nc, Registry: h.Devices.Registered,
			EventsStream: h.Store.StreamName(), Replicas: h.Store.Replicas(), Rate: h.Config.DeviceRate, Burst: h.Config.DeviceBurst, Logger: h.Logger})
		return err
	})
	if err != nil {
		return err
	}
	h.Go(func(ctx context.Context) { // a gate that could not start (store restarting) tries again
		for backoff := time.Second; ; backoff = min(2*backoff, 30*time.Second) {
			err := gate.Run(ctx)
			if err == nil || ctx.Err() != nil {
				return
			}
			h.Logger.Error("device gate stopped; restarting", "err", err, "in", backoff)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return
			}
		}
	})
	h.Check(func(context.Context) error {
		if !gate.Serving() {
			return errors.New("device gate not serving")
		}
		return nil
	})
	h.API.DeviceRejections = gate
	h.API.Devices = deviceDirectory{h.Devices}
	if h.Metrics != nil {
		h.Metrics.Devices(h.Devices.Connected, func() []prometheus.DeviceLane {
			seen := gate.Seen()
			out := make([]prometheus.DeviceLane, len(seen))
			for i, l := range seen {
				out[i] = prometheus.DeviceLane{Device: l.Device, Lane: string(l.Lane), LastCommit: l.LastCommit, Backlog: l.Backlog}
			}
			return out
		})
	}
	return nil
}

// deviceDirectory is the registry as the admin API lists it.
type deviceDirectory struct{ d *natsserver.Devices }

func (dd deviceDirectory) Devices() ([]*adminv1.Device, error) {
	devs, err := dd.d.List()
	if err != nil {
		return nil, err
	}
	out := make([]*adminv1.Device, len(devs))
	for i, d := range devs {
		pb := &adminv1.Device{DeviceId: d.ID, RiderId: d.RiderID, CreatedAt: timestamppb.New(d.CreatedAt), Revoked: d.Revoked, Connected: d.Connected}
		if d.RevokedAt != nil {
			pb.RevokedAt = timestamppb.New(*d.RevokedAt)
		}
		out[i] = pb
	}
	return out, nil
}
