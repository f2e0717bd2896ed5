package reactions_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	tljs "github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/adapters/jetstream/jstest"
	"github.com/tideline/tideline/adapters/natsserver"
	"github.com/tideline/tideline/adapters/objectstore"
	"github.com/tideline/tideline/adapters/reactions"
	"github.com/tideline/tideline/adapters/smtp"
	"github.com/tideline/tideline/adapters/smtp/smtptest"
	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/media"
	"github.com/tideline/tideline/domain/media/mediatest"
	"github.com/tideline/tideline/domain/story"
	"github.com/tideline/tideline/internal/poll"
	storyv1 "github.com/tideline/tideline/schemas/gen/tideline/story/v1"
)

// flakyOCR is an OCR engine that is not installed for its first down
// calls, then is (the fake OCR stands in for tesseract, which is not
// what this test is about).
type flakyOCR struct {
	down  int32
	calls atomic.Int32
}

func (f *flakyOCR) Read(ctx context.Context, img []byte, langs []string) (media.Page, error) {
	if f.calls.Add(1) <= f.down {
		return media.Page{}, fmt.Errorf("%w: tesseract not found: install the Debian package tesseract-ocr", media.ErrUnavailable)
	}
	return mediatest.FakeOCR{}.Read(ctx, img, langs)
}

