package reactions

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/safety"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
)

// Reaction names: stable (each is a durable consumer).
const (
	RaiseAlertsName  = "alerts-raise"
	NotifyAlertsName = "alerts-notify"
)

// AlertRules is the alert rules projection as the raise reaction reads
// it: its runner's WaitFor and its model's Triggered.
type AlertRules struct {
	WaitFor   func(ctx context.Context, pos uint64) error
	Triggered func(eventID string) []*safetyv1.AlertRaisedV2
}

// RaiseAlerts is the reaction that raises the alerts the rules decide.
// For each danger event (from edge devices and phone reports) it waits
// until the rules projection has applied the event's commit, then raises
// every alert the event triggered through the alert aggregate. The alert
// id is deterministic and raising is idempotent per id (the aggregate
// decides nothing for a raised alert; the id is also the append's
// idempotency key), so redelivery and replay never raise twice. It
// notifies (Reaction.Notifies): a danger recorded longer than
// Config.MaxAge ago raises no alert.
func RaiseAlerts(svc *safety.Service, rules AlertRules) Reaction {
	return Reaction{
		Name:     RaiseAlertsName,
		Subjects: []string{"ev.safety.device.>", "ev.safety.rider.>"},
		Notifies: true, // an alert for a danger long past calls no one to act
		Handle: func(ctx context.Context, c es.Commit) error {
			var dangers []*safetyv1.DangerDetected
			for _, e := range c.Events {
				if d, ok := e.Data.(*safetyv1.DangerDetected); ok {
					dangers = append(dangers, d)
				}
			}
			if len(dangers) == 0 {
				return nil
			}
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			if err := rules.WaitFor(wctx, c.Seq); err != nil {
				return fmt.Errorf("wait for alert rules at %d: %w", c.Seq, err)
			}
			for _, d := range dangers {
				for _, a := range rules.Triggered(d.EventId) {
					meta := es.Metadata{Source: "reaction:" + RaiseAlertsName, Actor: "service:" + RaiseAlertsName,
						CausationID: d.EventId, CorrelationID: c.Events[0].Meta.CorrelationID}
					if _, err := svc.Raise(ctx, a, meta); err != nil {
						return fmt.Errorf("raise %s: %w", a.AlertId, err)
					}
				}
			}
			return nil
		},
	}
}

// Notifier tells people about an alert. Notify may be called more than
// once for one alert (at-least-once delivery); it returns an error to
// have the notification retried.
type Notifier interface {
	Notify(ctx context.Context, a *safetyv1.AlertRaisedV2) error
}

// NotifyAlerts is the reaction that notifies of each raised alert, at
// least once: a failing notifier is retried, then poisoned. An alert
// recorded longer than Config.MaxAge ago is skipped as history.
func NotifyAlerts(n Notifier) Reaction {
	return Reaction{
		Name:     NotifyAlertsName,
		Subjects: []string{"ev.safety.alert.>"},
		Notifies: true,
		Handle: func(ctx context.Context, c es.Commit) error {
			for _, e := range c.Events {
				if a, ok := e.Data.(*safetyv1.AlertRaisedV2); ok { // stored AlertRaised events arrive upcast
					if err := n.Notify(ctx, a); err != nil {
						return fmt.Errorf("notify %s: %w", a.AlertId, err)
					}
				}
			}
			return nil
		},
	}
}

// LogNotifier writes a log line per alert and, when WebhookURL is set,
// POSTs the alert as JSON (protojson AlertRaisedV2) to it; a non-2xx answer
// is an error, so the notification is retried. Within a traced reaction
// (a span in ctx) the POST is a span "notify webhook" whose W3C trace
// context the request carries (traceparent), so the receiver may continue
// the trace.
type LogNotifier struct {
	Logger     *slog.Logger
	WebhookURL string
	Client     *http.Client // default: 10 s timeout
}

// Notify implements Notifier.
func (n LogNotifier) Notify(ctx context.Context, a *safetyv1.AlertRaisedV2) (err error) {
	log := n.Logger
	if log == nil {
		log = slog.Default()
	}
	log.Warn("safety alert", "alert", a.AlertId, "rider", a.RiderId, "reason", a.Reason,
		"severity", a.Severity.String(), "rule", a.Rule.String(), "events", len(a.EventIds))
	if n.WebhookURL == "" {
		return nil
	}
	body, err := protojson.Marshal(a)
	if err != nil {
		return fmt.Errorf("encode alert: %w", err)
	}
	// The reaction's span, if any, names the tracer provider: without one
	// this is a no-op.
	ctx, span := trace.SpanFromContext(ctx).TracerProvider().Tracer("github.com/tideline/tideline/adapters/reactions").
		Start(ctx, "notify webhook", trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attribute.String("tideline.alert", a.AlertId)))
	defer func() {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.WebhookURL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(req.Header))
	client := n.Client
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	res, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	res.Body.Close()
	if res.StatusCode/100 != 2 {
		return fmt.Errorf("webhook: status %s", res.Status)
	}
	return nil
}
