package devicegate

import (
	"testing"
	"time"

	"github.com/oklog/ulid/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/safety"
	esv1 "github.com/tideline/tideline/schemas/gen/tideline/es/v1"
	telemetryv1 "github.com/tideline/tideline/schemas/gen/tideline/telemetry/v1"
)

// BenchmarkAdmitTelemetry: the gate's work on one device commit of 59
// telemetry windows of 100 samples (~63 KiB, what the edge packs):
// decode, admit, encode.
//
//	go test ./adapters/devicegate -run '^$' -bench AdmitTelemetry -cpu 1
func BenchmarkAdmitTelemetry(b *testing.B) {
	c := &esv1.Commit{}
	for range 59 {
		t := &telemetryv1.SamplesRecorded{DeviceId: "d", RiderId: "r", FirstAt: timestamppb.Now()}
		for s := range 100 {
			t.OffsetMs = append(t.OffsetMs, uint32(s*10))
			t.AccelXMg = append(t.AccelXMg, int32(s))
			t.AccelYMg = append(t.AccelYMg, -12)
			t.AccelZMg = append(t.AccelZMg, 1000)
			t.GyroXDdps = append(t.GyroXDdps, 3)
			t.GyroYDdps = append(t.GyroYDdps, 0)
			t.GyroZDdps = append(t.GyroZDdps, -1)
		}
		d, _ := proto.Marshal(t)
		c.Events = append(c.Events, &esv1.Event{Id: ulid.Make().String(), Type: safety.LaneTelemetry.EventType(), OccurredAt: timestamppb.Now(), Data: d})
	}
	data, _ := proto.Marshal(c)
	b.SetBytes(int64(len(data)))
	now := time.Now()
	dev := safety.RegisteredDevice{ID: "d", RiderID: "r"}
	var buf []byte
	var types []string
	for b.Loop() {
		d, err := decode(safety.LaneTelemetry, data, now)
		if err != nil {
			b.Fatal(err)
		}
		admitted, err := safety.AdmitDeviceCommit(dev, safety.LaneTelemetry, d.events, now)
		if err != nil {
			b.Fatal(err)
		}
		if buf, types, err = encode(buf[:0], types[:0], d, admitted); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(c.Events))/b.Elapsed().Seconds(), "events/s")
}