// storyService returns a storytime service over e's store, JetStream
// object stores and the personal data keys of the ACCOUNT_KEYS bucket.
func storyService(t *testing.T, e *env) (*story.Service, *objectstore.Blobs, *tljs.AccountKeys) {
	t.Helper()
	nc, err := natsserver.Connect(e.ns, "blobs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	blobs, err := objectstore.New(nc, objectstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	keys, err := tljs.OpenAccountKeys(context.Background(), e.store.JetStream(), 1)
	if err != nil {
		t.Fatal(err)
	}
	return story.NewService(e.store, blobs, keys, nil), blobs, keys
}

// While an engine is unavailable its stories wait, neither failed nor
// dropped, and go on once it is back.
func TestStoryWaitsForAnUnavailableEngine(t *testing.T) {
	e := setup(t)
	svc, blobs, _ := storyService(t, e)
	ocr := &flakyOCR{down: 3}
	e.engineWith(t, reactions.Config{RetryInterval: 10 * time.Millisecond, MaxRetries: 1, RedeliverDelay: 20 * time.Millisecond},
		reactions.StoryReactions(svc, reactions.StoryEngines{Blobs: blobs, OCR: ocr, Speaker: mediatest.FakeSpeaker{}, Links: nil})...)
	kim := auth.Principal{Subject: "kim", Role: auth.Walker}
	name := story.UploadPrefix("kim") + "page"
	if _, err := blobs.Put(context.Background(), story.Bucket, name, "image/png", bytes.NewReader(mediatest.TextPNG("once upon a time")), story.MaxImageBytes); err != nil {
		t.Fatal(err)
	}
	id, _, _, err := svc.Request(context.Background(), kim, name, []string{"en"})
	if err != nil {
		t.Fatal(err)
	}
	var st story.Story
	poll.Until(t, 30*time.Second, "the story past OCR", func() bool {
		st, _, err = svc.Story(context.Background(), id)
		if err != nil && !errors.Is(err, story.ErrStoryNotFound) {
			t.Fatal(err)
		}
		return st.Stage != storyv1.Stage_STAGE_REQUESTED
	})
	if st.Stage == storyv1.Stage_STAGE_FAILED || st.Text != "once upon a time" || ocr.calls.Load() <= ocr.down {
		t.Fatalf("after %d OCR calls (%d unavailable): %v %q %s", ocr.calls.Load(), ocr.down, st.Stage, st.Text, st.Failure)
	}
}

// TestStoryForgottenUserIsNotMailed: a notification address is in the
// events only sealed with its user's personal data key. Once the key is
// deleted (as accounts' ForgetUser does) the user's stories are recorded
// told by "forgotten" and nothing is sent, while another user is mailed
// through a real SMTP server. A plain address, in an event written
// before the sealing, is still read, until its user is forgotten.
func TestStoryForgottenUserIsNotMailed(t *testing.T) {
	e := setup(t)
	ctx := context.Background()
	svc, blobs, keys := storyService(t, e)
	mail := smtptest.Start(t, nil)
	mailer, err := smtp.New(smtp.Config{Host: mail.Host, Port: mail.Port, TLS: smtp.NoTLS, From: "noreply@tideline.example", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	e.engine(t, reactions.StoryReactions(svc, reactions.StoryEngines{Blobs: blobs, OCR: mediatest.FakeOCR{},
		Speaker: mediatest.FakeSpeaker{}, Links: fakeLinks{}, Email: mailer, Concurrency: 1})...)
	walker := func(user string) auth.Principal { return auth.Principal{Subject: user, Role: auth.Walker} }
	for _, user := range []string{"kim", "lee"} {
		if _, err := svc.SetNotifications(ctx, walker(user), story.Notifications{Email: user + ".secret@family.example"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.store.Append(ctx, story.UserStream("old"), []proto.Message{&storyv1.NotificationsSet{Email: "old.plain@family.example"}},
		es.AppendOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := keys.Delete(ctx, "kim"); err != nil {
		t.Fatal(err)
	}
	told := func(user, text string) story.Story {
		t.Helper()
		name := story.UploadPrefix(user) + strings.ReplaceAll(text, " ", "-")
		if _, err := blobs.Put(ctx, story.Bucket, name, "image/png", bytes.NewReader(mediatest.TextPNG(text)), story.MaxImageBytes); err != nil {
			t.Fatal(err)
		}
		id, _, _, err := svc.Request(ctx, walker(user), name, []string{"en"})
		if err != nil {
			t.Fatal(err)
		}
		var st story.Story
		poll.Until(t, 30*time.Second, user+"'s story told", func() bool {
			if st, _, err = svc.Story(ctx, id); err != nil {
				t.Fatal(err)
			}
			return st.Channel != ""
		})
		return st
	}
	if st := told("kim", "once upon a time"); st.Channel != "forgotten" {
		t.Errorf("forgotten kim's story told by %q", st.Channel)
	}
	if st := told("lee", "once upon a time"); st.Channel != "email" {
		t.Errorf("lee's story told by %q", st.Channel)
	}
	if st := told("old", "once upon a time"); st.Channel != "email" {
		t.Errorf("old's story, of a plain address and no key, told by %q", st.Channel)
	}
	// old signs up (the key is made) and is forgotten.
	if _, err := keys.Create(ctx, "old"); err != nil {
		t.Fatal(err)
	}
	if err := keys.Delete(ctx, "old"); err != nil {
		t.Fatal(err)
	}
	if st := told("old", "the end"); st.Channel != "forgotten" {
		t.Errorf("forgotten old's story told by %q", st.Channel)
	}
	var to []string
	for _, m := range mail.Received() {
		to = append(to, m.To...)
	}
	if !slices.Equal(to, []string{"lee.secret@family.example", "old.plain@family.example"}) {
		t.Errorf("mailed %v; want lee, then old before forgotten", to)
	}

	if n, err := svc.Notifications(ctx, "kim"); err != nil || n != (story.Notifications{Forgotten: true}) {
		t.Errorf("kim's notifications: %+v, %v", n, err)
	}
	if _, err := svc.SetNotifications(ctx, walker("kim"), story.Notifications{Email: "kim@family.example"}); es.KindOf(err) != es.FailedPrecondition {
		t.Errorf("forgotten kim setting an address: %v, want FailedPrecondition", err)
	}
	raw := jstest.RawStream(t, e.store)
	for _, secret := range []string{"kim.secret", "lee.secret"} {
		if bytes.Contains(raw, []byte(secret)) {
			t.Errorf("%q in the raw event stream", secret)
		}
	}
	if !bytes.Contains(raw, []byte("***@family.example")) {
		t.Error("no masked recipient (the domain) in the raw event stream")
	}
	// What was written before the sealing stays: the stream denies deletes.
	if !bytes.Contains(raw, []byte("old.plain@family.example")) {
		t.Error("the plain address of before the sealing is gone from the stream: did the test write it?")
	}
}
