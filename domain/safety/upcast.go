package safety

import (
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
)

// UpcastAlertRaised turns a stored AlertRaised, as Tideline appended it
// before AlertRaisedV2, into an AlertRaisedV2 (wire registers it for
// every reader). Its rule is read from the reason the alert rules wrote:
// "severity <SEVERITY> <kind>" is ALERT_RULE_SEVERE_EVENT and
// "<n> danger events within <window>" is ALERT_RULE_REPEATED_EVENTS. Any
// other reason is an error: no version of the rules wrote one.
func UpcastAlertRaised(old proto.Message) (proto.Message, error) {
	a, ok := old.(*safetyv1.AlertRaised)
	if !ok {
		return nil, fmt.Errorf("not an AlertRaised: %T", old)
	}
	rule := ruleOfReason(a.GetReason())
	if rule == safetyv1.AlertRule_ALERT_RULE_UNSPECIFIED {
		return nil, fmt.Errorf("alert %s: no rule in reason %q", a.GetAlertId(), a.GetReason())
	}
	return &safetyv1.AlertRaisedV2{
		AlertId:  a.GetAlertId(),
		RiderId:  a.GetRiderId(),
		Reason:   a.GetReason(),
		EventIds: append([]string(nil), a.GetEventIds()...),
		Severity: a.GetSeverity(),
		RaisedAt: proto.CloneOf(a.GetRaisedAt()),
		Rule:     rule,
	}, nil
}

func ruleOfReason(reason string) safetyv1.AlertRule {
	if rest, ok := strings.CutPrefix(reason, "severity "); ok && rest != "" {
		return safetyv1.AlertRule_ALERT_RULE_SEVERE_EVENT
	}
	if n, rest, ok := strings.Cut(reason, " danger events within "); ok && rest != "" {
		if _, err := strconv.Atoi(n); err == nil {
			return safetyv1.AlertRule_ALERT_RULE_REPEATED_EVENTS
		}
	}
	return safetyv1.AlertRule_ALERT_RULE_UNSPECIFIED
}
