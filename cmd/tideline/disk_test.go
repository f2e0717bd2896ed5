package main

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/tideline/tideline/adapters/natsserver/natstest"
	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/internal/poll"
	healthv1 "github.com/tideline/tideline/schemas/gen/grpc/health/v1"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/steps/v1/stepsv1connect"
)

// TestMainDiskFull runs the server on a small disk and fills it: writes
// are refused at once with ResourceExhausted, resume by themselves once
// space is freed, and the server shuts down quickly on a full disk.
func TestMainDiskFull(t *testing.T) {
	dir := natstest.SmallDisk(t, 64<<20)
	m, stop := startMain(t, dir)
	c := stepsv1connect.NewStepsServiceClient(http.DefaultClient, "http://"+m.Addr())
	tok := mainToken(t, m, "ingest", auth.Service)
	date := todayUTC()
	record := func(n int32) (*stepsv1.RecordStepsResponse, time.Duration, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		start := time.Now()
		res, err := c.RecordSteps(ctx, authed(&stepsv1.RecordStepsRequest{UserId: "alice", Date: date, Steps: n}, tok))
		if err != nil {
			return nil, time.Since(start), err
		}
		return res.Msg, time.Since(start), nil
	}
	if _, _, err := record(1); err != nil {
		t.Fatalf("record: %v", err)
	}

	filler := filepath.Join(dir, "filler")
	natstest.FillDisk(t, filler)
	// An append already under way when the disk fills may wait out the
	// store's write timeout (the adapter's tests cover it); from the guard's
	// next check on, appends are refused at once.
	poll.Until(t, 10*time.Second, "the store reports the full disk", func() bool {
		return errors.Is(m.Store.Healthy(context.Background()), es.ErrStoreFull)
	})
	_, took, err := record(100)
	var ce *connect.Error
	if !errors.As(err, &ce) || ce.Code() != connect.CodeResourceExhausted || !strings.Contains(ce.Message(), "out of disk space") || took > 200*time.Millisecond {
		t.Fatalf("record on a full disk: %v after %v, want ResourceExhausted saying the store is out of disk space, at once", err, took)
	}
	t.Logf("on a full disk RecordSteps fails in %v: %v", took.Round(time.Millisecond), err)
	waitHealth(t, "http://"+m.Addr(), healthv1.HealthCheckResponse_NOT_SERVING)

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	var res *stepsv1.RecordStepsResponse
	freed := time.Now()
	poll.Until(t, 10*time.Second, "RecordSteps succeeds after space was freed", func() bool {
		res, _, err = record(200)
		return err == nil
	})
	t.Logf("RecordSteps succeeds again %v after space was freed", time.Since(freed).Round(time.Millisecond))
	waitHealth(t, "http://"+m.Addr(), healthv1.HealthCheckResponse_SERVING)
	got, err := c.GetSteps(context.Background(), authed(&stepsv1.GetStepsRequest{UserIds: []string{"alice"}, FromDate: date, MinPosition: res.Position}, tok))
	if err != nil || len(got.Msg.Steps) != 1 || got.Msg.Steps[0].Steps != 200 {
		t.Fatalf("GetSteps after recovery: %v %v, want alice at 200", got, err)
	}

	natstest.FillDisk(t, filler)
	if _, _, err := record(300); err == nil {
		// The guard has yet to notice; what the disk still held took it.
		t.Log("a record fit on the just-filled disk")
	}
	start := time.Now()
	stop()
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("shutdown on a full disk took %v", took)
	} else {
		t.Logf("shutdown on a full disk took %v", took.Round(time.Millisecond))
	}
}
