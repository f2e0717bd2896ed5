// Package city makes up the histories of a city that benchmarks and
// tests load: a steady stream of orders and danger reports, and walkers'
// step counts, as events with the streams they belong to.
package city

import (
	"context"
	"fmt"
	"hash/fnv"
	"iter"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/delivery"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/safety"
	"github.com/tideline/tideline/domain/steps"
	deliveryv1 "github.com/tideline/tideline/schemas/gen/tideline/delivery/v1"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
)

// Delivery yields n delivery and safety events of a city at a
// steady pace, in timestamp order, and returns through end the time of
// the last one. One order is placed a minute in one of 25 zones; it is
// accepted 2 minutes later, picked up after 10 and delivered after 30,
// then rated (1 in 20 is cancelled at 5 minutes instead). Every other
// minute a rider reports a danger event near Seoul. Riders join as the
// city grows: one more every 50 orders, from 50. So a minute is about 5.4
// events, 10k events are 31 hours with 87 riders, and 1M events 4 months
// with 3,750. Orders are picked up near Seoul's city hall, within about
// 10 km.
func Delivery(n int, start time.Time, end *time.Time) iter.Seq[proto.Message] {
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
			pickup := &deliveryv1.LatLng{Lat: 37.48 + float64(k*53%180)/1000, Lng: 126.9 + float64(k*71%200)/1000}
			if !emit(&deliveryv1.OrderPlaced{OrderId: id(k), Zone: fmt.Sprintf("z%02d", k*31%25), Amount: int64(8000 + k*37%60*500), PlacedAt: timestamppb.New(at),
				Pickup: pickup, Dropoff: &deliveryv1.LatLng{Lat: pickup.Lat + 0.01, Lng: pickup.Lng - 0.01}}) {
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

// Waiting yields n orders placed at at and not accepted yet, the orders a
// city has waiting for a rider at one moment (Delivery's history keeps
// only about two waiting: each is accepted 2 minutes after it is placed).
// Their pickups are spread evenly over the area of Delivery's (latitude
// 37.48–37.66, longitude 126.90–127.10, about 20 × 18 km), by an additive
// recurrence that covers it without clumps, so a search of 3 km around a
// point near its middle finds about 8 % of them. Ids are "w" and six
// digits, apart from Delivery's.
func Waiting(n int, at time.Time) iter.Seq[Commit] {
	return func(yield func(Commit) bool) {
		// The R2 sequence: k·(1/φ₂, 1/φ₂²) mod 1, φ₂ the plastic number.
		const a1, a2 = 0.7548776662466927, 0.5698402909980532
		for k := range n {
			fx, fy := math.Mod(0.5+float64(k)*a1, 1), math.Mod(0.5+float64(k)*a2, 1)
			pickup := &deliveryv1.LatLng{Lat: 37.48 + 0.18*fx, Lng: 126.9 + 0.2*fy}
			id := fmt.Sprintf("w%06d", k)
			ev := &deliveryv1.OrderPlaced{OrderId: id, StoreId: fmt.Sprintf("s%04d", k%500), Pickup: pickup,
				Dropoff: &deliveryv1.LatLng{Lat: pickup.Lat + 0.01, Lng: pickup.Lng - 0.01}, Amount: int64(8000 + k*37%60*500),
				Zone: delivery.Zone(pickup.Lat, pickup.Lng), PlacedAt: timestamppb.New(at)}
			if !yield(Commit{delivery.Stream(id), ev}) {
				return
			}
		}
	}
}

// Commit is one commit of a history: an event and its stream.
type Commit struct {
	Stream es.StreamID
	Event  proto.Message
}

// Mix shapes a Mixed history.
type Mix struct {
	// Walkers record step counts, in turn; Days spreads their counts over
	// that many dates, the last of them today (UTC); at least 1.
	Walkers, Days int
	// DeliveryStart is when the city's first order is placed.
	DeliveryStart time.Time
}

// Mixed yields n commits, alternately a walker's step count and an event
// of a city (Delivery, in n/2 events from mix.DeliveryStart). The step
// counts are spread evenly over the dates from Days-1 days ago to today,
// in date order, the walkers taking turns: with n/2 = Walkers × Days each
// walker counts once a date (otherwise some count twice on a date, the
// higher count standing, or miss one). Counts are spread below 25,000,
// as a day's are, within what the API accepts (domain/steps MaxSteps). Each order's events are minutes apart, so writers
// taking the commits in turn append them in order in practice.
func Mixed(n int, mix Mix, now time.Time) iter.Seq[Commit] {
	return func(yield func(Commit) bool) {
		days := max(mix.Days, 1)
		stepCommits := n - n/2
		today := time.Date(now.UTC().Year(), now.UTC().Month(), now.UTC().Day(), 0, 0, 0, 0, time.UTC)
		s := 0
		step := func() bool {
			if s == stepCommits {
				return true
			}
			user := fmt.Sprintf("walker-%d", s%max(mix.Walkers, 1))
			date := today.AddDate(0, 0, s*days/stepCommits-(days-1)).Format(time.DateOnly)
			s++
			return yield(Commit{steps.Stream(user), &stepsv1.StepsRecorded{UserId: user, Date: date, Steps: int32(s * 7919 % 25000)}})
		}
		var end time.Time
		for ev := range Delivery(n/2, mix.DeliveryStart, &end) {
			if !step() {
				return
			}
			var c Commit
			switch e := ev.(type) {
			case *safetyv1.DangerDetected:
				c = Commit{safety.ReportStream(e.GetRiderId()), ev}
			case interface{ GetOrderId() string }:
				c = Commit{delivery.Stream(e.GetOrderId()), ev}
			}
			if !yield(c) {
				return
			}
		}
		for s < stepCommits {
			if !step() {
				return
			}
		}
	}
}

// Append appends commits to store, writers at a time, each with no
// expected version, and returns the first error (the rest are then not
// appended). A stream's commits all go through one writer, in the order
// given, so each aggregate's events are stored in order (an order's
// acceptance after its placing). progress, if not nil, is called with the
// count appended after every million.
func Append(ctx context.Context, store es.Store, commits iter.Seq[Commit], writers int, progress func(done int64)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	writers = max(writers, 1)
	chs := make([]chan Commit, writers)
	for i := range chs {
		chs[i] = make(chan Commit, 256)
	}
	go func() {
		defer func() {
			for _, ch := range chs {
				close(ch)
			}
		}()
		for c := range commits {
			h := fnv.New32a()
			h.Write([]byte(c.Stream.String()))
			select {
			case chs[h.Sum32()%uint32(writers)] <- c:
			case <-ctx.Done():
				return
			}
		}
	}()
	var wg sync.WaitGroup
	var done atomic.Int64
	var first error
	var once sync.Once
	for _, ch := range chs {
		wg.Go(func() {
			for c := range ch {
				if _, err := store.Append(ctx, c.Stream, []proto.Message{c.Event}, es.AppendOptions{ExpectedVersion: es.AnyVersion}); err != nil {
					once.Do(func() { first = err; cancel() })
					for range ch { // let the producer see ctx end
					}
					return
				}
				if k := done.Add(1); progress != nil && k%1_000_000 == 0 {
					progress(k)
				}
			}
		})
	}
	wg.Wait()
	return first
}
