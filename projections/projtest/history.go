package projtest

import (
	"fmt"
	"iter"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	deliveryv1 "github.com/tideline/tideline/schemas/gen/tideline/delivery/v1"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
)

// DeliveryHistory yields n delivery and safety events of a city at a
// steady pace, in timestamp order, and returns through end the time of
// the last one. One order is placed a minute in one of 25 zones; it is
// accepted 2 minutes later, picked up after 10 and delivered after 30,
// then rated (1 in 20 is cancelled at 5 minutes instead). Every other
// minute a rider reports a danger event near Seoul. Riders join as the
// city grows: one more every 50 orders, from 50. So a minute is about 5.4
// events, 10k events are 31 hours with 87 riders, and 1M events 4 months
// with 3,750.
func DeliveryHistory(n int, start time.Time, end *time.Time) iter.Seq[proto.Message] {
	return func(yield func(proto.Message) bool) {
		sent := 0
		emit := func(m proto.Message) bool {
			if sent == n {
				return false
			}
			sent++
			return yield(m)
		}
		id := func(k int) string { return fmt.Sprintf("o%07d", k) }
		rider := func(k int) string { return fmt.Sprintf("r%05d", (k*7919)%(50+k/50)) }
		cancelled := func(k int) bool { return k%20 == 7 }
		for k := 0; ; k++ {
			at := start.Add(time.Duration(k) * time.Minute)
			*end = at
			if !emit(&deliveryv1.OrderPlaced{OrderId: id(k), Zone: fmt.Sprintf("z%02d", k*31%25), Amount: int64(8000 + k*37%60*500), PlacedAt: timestamppb.New(at)}) {
				return
			}
			if j := k - 2; j >= 0 && !emit(&deliveryv1.OrderAccepted{OrderId: id(j), RiderId: rider(j), AcceptedAt: timestamppb.New(at)}) {
				return
			}
			if j := k - 5; j >= 0 && cancelled(j) && !emit(&deliveryv1.OrderCancelled{OrderId: id(j), Reason: "customer", CancelledBy: "admin:ops", CancelledAt: timestamppb.New(at)}) {
				return
			}
			if j := k - 10; j >= 0 && !cancelled(j) && !emit(&deliveryv1.OrderPickedUp{OrderId: id(j), RiderId: rider(j), PickedUpAt: timestamppb.New(at)}) {
				return
			}
			if j := k - 30; j >= 0 && !cancelled(j) && !emit(&deliveryv1.OrderDelivered{OrderId: id(j), RiderId: rider(j), DeliveredAt: timestamppb.New(at)}) {
				return
			}
			if j := k - 31; j >= 0 && !cancelled(j) && !emit(&deliveryv1.OrderRated{OrderId: id(j), RiderId: rider(j), Stars: int32(1 + j*13%5)}) {
				return
			}
			if k%2 == 0 && !emit(&safetyv1.DangerDetected{EventId: fmt.Sprintf("d%07d", k), RiderId: rider(k * 3), DeviceId: "bike",
				Kind: safetyv1.DangerKind_DANGER_KIND_CRASH, Severity: safetyv1.Severity_SEVERITY_HIGH, DetectedAt: timestamppb.New(at),
				Location: &safetyv1.Location{Lat: 37.45 + float64(k*17%200)/1000, Lng: 126.9 + float64(k*29%200)/1000}}) {
				return
			}
		}
	}
}
