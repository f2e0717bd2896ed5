package story_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/media"
	"github.com/tideline/tideline/domain/story"
	storyv1 "github.com/tideline/tideline/schemas/gen/tideline/story/v1"
)

var (
	now  = time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	page = media.BlobRef{Bucket: story.Bucket, Name: "u-1", SHA256: strings.Repeat("ab", 32), Size: 1000, ContentType: "image/png"}
)

// run decides cmds in order from the initial state, folding each result,
// and returns the state and the events of the last command.
func run(t *testing.T, cmds ...story.Command) (story.Story, []proto.Message) {
	t.Helper()
	s := story.Decider.Initial()
	var evs []proto.Message
	for i, c := range cmds {
		var err error
		evs, err = story.Decider.Decide(s, c)
		if err != nil {
			t.Fatalf("command %d %T: %v", i, c, err)
		}
		for _, e := range evs {
			s = story.Decider.Evolve(s, e)
		}
	}
	return s, evs
}

var (
	request = story.Request{UserID: "kim", Image: page, Langs: []string{"ko"}, Now: now}
	text    = story.RecordText{Text: "옛날 옛적에", Lang: "kor", Confidence: 0.9, Words: 2}
	speech  = story.RecordSpeech{Audio: media.BlobRef{Bucket: story.Bucket, Name: "s-speech", ContentType: "audio/ogg"}, Duration: 2 * time.Second}
	told    = story.MarkNotified{Channel: "email", Recipient: "***@example.com"}
)

func TestPipeline(t *testing.T) {
	cases := []struct {
		name      string
		cmds      []story.Command
		stage     storyv1.Stage
		lastEvent string // "" when the last command appends nothing
	}{
		{"request_starts_a_story", []story.Command{request}, storyv1.Stage_STAGE_REQUESTED, "StoryRequested"},
		{"same_image_again_appends_nothing", []story.Command{request, request}, storyv1.Stage_STAGE_REQUESTED, ""},
		{"same_image_in_a_batch_joins_it", []story.Command{request, story.Request{UserID: "kim", Image: page, Batch: "b1", Now: now}}, storyv1.Stage_STAGE_REQUESTED, "StoryAddedToBatch"},
		{"text_then_speech_then_told", []story.Command{request, text, speech, told}, storyv1.Stage_STAGE_NOTIFIED, "UserNotified"},
		{"text_twice_appends_nothing", []story.Command{request, text, text}, storyv1.Stage_STAGE_TEXT_EXTRACTED, ""},
		{"speech_before_text_appends_nothing", []story.Command{request, speech}, storyv1.Stage_STAGE_REQUESTED, ""},
		{"told_before_done_appends_nothing", []story.Command{request, text, told}, storyv1.Stage_STAGE_TEXT_EXTRACTED, ""},
		{"told_twice_appends_nothing", []story.Command{request, text, speech, told, told}, storyv1.Stage_STAGE_NOTIFIED, ""},
		{"failure_ends_it", []story.Command{request, story.Fail{Stage: storyv1.Stage_STAGE_TEXT_EXTRACTED, Reason: "no text found"}}, storyv1.Stage_STAGE_FAILED, "StoryFailed"},
		{"failed_story_is_told_and_stays_failed", []story.Command{request, story.Fail{Stage: storyv1.Stage_STAGE_TEXT_EXTRACTED, Reason: "x"}, told}, storyv1.Stage_STAGE_FAILED, "UserNotified"},
		{"no_text_after_failure", []story.Command{request, story.Fail{Stage: storyv1.Stage_STAGE_TEXT_EXTRACTED, Reason: "x"}, text}, storyv1.Stage_STAGE_FAILED, ""},
		{"no_failure_after_speech", []story.Command{request, text, speech, story.Fail{Stage: storyv1.Stage_STAGE_NOTIFIED, Reason: "x"}}, storyv1.Stage_STAGE_SPEECH_SYNTHESIZED, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, evs := run(t, tc.cmds...)
			if s.Stage != tc.stage {
				t.Errorf("stage = %v, want %v", s.Stage, tc.stage)
			}
			got := ""
			if len(evs) > 0 {
				got = string(evs[0].ProtoReflect().Descriptor().Name())
			}
			if got != tc.lastEvent {
				t.Errorf("last command appended %q, want %q", got, tc.lastEvent)
			}
		})
	}
}

func TestStageOfUnknownStoryIsNotFound(t *testing.T) {
	_, err := story.Decider.Decide(story.Decider.Initial(), text)
	if es.KindOf(err) != es.NotFound {
		t.Fatalf("err = %v, want NotFound", err)
	}
}

