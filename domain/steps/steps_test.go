package steps_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/steps"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
)

func TestDecide(t *testing.T) {
	now := time.Date(2026, 11, 22, 23, 30, 0, 0, time.UTC)
	alice := auth.Principal{Subject: "alice", Role: auth.Walker}
	cases := []struct {
		name  string
		who   auth.Principal
		cmd   steps.Record
		kind  es.Kind // 0 (Internal) with ok=true means accepted
		field string
		ok    bool
	}{
		{"walker_records_own_steps", alice, steps.Record{UserID: "alice", Date: "2026-11-22", Steps: 8000}, 0, "", true},
		{"zero_steps_is_a_report", alice, steps.Record{UserID: "alice", Date: "2026-11-22", Steps: 0}, 0, "", true},
		{"max_steps_is_accepted", alice, steps.Record{UserID: "alice", Date: "2026-11-22", Steps: steps.MaxSteps}, 0, "", true},
		{"tomorrow_is_accepted_for_time_zones", alice, steps.Record{UserID: "alice", Date: "2026-11-23", Steps: 1}, 0, "", true},
		{"admin_records_anyone", auth.Principal{Subject: "ops", Role: auth.Admin}, steps.Record{UserID: "bob", Date: "2026-11-22", Steps: 1}, 0, "", true},
		{"service_records_anyone", auth.Principal{Subject: "sync", Role: auth.Service}, steps.Record{UserID: "bob", Date: "2026-11-22", Steps: 1}, 0, "", true},
		{"walker_cannot_record_others", alice, steps.Record{UserID: "bob", Date: "2026-11-22", Steps: 1}, es.Forbidden, "", false},
		{"rider_cannot_record", auth.Principal{Subject: "alice", Role: auth.Rider}, steps.Record{UserID: "alice", Date: "2026-11-22", Steps: 1}, es.Forbidden, "", false},
		{"two_days_ahead_is_invalid", alice, steps.Record{UserID: "alice", Date: "2026-11-24", Steps: 1}, es.Invalid, "date", false},
		{"year_one_is_invalid", alice, steps.Record{UserID: "alice", Date: "0001-01-01", Steps: 1}, es.Invalid, "date", false},
		{"before_2000_is_invalid", alice, steps.Record{UserID: "alice", Date: "1999-12-31", Steps: 1}, es.Invalid, "date", false},
		{"first_day_of_2000_is_accepted", alice, steps.Record{UserID: "alice", Date: "2000-01-01", Steps: 1}, 0, "", true},
		{"date_must_be_iso", alice, steps.Record{UserID: "alice", Date: "22/11/2026", Steps: 1}, es.Invalid, "date", false},
		{"negative_steps", alice, steps.Record{UserID: "alice", Date: "2026-11-22", Steps: -1}, es.Invalid, "steps", false},
		{"too_many_steps", alice, steps.Record{UserID: "alice", Date: "2026-11-22", Steps: steps.MaxSteps + 1}, es.Invalid, "steps", false},
		{"user_id_must_be_a_token", alice, steps.Record{UserID: "al ice", Date: "2026-11-22", Steps: 1}, es.Invalid, "user_id", false},
		{"user_id_at_most_64_bytes", alice, steps.Record{UserID: strings.Repeat("a", 65), Date: "2026-11-22", Steps: 1}, es.Invalid, "user_id", false},
		{"idempotency_key_printable", alice, steps.Record{UserID: "alice", Date: "2026-11-22", Steps: 1, IdempotencyKey: "a\nb"}, es.Invalid, "idempotency_key", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := steps.Decide(tc.who, tc.cmd, now)
			if tc.ok {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				if ev.UserId != tc.cmd.UserID || ev.Date != tc.cmd.Date || ev.Steps != tc.cmd.Steps {
					t.Fatalf("event = %v", ev)
				}
				return
			}
			var e *es.Error
			if !errors.As(err, &e) || e.Kind != tc.kind || e.Field != tc.field {
				t.Fatalf("err = %#v, want kind %v field %q", err, tc.kind, tc.field)
			}
		})
	}
}

func TestDecideAll(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	alice := auth.Principal{Subject: "alice", Role: auth.Walker}
	rec := func(date string, n int32) steps.Record { return steps.Record{UserID: "alice", Date: date, Steps: n} }

	one, err := steps.DecideAll(alice, []steps.Record{rec("2026-11-22", 5)}, now)
	if want := (&stepsv1.StepsRecorded{UserId: "alice", Date: "2026-11-22", Steps: 5}); err != nil || !proto.Equal(one, want) {
		t.Fatalf("one count: %v, %v; want %v", one, err, want)
	}
	// Runs of one date keep the order: a date that comes back opens a
	// new run.
	many, err := steps.DecideAll(alice, []steps.Record{
		rec("2026-11-21", 900), rec("2026-11-21", 950), rec("2026-11-22", 3), rec("2026-11-21", 990), rec("2026-11-22", 2),
	}, now)
	want := &stepsv1.StepsBatchRecorded{UserId: "alice", Days: []*stepsv1.DayCounts{
		{Date: "2026-11-21", Steps: []int32{900, 950}},
		{Date: "2026-11-22", Steps: []int32{3}},
		{Date: "2026-11-21", Steps: []int32{990}},
		{Date: "2026-11-22", Steps: []int32{2}},
	}}
	if err != nil || !proto.Equal(many, want) {
		t.Fatalf("many counts: %v, %v; want %v", many, err, want)
	}

	for _, tc := range []struct {
		name  string
		who   auth.Principal
		cmds  []steps.Record
		kind  es.Kind
		field string
	}{
		{"none", alice, nil, es.Invalid, "updates"},
		{"second_user", auth.Principal{Subject: "ops", Role: auth.Admin}, []steps.Record{rec("2026-11-22", 1), {UserID: "bob", Date: "2026-11-22", Steps: 2}}, es.Invalid, "update[1].user_id"},
		{"bad_count_anywhere", alice, []steps.Record{rec("2026-11-22", 1), rec("2026-11-22", -4)}, es.Invalid, "steps"},
		{"bad_date_anywhere", alice, []steps.Record{rec("2026-11-22", 1), rec("2026-13-01", 4)}, es.Invalid, "date"},
		{"not_yours", alice, []steps.Record{{UserID: "bob", Date: "2026-11-22", Steps: 1}, {UserID: "bob", Date: "2026-11-22", Steps: 2}}, es.Forbidden, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := steps.DecideAll(tc.who, tc.cmds, now)
			var e *es.Error
			if !errors.As(err, &e) || e.Kind != tc.kind || e.Field != tc.field || ev != nil {
				t.Fatalf("DecideAll = %v, %#v; want kind %v field %q", ev, err, tc.kind, tc.field)
			}
		})
	}
}

