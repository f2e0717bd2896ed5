package steps_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/steps"
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
