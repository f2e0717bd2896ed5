package reactions_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tideline/tideline/adapters/reactions"
	"github.com/tideline/tideline/adapters/smtp"
	"github.com/tideline/tideline/adapters/smtp/smtptest"
	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/media"
	"github.com/tideline/tideline/domain/media/mediatest"
	"github.com/tideline/tideline/domain/story"
	"github.com/tideline/tideline/internal/poll"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
)

// TestNotifyingReactionsSkipHistory: with MaxAge an hour, a danger and an
// alert recorded (as the reactions' clock sees it) two hours ago raise
// and notify nothing, and are counted as skipped; a danger recorded now
// is raised and its alert POSTed to the webhook.
func TestNotifyingReactionsSkipHistory(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	var mu sync.Mutex
	var posted []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var a map[string]any
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &a)
		id, _ := a["alertId"].(string)
		mu.Lock()
		posted = append(posted, id)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer hook.Close()
	var ahead atomic.Int64 // how far the reactions' clock runs ahead of the store's
	outcomes := map[string]int{}
	count := func(key string) int { mu.Lock(); defer mu.Unlock(); return outcomes[key] }
	cfg := reactions.Config{RetryInterval: 10 * time.Millisecond, MaxRetries: 3, MaxAge: time.Hour,
		Now: func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) },
		OnOutcome: func(r string, o reactions.Outcome) {
			mu.Lock()
			outcomes[r+" "+o.String()]++
			mu.Unlock()
		}}
	e.engineWith(t, cfg, e.raiseAndNotify(reactions.LogNotifier{Logger: slog.New(slog.DiscardHandler), WebhookURL: hook.URL})...)

	// History: a severe danger, and an alert raised by hand.
	ahead.Store(int64(2 * time.Hour))
	dev := es.StreamID{Context: "safety", Type: "device", ID: "dev1"}
	if _, err := e.store.Append(ctx, dev, []proto.Message{danger("dev1:old:high", "r-old", safetyv1.Severity_SEVERITY_HIGH, time.Now())}, es.AppendOptions{ExpectedVersion: es.AnyVersion}); err != nil {
		t.Fatal(err)
	}
	old := &safetyv1.AlertRaisedV2{AlertId: "alert-by-hand", RiderId: "r-old", Reason: "test", EventIds: []string{"x"},
		Rule: safetyv1.AlertRule_ALERT_RULE_SEVERE_EVENT}
	if _, err := e.svc.Raise(ctx, old, es.Metadata{Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, "both reactions to skip their commit", func() bool {
		return count(reactions.RaiseAlertsName+" skipped_history") == 1 && count(reactions.NotifyAlertsName+" skipped_history") == 1
	})

	// Live: the clock agrees with the store again.
	ahead.Store(0)
	if _, err := e.store.Append(ctx, dev, []proto.Message{danger("dev1:new:high", "r-new", safetyv1.Severity_SEVERITY_HIGH, time.Now())}, es.AppendOptions{ExpectedVersion: es.AnyVersion}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, "the live alert posted", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(posted) == 1 && outcomes[reactions.NotifyAlertsName+" handled"] == 1
	})
	mu.Lock()
	defer mu.Unlock()
	if posted[0] == old.AlertId {
		t.Fatalf("the webhook was told of the old alert: %v", posted)
	}
	last, err := e.store.LastPosition(ctx)
	if err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, "alerts model caught up", func() bool { return e.model.Position() >= last })
	if list, _ := e.model.List("r-old", false, 10); len(list) != 1 || list[0].GetRaisedV2().GetAlertId() != old.AlertId {
		t.Fatalf("r-old's alerts = %v; want only the one raised by hand, none for its old danger", list)
	}
	if list, _ := e.model.List("r-new", false, 10); len(list) != 1 || list[0].GetRaisedV2().GetAlertId() != posted[0] {
		t.Fatalf("r-new's alerts = %v; want the one posted, %s", list, posted[0])
	}
	want := map[string]int{
		reactions.RaiseAlertsName + " skipped_history":  1,
		reactions.NotifyAlertsName + " skipped_history": 1,
		reactions.RaiseAlertsName + " handled":          1,
		reactions.NotifyAlertsName + " handled":         1,
	}
	for k, n := range want {
		if outcomes[k] != n {
			t.Errorf("outcome %q = %d, want %d (all: %v)", k, outcomes[k], n, outcomes)
		}
	}
}