func TestHighest(t *testing.T) {
	type got struct {
		user, date string
		steps      int32
	}
	for _, tc := range []struct {
		name string
		ev   proto.Message
		want []got
	}{
		{"one_count", &stepsv1.StepsRecorded{UserId: "ann", Date: "2026-11-22", Steps: 7}, []got{{"ann", "2026-11-22", 7}}},
		{"each_run_its_highest", &stepsv1.StepsBatchRecorded{UserId: "ann", Days: []*stepsv1.DayCounts{
			{Date: "2026-11-21", Steps: []int32{900, 1200, 950}},
			{Date: "2026-11-22", Steps: []int32{3}},
			{Date: "2026-11-21", Steps: []int32{990}},
			{Date: "2026-11-22"}, // no count: nothing to say
		}}, []got{{"ann", "2026-11-21", 1200}, {"ann", "2026-11-22", 3}, {"ann", "2026-11-21", 990}}},
		{"other_events_say_nothing", &stepsv1.DayCounts{Date: "2026-11-22", Steps: []int32{5}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out []got
			steps.Highest(tc.ev, func(user, date string, n int32) { out = append(out, got{user, date, n}) })
			if !slices.Equal(out, tc.want) {
				t.Fatalf("Highest = %v, want %v", out, tc.want)
			}
		})
	}
}

// memStore is an es.Store of commits appended in order, for History.
type memStore struct{ commits []es.Commit }

func (s *memStore) Append(_ context.Context, stream es.StreamID, events []proto.Message, _ es.AppendOptions) (es.AppendResult, error) {
	c := es.Commit{Seq: uint64(len(s.commits) + 1), Stream: stream}
	for _, e := range events {
		c.Events = append(c.Events, es.Event{Data: e, Stream: stream})
	}
	s.commits = append(s.commits, c)
	return es.AppendResult{Position: es.Position{Seq: c.Seq}}, nil
}

func (s *memStore) Load(_ context.Context, stream es.StreamID, after uint64) ([]es.Commit, uint64, error) {
	var out []es.Commit
	for _, c := range s.commits {
		if c.Stream == stream && c.Seq > after {
			out = append(out, c)
		}
	}
	return out, uint64(len(s.commits)), nil
}

func TestHistory(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	svc := &steps.Service{Store: &memStore{}, Now: func() time.Time { return now }}
	ops := auth.Principal{Subject: "ops", Role: auth.Admin}
	for _, r := range []steps.Record{
		{UserID: "ann", Date: "2026-09-01", Steps: 500},
		{UserID: "ann", Date: "2026-09-01", Steps: 9000},
		{UserID: "ann", Date: "2026-09-01", Steps: 700}, // a late, lower resend
		{UserID: "ann", Date: "2026-09-03", Steps: 30},
		{UserID: "ann", Date: "2026-11-22", Steps: 1},
		{UserID: "bob", Date: "2026-09-02", Steps: 77},
	} {
		if _, err := svc.Record(context.Background(), ops, r); err != nil {
			t.Fatal(err)
		}
	}
	// A client stream's batch counts as its counts do, each date's highest.
	if _, err := svc.RecordAll(context.Background(), ops, []steps.Record{
		{UserID: "ann", Date: "2026-09-03", Steps: 10},
		{UserID: "ann", Date: "2026-09-03", Steps: 45},
		{UserID: "ann", Date: "2026-09-04", Steps: 60},
		{UserID: "ann", Date: "2026-09-03", Steps: 40},
	}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, user, from, to string
		want                 []steps.Count
	}{
		{"highest_count_wins_in_date_order", "ann", "2026-09-01", "2026-09-30", []steps.Count{{"2026-09-01", 9000}, {"2026-09-03", 45}, {"2026-09-04", 60}}},
		{"bounds_are_inclusive", "ann", "2026-09-04", "2026-11-22", []steps.Count{{"2026-09-04", 60}, {"2026-11-22", 1}}},
		{"other_users_are_apart", "bob", "2026-01-01", "2026-12-31", []steps.Count{{"2026-09-02", 77}}},
		{"no_records", "cat", "2026-01-01", "2026-12-31", []steps.Count{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := svc.History(context.Background(), tt.user, tt.from, tt.to)
			if err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("History = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}
