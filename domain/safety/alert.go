package safety

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
)

// Alert is the state of one alert aggregate (stream ev.safety.alert.<id>).
type Alert struct {
	ID           string
	RiderID      string
	Raised       bool
	Acknowledged bool
	AckBy        string
}

// AlertCommand is RaiseAlert or AcknowledgeAlert.
type AlertCommand interface{ alertCommand() }

// RaiseAlert raises Event's alert. Raising an alert that is already
// raised decides nothing (no events, no error): a redelivered or replayed
// trigger is harmless.
type RaiseAlert struct{ Event *safetyv1.AlertRaisedV2 }

// AcknowledgeAlert acknowledges an alert on behalf of By (role:subject).
// Acknowledging an acknowledged alert decides nothing and succeeds: the
// admin's intent holds, and a retried request must not fail. An alert
// never raised is ErrAlertNotFound.
type AcknowledgeAlert struct {
	AlertID string
	By      string
	At      time.Time
}

func (RaiseAlert) alertCommand()       {}
func (AcknowledgeAlert) alertCommand() {}

// ErrAlertNotFound is returned when acknowledging an alert never raised.
var ErrAlertNotFound = &es.Error{Kind: es.NotFound, Message: "no such alert"}

// AlertStream is an alert's aggregate stream.
func AlertStream(alertID string) es.StreamID {
	return es.StreamID{Context: "safety", Type: "alert", ID: alertID}
}

// AlertID is the deterministic id of the alert of an incident: the rider
// and the id of the incident's first danger event, hashed into a safe
// token ("alert-" and 32 hex digits).
func AlertID(riderID, firstEventID string) string {
	h := sha256.Sum256([]byte(riderID + "\x00" + firstEventID))
	return "alert-" + hex.EncodeToString(h[:16])
}

// AlertDecider is the alert aggregate's behaviour.
var AlertDecider = es.Decider[Alert, AlertCommand]{
	Initial: func() Alert { return Alert{} },
	Decide:  decideAlert,
	Evolve:  evolveAlert,
}

func decideAlert(s Alert, c AlertCommand) ([]proto.Message, error) {
	switch c := c.(type) {
	case RaiseAlert:
		e := c.Event
		if e == nil {
			return nil, es.Invalidf("alert", "is required")
		}
		if err := es.ValidateToken("alert_id", e.AlertId); err != nil {
			return nil, err
		}
		if err := es.ValidateToken("rider_id", e.RiderId); err != nil {
			return nil, err
		}
		if len(e.EventIds) == 0 {
			return nil, es.Invalidf("event_ids", "an alert needs at least one danger event")
		}
		if _, ok := safetyv1.AlertRule_name[int32(e.Rule)]; !ok || e.Rule == safetyv1.AlertRule_ALERT_RULE_UNSPECIFIED {
			return nil, es.Invalidf("rule", "is required")
		}
		if s.Raised {
			return nil, nil
		}
		return []proto.Message{proto.Clone(e)}, nil
	case AcknowledgeAlert:
		if err := es.ValidateToken("alert_id", c.AlertID); err != nil {
			return nil, err
		}
		if !s.Raised {
			return nil, ErrAlertNotFound
		}
		if s.Acknowledged {
			return nil, nil
		}
		return []proto.Message{&safetyv1.AlertAcknowledged{AlertId: c.AlertID, By: c.By, At: timestamppb.New(c.At)}}, nil
	}
	return nil, es.Errorf(es.Internal, "unknown alert command %T", c)
}

func evolveAlert(s Alert, e proto.Message) Alert {
	switch e := e.(type) {
	case *safetyv1.AlertRaisedV2: // stored AlertRaised events arrive upcast to V2
		s.ID, s.RiderID, s.Raised = e.AlertId, e.RiderId, true
	case *safetyv1.AlertAcknowledged:
		s.Acknowledged, s.AckBy = true, e.By
	}
	return s
}

// Raise raises an alert decided by the alert rules, once: raising an
// alert already raised appends nothing and returns the stream's version.
// The alert id is also the idempotency key.
func (s *Service) Raise(ctx context.Context, a *safetyv1.AlertRaisedV2, meta es.Metadata) (es.AppendResult, error) {
	return s.Alerts.Handle(ctx, AlertStream(a.GetAlertId()), RaiseAlert{Event: a}, es.AppendOptions{IdempotencyKey: a.GetAlertId(), Meta: meta})
}

// Acknowledge acknowledges alert id on behalf of p (the API checks the
// role). It returns already true, and appends nothing, when the alert was
// acknowledged before; ErrAlertNotFound for an alert never raised.
func (s *Service) Acknowledge(ctx context.Context, p auth.Principal, id string) (res es.AppendResult, already bool, err error) {
	if err := es.ValidateToken("alert_id", id); err != nil {
		return es.AppendResult{}, false, err
	}
	st, _, err := s.Alerts.Get(ctx, AlertStream(id))
	if err != nil {
		return es.AppendResult{}, false, err
	}
	res, err = s.Alerts.Handle(ctx, AlertStream(id), AcknowledgeAlert{AlertID: id, By: p.String(), At: s.now()},
		es.AppendOptions{Meta: es.Metadata{Actor: p.String(), Source: "api"}})
	return res, st.Acknowledged, err
}