// TestMaxAgeZeroNotifiesEverything: without a bound a commit however
// old (by the clock) is handled.
func TestMaxAgeZeroNotifiesEverything(t *testing.T) {
	e := setup(t)
	n := &fakeNotifier{notified: map[string]int{}}
	cfg := reactions.Config{RetryInterval: 10 * time.Millisecond, MaxRetries: 3, Now: func() time.Time { return time.Now().Add(24 * 365 * time.Hour) }}
	e.engineWith(t, cfg, reactions.NotifyAlerts(n))
	a := &safetyv1.AlertRaisedV2{AlertId: "a1", RiderId: "r1", Reason: "test", EventIds: []string{"x"}, Rule: safetyv1.AlertRule_ALERT_RULE_SEVERE_EVENT}
	if _, err := e.svc.Raise(context.Background(), a, es.Metadata{Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, "the alert notified", func() bool { got, _ := n.count(); return got == 1 })
}

// fakeLinks signs nothing: a link is the blob's name.
type fakeLinks struct{}

func (fakeLinks) UploadURL(u media.Upload, _ time.Duration) (string, time.Time, error) {
	return "https://blobs.test/" + u.Bucket + "/" + u.Name, time.Time{}, nil
}

func (fakeLinks) DownloadURL(ref media.BlobRef, _ time.Duration) (string, time.Time, error) {
	return "https://blobs.test/" + ref.Bucket + "/" + ref.Name, time.Time{}, nil
}

// TestStoryFromHistoryIsReadButNotMailed: a story requested (as the
// reactions' clock sees it) two hours ago is still read and spoken, the
// user may be waiting for it, but finished long ago by that clock, it is
// not mailed; a story finished now is mailed through a real SMTP server.
func TestStoryFromHistoryIsReadButNotMailed(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	svc, blobs, _ := storyService(t, e)
	mail := smtptest.Start(t, nil)
	mailer, err := smtp.New(smtp.Config{Host: mail.Host, Port: mail.Port, TLS: smtp.NoTLS, From: "noreply@tideline.example", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var ahead atomic.Int64
	var mu sync.Mutex
	outcomes := map[string]int{}
	cfg := reactions.Config{RetryInterval: 10 * time.Millisecond, MaxRetries: 3, MaxAge: time.Hour,
		Now: func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) },
		OnOutcome: func(r string, o reactions.Outcome) {
			mu.Lock()
			outcomes[r+" "+o.String()]++
			mu.Unlock()
		}}
	e.engineWith(t, cfg, reactions.StoryReactions(svc, reactions.StoryEngines{Blobs: blobs, OCR: mediatest.FakeOCR{},
		Speaker: mediatest.FakeSpeaker{}, Links: fakeLinks{}, Email: mailer, Concurrency: 1})...)
	kim := auth.Principal{Subject: "kim", Role: auth.Walker}
	if _, err := svc.SetNotifications(ctx, kim, story.Notifications{Email: "kim@family.example"}); err != nil {
		t.Fatal(err)
	}
	request := func(text string) string {
		t.Helper()
		name := story.UploadPrefix("kim") + strings.ReplaceAll(text, " ", "-")
		if _, err := blobs.Put(ctx, story.Bucket, name, "image/png", bytes.NewReader(mediatest.TextPNG(text)), story.MaxImageBytes); err != nil {
			t.Fatal(err)
		}
		id, _, _, err := svc.Request(ctx, kim, name, []string{"en"})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	storyAt := func(id string) story.Story {
		t.Helper()
		st, _, err := svc.Story(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}

	ahead.Store(int64(2 * time.Hour))
	old := request("once upon a time")
	poll.Until(t, 30*time.Second, "the old story read, spoken and every commit of it passed by the notifier", func() bool {
		if !storyAt(old).Done() {
			return false
		}
		info, err := e.store.JetStream().Consumer(ctx, e.store.StreamName(), "reaction-"+reactions.StoryNotifyName)
		if err != nil {
			t.Fatal(err)
		}
		ci, err := info.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return ci.NumPending == 0 && ci.NumAckPending == 0
	})
	mu.Lock()
	if outcomes[reactions.StoryNotifyName+" skipped_history"] == 0 || outcomes[reactions.StoryNotifyName+" handled"] != 0 {
		t.Fatalf("story-notify outcomes %v; want only skips", outcomes)
	}
	mu.Unlock()
	if st := storyAt(old); st.Text != "once upon a time" || st.Channel != "" {
		t.Fatalf("old story: text %q, notified by %q; want read, not notified", st.Text, st.Channel)
	}

	ahead.Store(0)
	live := request("the end")
	poll.Until(t, 30*time.Second, "the live story mailed", func() bool { return storyAt(live).Channel == "email" })
	mails := mail.Received()
	if len(mails) != 1 || mails[0].To[0] != "kim@family.example" {
		t.Fatalf("mails: %+v; want one, of the live story", mails)
	}
	if _, _, text := smtptest.Read(t, mails[0].Data); !strings.Contains(text, "the end") || strings.Contains(text, "once upon") {
		t.Errorf("mail is not of the live story alone:\n%s", text)
	}
	if st := storyAt(old); st.Channel != "" {
		t.Errorf("old story notified by %q after the clock was set right", st.Channel)
	}
}

// TestNewNotifyingReactionStartsAfterHistory: notifying reactions made on
// a store whose commits are all older than MaxAge start after them: the
// server never delivers them (none is even skipped), and a commit
// recorded after is handled. Made again, on a restart, they keep where
// they started.
func TestNewNotifyingReactionStartsAfterHistory(t *testing.T) {
	const maxAge = 2 * time.Second
	e := setup(t)
	ctx := context.Background()
	dev := es.StreamID{Context: "safety", Type: "device", ID: "dev1"}
	for i := range 20 {
		if _, err := e.store.Append(ctx, dev, []proto.Message{danger(fmt.Sprintf("dev1:old:%d", i), "r-old", safetyv1.Severity_SEVERITY_HIGH, time.Now())}, es.AppendOptions{ExpectedVersion: es.AnyVersion}); err != nil {
			t.Fatal(err)
		}
	}
	// The history ages past MaxAge (a clock to pass, not a state to wait for).
	time.Sleep(maxAge + 200*time.Millisecond)
	var mu sync.Mutex
	outcomes := map[string]int{}
	cfg := reactions.Config{RetryInterval: 10 * time.Millisecond, MaxRetries: 3, MaxAge: maxAge,
		OnOutcome: func(r string, o reactions.Outcome) {
			mu.Lock()
			outcomes[r+" "+o.String()]++
			mu.Unlock()
		}}
	start := func() {
		e.engineWith(t, cfg, e.raiseAndNotify(reactions.LogNotifier{Logger: slog.New(slog.DiscardHandler)})...)
	}
	start()
	if _, err := e.store.Append(ctx, dev, []proto.Message{danger("dev1:new", "r-new", safetyv1.Severity_SEVERITY_HIGH, time.Now())}, es.AppendOptions{ExpectedVersion: es.AnyVersion}); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, "the live alert raised and notified", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return outcomes[reactions.RaiseAlertsName+" handled"] == 1 && outcomes[reactions.NotifyAlertsName+" handled"] == 1
	})
	// A second engine on the same consumers: made again, not refused.
	start()
	mu.Lock()
	defer mu.Unlock()
	for k, n := range outcomes {
		if strings.HasSuffix(k, " skipped_history") && n > 0 {
			t.Errorf("%s: %d; the history should not have been delivered at all (all: %v)", k, n, outcomes)
		}
	}
	if list, _ := e.model.List("r-old", false, 10); len(list) != 0 {
		t.Errorf("r-old's alerts = %v; want none", list)
	}
}
