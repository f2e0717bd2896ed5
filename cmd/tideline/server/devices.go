package server

import (
	"context"
	"errors"
	"time"

	"github.com/tideline/tideline/adapters/devicegate"
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
	return nil
}
