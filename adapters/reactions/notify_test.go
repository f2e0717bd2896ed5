package reactions_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/tideline/tideline/adapters/reactions"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
)

func TestLogNotifierWebhook(t *testing.T) {
	status := http.StatusNoContent
	var got map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &got)
		w.WriteHeader(status)
	}))
	defer srv.Close()
	n := reactions.LogNotifier{Logger: slog.New(slog.DiscardHandler), WebhookURL: srv.URL}
	a := &safetyv1.AlertRaisedV2{AlertId: "alert-1", RiderId: "r1", Reason: "severity HIGH crash", EventIds: []string{"e1"},
		Rule: safetyv1.AlertRule_ALERT_RULE_SEVERE_EVENT}
	if err := n.Notify(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	if got["alertId"] != "alert-1" || got["riderId"] != "r1" || got["rule"] != "ALERT_RULE_SEVERE_EVENT" {
		t.Fatalf("webhook body = %v", got)
	}
	status = http.StatusBadGateway
	if err := n.Notify(context.Background(), a); err == nil {
		t.Fatal("a failing webhook reported success")
	}
	if err := (reactions.LogNotifier{Logger: slog.New(slog.DiscardHandler)}).Notify(context.Background(), a); err != nil {
		t.Fatalf("log only: %v", err)
	}
}
