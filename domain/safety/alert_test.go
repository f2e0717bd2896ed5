package safety_test

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/safety"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
)

func raisedAlert(id string) *safetyv1.AlertRaisedV2 {
	return &safetyv1.AlertRaisedV2{AlertId: id, RiderId: "rider-1", Reason: "severity HIGH crash",
		EventIds: []string{"e1"}, Severity: safetyv1.Severity_SEVERITY_HIGH, Rule: safetyv1.AlertRule_ALERT_RULE_SEVERE_EVENT}
}

func withRule(a *safetyv1.AlertRaisedV2, r safetyv1.AlertRule) *safetyv1.AlertRaisedV2 {
	a.Rule = r
	return a
}

// given folds events into a fresh alert state.
func givenAlert(events ...proto.Message) safety.Alert {
	s := safety.AlertDecider.Initial()
	for _, e := range events {
		s = safety.AlertDecider.Evolve(s, e)
	}
	return s
}

func TestAlertDecide(t *testing.T) {
	id := safety.AlertID("rider-1", "e1")
	ack := &safetyv1.AlertAcknowledged{AlertId: id, By: "admin:ops"}
	cases := []struct {
		name    string
		history []proto.Message
		cmd     safety.AlertCommand
		want    int // events decided
		err     error
		kind    es.Kind
	}{
		{"raise_new_alert", nil, safety.RaiseAlert{Event: raisedAlert(id)}, 1, nil, 0},
		{"raise_twice_is_a_no_op", []proto.Message{raisedAlert(id)}, safety.RaiseAlert{Event: raisedAlert(id)}, 0, nil, 0},
		{"raise_needs_events", nil, safety.RaiseAlert{Event: &safetyv1.AlertRaisedV2{AlertId: id, RiderId: "r", Rule: safetyv1.AlertRule_ALERT_RULE_SEVERE_EVENT}}, 0, nil, es.Invalid},
		{"raise_needs_a_rule", nil, safety.RaiseAlert{Event: withRule(raisedAlert(id), safetyv1.AlertRule_ALERT_RULE_UNSPECIFIED)}, 0, nil, es.Invalid},
		{"raise_needs_a_known_rule", nil, safety.RaiseAlert{Event: withRule(raisedAlert(id), 99)}, 0, nil, es.Invalid},
		{"raise_needs_safe_id", nil, safety.RaiseAlert{Event: raisedAlert("a.b")}, 0, nil, es.Invalid},
		{"acknowledge_raised_alert", []proto.Message{raisedAlert(id)}, safety.AcknowledgeAlert{AlertID: id, By: "admin:ops", At: reportNow}, 1, nil, 0},
		{"acknowledge_twice_succeeds_without_events", []proto.Message{raisedAlert(id), ack}, safety.AcknowledgeAlert{AlertID: id, By: "admin:ops", At: reportNow}, 0, nil, 0},
		{"acknowledge_unknown_alert", nil, safety.AcknowledgeAlert{AlertID: id, By: "admin:ops", At: reportNow}, 0, safety.ErrAlertNotFound, es.NotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			events, err := safety.AlertDecider.Decide(givenAlert(tc.history...), tc.cmd)
			if tc.kind != 0 {
				if es.KindOf(err) != tc.kind || (tc.err != nil && !errors.Is(err, tc.err)) {
					t.Fatalf("err = %v, want kind %v", err, tc.kind)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(events) != tc.want {
				t.Fatalf("decided %d events, want %d", len(events), tc.want)
			}
		})
	}
	s := givenAlert(raisedAlert(id), ack)
	if !s.Raised || !s.Acknowledged || s.AckBy != "admin:ops" || s.RiderID != "rider-1" {
		t.Fatalf("state = %+v", s)
	}
}

func TestAlertIDIsDeterministicAndSafe(t *testing.T) {
	a, b := safety.AlertID("rider-1", "dev:crash-1:high"), safety.AlertID("rider-1", "dev:crash-1:high")
	if a != b || a == safety.AlertID("rider-2", "dev:crash-1:high") {
		t.Fatalf("ids %s %s", a, b)
	}
	if err := es.ValidateToken("alert_id", a); err != nil {
		t.Fatal(err)
	}
}
