package safety_test

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/safety"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
)

func TestUpcastAlertRaised(t *testing.T) {
	at := timestamppb.New(reportNow)
	v1 := func(reason string) *safetyv1.AlertRaised {
		return &safetyv1.AlertRaised{AlertId: "alert-1", RiderId: "rider-1", Reason: reason,
			EventIds: []string{"e1", "e2"}, Severity: safetyv1.Severity_SEVERITY_MEDIUM, RaisedAt: at}
	}
	cases := []struct {
		name   string
		reason string
		rule   safetyv1.AlertRule // UNSPECIFIED: an error
	}{
		{"severe_event", "severity HIGH crash", safetyv1.AlertRule_ALERT_RULE_SEVERE_EVENT},
		{"severe_event_of_unknown_kind", "severity CRITICAL danger", safetyv1.AlertRule_ALERT_RULE_SEVERE_EVENT},
		{"repeated_events", "3 danger events within 10m0s", safetyv1.AlertRule_ALERT_RULE_REPEATED_EVENTS},
		{"repeated_events_other_rules", "12 danger events within 1h0m0s", safetyv1.AlertRule_ALERT_RULE_REPEATED_EVENTS},
		{"no_reason", "", 0},
		{"reason_of_no_rule", "the rider looked tired", 0},
		{"count_not_a_number", "many danger events within 10m0s", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			old := v1(tc.reason)
			before := proto.Clone(old)
			got, err := safety.UpcastAlertRaised(old)
			if !proto.Equal(old, before) {
				t.Fatal("the upcaster modified the stored event")
			}
			if tc.rule == 0 {
				if err == nil {
					t.Fatalf("upcast %q = %v, want an error", tc.reason, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := &safetyv1.AlertRaisedV2{AlertId: "alert-1", RiderId: "rider-1", Reason: tc.reason,
				EventIds: []string{"e1", "e2"}, Severity: safetyv1.Severity_SEVERITY_MEDIUM, RaisedAt: at, Rule: tc.rule}
			if !proto.Equal(got, want) {
				t.Fatalf("upcast = %v, want %v", got, want)
			}
		})
	}
	if _, err := safety.UpcastAlertRaised(&safetyv1.AlertAcknowledged{}); err == nil {
		t.Fatal("upcast of another type succeeded")
	}
}