func TestIDs(t *testing.T) {
	a, b := story.StoryID("kim", page.SHA256), story.StoryID("lee", page.SHA256)
	if a == b || a != story.StoryID("kim", page.SHA256) {
		t.Fatalf("story ids: kim %s, lee %s: want stable and per user", a, b)
	}
	for _, id := range []string{a, story.BatchID("kim", []string{a, b}), story.UploadPrefix("kim") + "x"} {
		if err := es.ValidateToken("id", id); err != nil {
			t.Errorf("%s: %v", id, err)
		}
	}
	if story.BatchID("kim", []string{a, b}) == story.BatchID("kim", []string{b, a}) {
		t.Error("a batch's id should depend on its order")
	}
	if story.UploadPrefix("kim") == story.UploadPrefix("lee") {
		t.Error("upload prefixes should differ per user")
	}
}

func TestValidateNotifications(t *testing.T) {
	cases := []struct {
		name  string
		in    story.Notifications
		field string // "" when valid
		want  story.Notifications
	}{
		{"both_empty", story.Notifications{}, "", story.Notifications{}},
		{"email_normalised", story.Notifications{Email: " Kim@Example.COM "}, "", story.Notifications{Email: "Kim@example.com"}},
		{"email_with_name", story.Notifications{Email: "Kim <kim@example.com>"}, "email", story.Notifications{}},
		{"email_no_domain_dot", story.Notifications{Email: "kim@localhost"}, "email", story.Notifications{}},
		{"email_garbage", story.Notifications{Email: "not an address"}, "email", story.Notifications{}},
		{"slack_https", story.Notifications{SlackWebhook: "https://hooks.slack.com/services/T/B/x"}, "", story.Notifications{SlackWebhook: "https://hooks.slack.com/services/T/B/x"}},
		{"slack_http", story.Notifications{SlackWebhook: "http://hooks.slack.com/services/T/B/x"}, "slack_webhook", story.Notifications{}},
		{"slack_with_user", story.Notifications{SlackWebhook: "https://a:b@hooks.slack.com/x"}, "slack_webhook", story.Notifications{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := story.ValidateNotifications(tc.in)
			if tc.field == "" {
				if err != nil || got != tc.want {
					t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
				}
				return
			}
			var e *es.Error
			if err == nil || !errors.As(err, &e) || e.Field != tc.field || e.Kind != es.Invalid {
				t.Fatalf("err = %v, want Invalid naming %s", err, tc.field)
			}
		})
	}
}

func TestValidateLangs(t *testing.T) {
	got, err := story.ValidateLangs([]string{"ko", "en", "ko"})
	if err != nil || strings.Join(got, ",") != "en,ko" {
		t.Fatalf("got %v, %v", got, err)
	}
	if _, err := story.ValidateLangs([]string{"en", "fr"}); err == nil || !strings.Contains(err.Error(), "langs[1]") {
		t.Fatalf("err = %v, want langs[1] named", err)
	}
}

func TestMayUse(t *testing.T) {
	for _, r := range auth.Roles {
		err := story.MayUse(auth.Principal{Subject: "x", Role: r})
		if want := r != auth.Device && r != auth.Service && r != auth.Metrics; (err == nil) != want {
			t.Errorf("role %s: err = %v", r, err)
		}
	}
}

// Settings hold the address sealed, never in plain; a plain address,
// in an event written before the sealing, is still read.
func TestNotificationsSettings(t *testing.T) {
	d := story.NotificationsDecider
	sealed := []byte("nonce and ciphertext")
	evs, err := d.Decide(d.Initial(), story.SetNotifications{EmailSealed: sealed, SlackWebhook: "https://hooks.slack.com/x"})
	if err != nil || len(evs) != 1 {
		t.Fatalf("decide: %v, %v", evs, err)
	}
	set, ok := evs[0].(*storyv1.NotificationsSet)
	if !ok || set.GetEmail() != "" || string(set.EmailSealed) != string(sealed) {
		t.Fatalf("event %v: want the address only sealed", evs[0])
	}
	if got := d.Evolve(d.Initial(), set); string(got.EmailSealed) != string(sealed) || got.PlainEmail != "" || got.SlackWebhook != "https://hooks.slack.com/x" {
		t.Errorf("evolved %+v", got)
	}
	old := &storyv1.NotificationsSet{Email: "kim@example.com"}
	if got := d.Evolve(d.Evolve(d.Initial(), set), old); got.PlainEmail != "kim@example.com" || got.EmailSealed != nil || got.SlackWebhook != "" {
		t.Errorf("an event of before the sealing evolved into %+v", got)
	}
}

func TestMask(t *testing.T) {
	if got := story.Mask("email", "kim@example.com"); got != "***@example.com" {
		t.Errorf("email mask = %q", got)
	}
	if got := story.Mask("slack", "https://hooks.slack.com/services/T/B/secret"); got != "hooks.slack.com" {
		t.Errorf("slack mask = %q", got)
	}
}
