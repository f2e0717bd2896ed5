package reactions_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	tljs "github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/adapters/reactions"
	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/safety"
	"github.com/tideline/tideline/internal/poll"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
	"github.com/tideline/tideline/wire"
)

const alertRaisedV1 = "tideline.safety.v1.AlertRaised"

// appendAlertRaisedV1 appends an AlertRaised as a Tideline of before
// AlertRaisedV2 did (the same envelope and headers its store wrote), and
// returns its position.
func appendAlertRaisedV1(t *testing.T, s *tljs.Store, id, reason string, at time.Time) uint64 {
	t.Helper()
	data, err := proto.Marshal(&safetyv1.AlertRaised{AlertId: id, RiderId: "r1", Reason: reason, EventIds: []string{"e1", "e2", "e3"},
		Severity: safetyv1.Severity_SEVERITY_LOW, RaisedAt: timestamppb.New(at)})
	if err != nil {
		t.Fatal(err)
	}
	h := nats.Header{}
	h.Set(jetstream.MsgIDHeader, safety.AlertStream(id).String()+"/"+id)
	wire.SetCommitHeaders(h, []string{alertRaisedV1}, es.Metadata{Actor: "service:alerts-raise", Source: "reaction:alerts-raise"})
	msg := &nats.Msg{Subject: safety.AlertStream(id).String(), Header: h,
		Data: wire.AppendEvent(nil, "01HZZZZZZZZZZZZZZZZZZZZZZZ", alertRaisedV1, timestamppb.New(at), data)}
	ack, err := s.JetStream().PublishMsg(context.Background(), msg)
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

// ruleNotifier records the rule of each alert it is told of.
type ruleNotifier struct {
	mu    sync.Mutex
	rules map[string]safetyv1.AlertRule
}

func (n *ruleNotifier) Notify(_ context.Context, a *safetyv1.AlertRaisedV2) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.rules[a.AlertId] = a.Rule
	return nil
}

func (n *ruleNotifier) rule(id string) safetyv1.AlertRule {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.rules[id]
}

// TestStoredAlertRaisedComesOutAsV2: an alert an older Tideline stored
// as AlertRaised reaches every reader as AlertRaisedV2, its rule read
// from its reason: the store's Load, the alert aggregate (Evolve), the
// alerts read model through its runner, and the notify reaction.
func TestStoredAlertRaisedComesOutAsV2(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	n := &ruleNotifier{rules: map[string]safetyv1.AlertRule{}}
	e.engine(t, reactions.NotifyAlerts(n))
	id := safety.AlertID("r1", "e1")
	at := time.Now().Add(-time.Hour).Truncate(time.Second)
	pos := appendAlertRaisedV1(t, e.store, id, "3 danger events within 10m0s", at)
	want := &safetyv1.AlertRaisedV2{AlertId: id, RiderId: "r1", Reason: "3 danger events within 10m0s", EventIds: []string{"e1", "e2", "e3"},
		Severity: safetyv1.Severity_SEVERITY_LOW, RaisedAt: timestamppb.New(at), Rule: safetyv1.AlertRule_ALERT_RULE_REPEATED_EVENTS}

	commits, _, err := e.store.Load(ctx, safety.AlertStream(id), 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(commits) != 1 || len(commits[0].Events) != 1 || commits[0].Events[0].Type != "tideline.safety.v1.AlertRaisedV2" ||
		!proto.Equal(commits[0].Events[0].Data, want) {
		t.Fatalf("loaded %+v, want one %v", commits, want)
	}

	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := e.runner.WaitFor(wctx, pos); err != nil {
		t.Fatal(err)
	}
	if a := e.model.Get(id); !proto.Equal(a.GetRaisedV2(), want) || a.GetRaised().GetAlertId() != id {
		t.Fatalf("read model has %v, want %v", a, want)
	}

	// The aggregate's Evolve knows only AlertRaisedV2: acknowledging
	// finds the alert raised.
	res, already, err := e.svc.Acknowledge(ctx, auth.Principal{Subject: "ops", Role: auth.Admin}, id)
	if err != nil || already || res.Position.Seq <= pos {
		t.Fatalf("acknowledge = %v, %v, %v", res, already, err)
	}

	poll.Until(t, 10*time.Second, "the alert notified with its rule", func() bool {
		return n.rule(id) == safetyv1.AlertRule_ALERT_RULE_REPEATED_EVENTS
	})

	// Writers append only the current version.
	_, err = e.store.Append(ctx, safety.AlertStream("alert-new"), []proto.Message{&safetyv1.AlertRaised{AlertId: "alert-new"}},
		es.AppendOptions{ExpectedVersion: es.AnyVersion})
	if es.KindOf(err) != es.Internal || !strings.Contains(err.Error(), alertRaisedV1) {
		t.Fatalf("appending an AlertRaised: %v, want an Internal error naming it", err)
	}
}

// TestUnreadableStoredAlertRaised: a stored AlertRaised its upcaster
// refuses is a decode error that names the type: the runner stops there
// (its reason says so) and the reaction poisons the commit at once.
func TestUnreadableStoredAlertRaised(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	n := &ruleNotifier{rules: map[string]safetyv1.AlertRule{}}
	e.engine(t, reactions.NotifyAlerts(n))
	pos := appendAlertRaisedV1(t, e.store, safety.AlertID("r1", "e1"), "no rule says this", time.Now())

	var st tljs.RunnerStatus
	poll.Until(t, 10*time.Second, "the runner stopped", func() bool {
		st = e.runner.Status(ctx)
		return st.State == tljs.Stopped
	})
	if st.StoppedAt != pos || !strings.Contains(st.Reason, alertRaisedV1+" ") {
		t.Fatalf("status %+v, want stopped at %d naming %s", st, pos, alertRaisedV1)
	}

	js, _ := jetstream.New(e.store.JetStream().Conn())
	poll.Until(t, 10*time.Second, "the commit poisoned", func() bool {
		s, err := js.Stream(ctx, reactions.PoisonStream)
		if err != nil {
			return false
		}
		m, err := s.GetLastMsgForSubject(ctx, reactions.PoisonSubjectPrefix+"."+reactions.NotifyAlertsName)
		return err == nil && m != nil
	})
	if n.rule(safety.AlertID("r1", "e1")) != 0 {
		t.Fatal("an unreadable alert was notified")
	}
}
