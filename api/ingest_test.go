package api_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/steps"
	steppb "github.com/tideline/tideline/schemas/gen/step"
	"github.com/tideline/tideline/schemas/gen/step/stepconnect"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/steps/v1/stepsv1connect"
)

// TestStreamUserStepsKeepsEveryUpdateInOrder streams many updates for a
// few users, interleaved, and reads the store: every update is kept,
// each user's in the order sent (the ingest batches a user's updates into
// commits of one event each, one commit per user at a time), and the
// read model has each user's highest count.
func TestStreamUserStepsKeepsEveryUpdateInOrder(t *testing.T) {
	t.Parallel()
	f := start(t)
	ctx := context.Background()
	c := stepconnect.NewStepServiceClient(h2c, f.URL, connect.WithGRPC())
	tok := f.Token(t, "importer", auth.Service)
	users := []string{"ina", "jon", "kai"}
	const per = 3000
	stream := c.StreamUserSteps(ctx)
	stream.RequestHeader().Set("Authorization", "Bearer "+tok)
	for k := range per * len(users) {
		// 0..999 three times over: a count out of order shows.
		msg := &steppb.StepInput{UserId: users[k%len(users)], Steps: int32(k/len(users)) % 1000, Date: today()}
		if err := stream.Send(msg); err != nil {
			t.Fatal(err)
		}
	}
	res, err := stream.CloseAndReceive()
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("ok: %d recorded", per*len(users)); res.Msg.Message != want {
		t.Fatalf("message = %q, want %q", res.Msg.Message, want)
	}
	for _, u := range users {
		commits, _, err := f.Store.Load(ctx, steps.Stream(u), 0)
		if err != nil {
			t.Fatal(err)
		}
		var got []int32
		batches := 0
		for _, c := range commits {
			if len(c.Events) != 1 {
				t.Fatalf("%s: commit %d has %d events, want 1", u, c.Seq, len(c.Events))
			}
			switch e := c.Events[0].Data.(type) {
			case *stepsv1.StepsRecorded:
				got = append(got, e.Steps)
			case *stepsv1.StepsBatchRecorded:
				batches++
				for _, d := range e.Days {
					if d.Date != today() {
						t.Fatalf("%s: a batch holds date %s, want only %s", u, d.Date, today())
					}
					got = append(got, d.Steps...)
				}
			default:
				t.Fatalf("%s: event %T", u, e)
			}
		}
		if len(got) != per {
			t.Fatalf("%s: %d counts in %d commits, want %d", u, len(got), len(commits), per)
		}
		for i, n := range got {
			if n != int32(i%1000) {
				t.Fatalf("%s: event %d has %d steps, want %d (out of order)", u, i, n, i%1000)
			}
		}
		t.Logf("%s: %d updates in %d commits, %d of them batches", u, per, len(commits), batches)
	}
	q := stepsv1connect.NewStepsServiceClient(h2c, f.URL)
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := q.GetSteps(ctx, withToken(&stepsv1.GetStepsRequest{UserIds: users, FromDate: today()}, tok))
		if err != nil {
			t.Fatal(err)
		}
		ok := len(r.Msg.Steps) == len(users)
		for _, d := range r.Msg.Steps {
			ok = ok && d.Steps == 999
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("read model after 10 s: %v, want 999 each", r.Msg.Steps)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// BenchmarkStreamIngestStorage streams 64,000 updates of 64 users over
// one StreamUserSteps stream per iteration, as fast as the client sends,
// and reports what the events stream grew by per update (B/update) and
// how many updates a commit held.
func BenchmarkStreamIngestStorage(b *testing.B) {
	f := start(b)
	ctx := context.Background()
	c := stepconnect.NewStepServiceClient(h2c, f.URL)
	tok := f.Token(b, "importer", auth.Service)
	str, err := f.Store.JetStream().Stream(ctx, f.Store.StreamName())
	if err != nil {
		b.Fatal(err)
	}
	state := func() (msgs, bytes uint64) {
		info, err := str.Info(ctx)
		if err != nil {
			b.Fatal(err)
		}
		return info.State.Msgs, info.State.Bytes
	}
	const n, users = 64000, 64
	msgs0, bytes0 := state()
	b.ResetTimer()
	for i := range b.N {
		s := c.StreamUserSteps(ctx)
		s.RequestHeader().Set("Authorization", "Bearer "+tok)
		for k := range n {
			if err := s.Send(&steppb.StepInput{UserId: fmt.Sprintf("w%d-%d", i, k%users), Steps: int32(k / users), Date: today()}); err != nil {
				break // CloseAndReceive says why
			}
		}
		if _, err := s.CloseAndReceive(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	msgs, bytes := state()
	updates := float64(b.N * n)
	b.ReportMetric(float64(bytes-bytes0)/updates, "B/update")
	b.ReportMetric(updates/float64(msgs-msgs0), "updates/commit")
	b.ReportMetric(updates/b.Elapsed().Seconds(), "updates/s")
}
