// Package story is the storytime context: a photo of a book page becomes
// its text (OCR), the text becomes speech (TTS), and the user is sent a
// link to the audio by e-mail or Slack. Each stage is an event on the
// story's stream (ev.story.story.<id>); reactions run the engines.
//
// A story's id is derived from its user and the SHA-256 of the page image,
// so the same page requested again by the same user is the same story:
// the request appends nothing and the earlier story is answered at once,
// without running the engines again. Every stage command is idempotent:
// a stage already done (or a story already failed) appends nothing, so a
// reaction that runs twice changes nothing.
package story

import (
	"fmt"
	"net/mail"
	"net/url"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/media"
	mediav1 "github.com/tideline/tideline/schemas/gen/tideline/media/v1"
	storyv1 "github.com/tideline/tideline/schemas/gen/tideline/story/v1"
)

// Bucket is the blob bucket of page images and their speech.
const Bucket = "story"

// Limits of input.
const (
	MaxImageBytes   = 10 << 20 // a page photo
	MaxBatch        = 100      // pages per bulk request
	MaxTextBytes    = 64 << 10 // extracted text kept in the event
	MaxReasonBytes  = 500
	MaxEmailBytes   = 254
	MaxWebhookBytes = 500
)

// ImageTypes are the page image types accepted.
var ImageTypes = []string{"image/png", "image/jpeg"}

// Langs are the page languages the pipeline reads.
var Langs = []string{"en", "ko"}

// Stream returns the stream of a story.
func Stream(storyID string) es.StreamID {
	return es.StreamID{Context: "story", Type: "story", ID: storyID}
}

// BatchStream returns the stream of a bulk request.
func BatchStream(batchID string) es.StreamID {
	return es.StreamID{Context: "story", Type: "batch", ID: batchID}
}

// UserStream returns the stream of a user's notification settings.
func UserStream(userID string) es.StreamID {
	return es.StreamID{Context: "story", Type: "user", ID: userID}
}

// StoryID is the id of userID's story of the image with that SHA-256.
func StoryID(userID, imageSHA256 string) string { return es.DigestID("s", userID, imageSHA256) }

// BatchID is the id of userID's bulk request of these stories (in order),
// so a retried request is the same batch.
func BatchID(userID string, storyIDs []string) string {
	return es.DigestID("b", append([]string{userID}, storyIDs...)...)
}

// UploadPrefix is the prefix of userID's upload names: an upload can be
// requested only by the user it was issued to.
func UploadPrefix(userID string) string { return es.DigestID("u", userID)[:14] + "-" }

// Stage is where a story is.
type Stage = storyv1.Stage

// Story is a story's state, folded from its events.
type Story struct {
	ID          string
	UserID      string
	Image       media.BlobRef
	Langs       []string
	Stage       Stage
	Text        string
	Lang        string
	Confidence  float64
	Words       int32
	Audio       media.BlobRef
	Duration    time.Duration
	FailedStage Stage
	Failure     string
	Channel     string // notified by
	Batches     []string
	RequestedAt time.Time
}

// Done reports whether the story is past its pipeline's work (spoken or
// failed), so its user can be told.
func (s Story) Done() bool {
	return s.Stage == storyv1.Stage_STAGE_SPEECH_SYNTHESIZED || s.Stage == storyv1.Stage_STAGE_NOTIFIED || s.Stage == storyv1.Stage_STAGE_FAILED
}

// Command is one of Request, RecordText, RecordSpeech, Fail, MarkNotified.
type Command interface{ isCommand() }

// Request starts a story (or adds an existing one to Batch).
type Request struct {
	UserID string
	Image  media.BlobRef
	Langs  []string
	Batch  string
	Now    time.Time
}

// RecordText records the OCR result.
type RecordText struct {
	Text       string
	Lang       string
	Confidence float64
	Words      int32
}

// RecordSpeech records the TTS result.
type RecordSpeech struct {
	Audio    media.BlobRef
	Duration time.Duration
}

// Fail records that stage could not be done.
type Fail struct {
	Stage  Stage
	Reason string
}

// MarkNotified records that the user was told.
type MarkNotified struct{ Channel, Recipient string }

func (Request) isCommand()      {}
func (RecordText) isCommand()   {}
func (RecordSpeech) isCommand() {}
func (Fail) isCommand()         {}
func (MarkNotified) isCommand() {}

// Decider is the story aggregate.
var Decider = es.Decider[Story, Command]{
	Initial: func() Story { return Story{} },
	Decide:  decide,
	Evolve:  evolve,
}

// ErrStoryNotFound is returned for a story that does not exist (or is
// not the caller's).
var ErrStoryNotFound = &es.Error{Kind: es.NotFound, Message: "no such story"}

func decide(s Story, cmd Command) ([]proto.Message, error) {
	switch c := cmd.(type) {
	case Request:
		if s.Stage != storyv1.Stage_STAGE_UNSPECIFIED {
			if c.Batch == "" || slices.Contains(s.Batches, c.Batch) {
				return nil, nil
			}
			return []proto.Message{&storyv1.StoryAddedToBatch{StoryId: s.ID, BatchId: c.Batch}}, nil
		}
		id := StoryID(c.UserID, c.Image.SHA256)
		return []proto.Message{&storyv1.StoryRequested{StoryId: id, UserId: c.UserID, Image: media.RefToProto(c.Image),
			Langs: c.Langs, BatchId: c.Batch, RequestedAt: timestamppb.New(c.Now)}}, nil
	}
	if s.Stage == storyv1.Stage_STAGE_UNSPECIFIED {
		return nil, ErrStoryNotFound
	}
	switch c := cmd.(type) {
	case RecordText:
		if s.Stage != storyv1.Stage_STAGE_REQUESTED {
			return nil, nil
		}
		return []proto.Message{&storyv1.TextExtracted{StoryId: s.ID, Text: es.Truncate(c.Text, MaxTextBytes),
			Lang: c.Lang, Confidence: c.Confidence, Words: c.Words}}, nil
	case RecordSpeech:
		if s.Stage != storyv1.Stage_STAGE_TEXT_EXTRACTED {
			return nil, nil
		}
		return []proto.Message{&storyv1.SpeechSynthesized{StoryId: s.ID, Audio: media.RefToProto(c.Audio),
			DurationMs: c.Duration.Milliseconds()}}, nil
	case Fail:
		if s.Stage == storyv1.Stage_STAGE_FAILED || s.Stage == storyv1.Stage_STAGE_NOTIFIED || s.Stage == storyv1.Stage_STAGE_SPEECH_SYNTHESIZED {
			return nil, nil
		}
		return []proto.Message{&storyv1.StoryFailed{StoryId: s.ID, Stage: c.Stage, Reason: es.Truncate(c.Reason, MaxReasonBytes)}}, nil
	case MarkNotified:
		if !s.Done() || s.Channel != "" {
			return nil, nil
		}
		return []proto.Message{&storyv1.UserNotified{StoryId: s.ID, Channel: c.Channel, Recipient: c.Recipient}}, nil
	}
	return nil, fmt.Errorf("story: unknown command %T", cmd)
}

func evolve(s Story, ev proto.Message) Story {
	switch e := ev.(type) {
	case *storyv1.StoryRequested:
		s = Story{ID: e.StoryId, UserID: e.UserId, Image: media.RefFromProto(e.Image), Langs: e.Langs,
			Stage: storyv1.Stage_STAGE_REQUESTED, RequestedAt: e.RequestedAt.AsTime()}
		if e.BatchId != "" {
			s.Batches = []string{e.BatchId}
		}
	case *storyv1.StoryAddedToBatch:
		s.Batches = append(slices.Clip(s.Batches), e.BatchId)
	case *storyv1.TextExtracted:
		s.Stage, s.Text, s.Lang, s.Confidence, s.Words = storyv1.Stage_STAGE_TEXT_EXTRACTED, e.Text, e.Lang, e.Confidence, e.Words
	case *storyv1.SpeechSynthesized:
		s.Stage, s.Audio, s.Duration = storyv1.Stage_STAGE_SPEECH_SYNTHESIZED, media.RefFromProto(e.Audio), time.Duration(e.DurationMs)*time.Millisecond
	case *storyv1.StoryFailed:
		s.Stage, s.FailedStage, s.Failure = storyv1.Stage_STAGE_FAILED, e.Stage, e.Reason
	case *storyv1.UserNotified:
		s.Channel = e.Channel
		if s.Stage != storyv1.Stage_STAGE_FAILED {
			s.Stage = storyv1.Stage_STAGE_NOTIFIED
		}
	}
	return s
}

// Batch is a bulk request's state.
type Batch struct {
	ID       string
	UserID   string
	Stories  []string
	Images   []media.BlobRef
	Langs    []string
	Notified bool
}

// BatchCommand is RequestBatch or MarkBatchNotified.
type BatchCommand interface{ isBatchCommand() }

// RequestBatch starts a bulk request.
type RequestBatch struct {
	UserID string
	Images []media.BlobRef
	Langs  []string
	Now    time.Time
}

// MarkBatchNotified records the batch's combined message.
type MarkBatchNotified struct{ Channel, Recipient string }

func (RequestBatch) isBatchCommand()      {}
func (MarkBatchNotified) isBatchCommand() {}

// BatchDecider is the bulk request aggregate.
var BatchDecider = es.Decider[Batch, BatchCommand]{
	Initial: func() Batch { return Batch{} },
	Decide: func(b Batch, cmd BatchCommand) ([]proto.Message, error) {
		switch c := cmd.(type) {
		case RequestBatch:
			if b.ID != "" {
				return nil, nil
			}
			ids := make([]string, len(c.Images))
			imgs := make([]*mediav1.BlobRef, len(c.Images))
			for i, img := range c.Images {
				ids[i], imgs[i] = StoryID(c.UserID, img.SHA256), media.RefToProto(img)
			}
			return []proto.Message{&storyv1.BatchRequested{BatchId: BatchID(c.UserID, ids), UserId: c.UserID,
				StoryIds: ids, Images: imgs, Langs: c.Langs, RequestedAt: timestamppb.New(c.Now)}}, nil
		case MarkBatchNotified:
			if b.ID == "" {
				return nil, es.Errorf(es.NotFound, "no such batch")
			}
			if b.Notified {
				return nil, nil
			}
			return []proto.Message{&storyv1.BatchNotified{BatchId: b.ID, Channel: c.Channel, Recipient: c.Recipient}}, nil
		}
		return nil, fmt.Errorf("story: unknown batch command %T", cmd)
	},
	Evolve: func(b Batch, ev proto.Message) Batch {
		switch e := ev.(type) {
		case *storyv1.BatchRequested:
			b = Batch{ID: e.BatchId, UserID: e.UserId, Stories: e.StoryIds, Langs: e.Langs}
			for _, img := range e.Images {
				b.Images = append(b.Images, media.RefFromProto(img))
			}
		case *storyv1.BatchNotified:
			b.Notified = true
		}
		return b
	},
}

// Notifications are where a user is told, in plain: what they set, and
// what reactions read (Service.Notifications). Forgotten: the user's
// personal data key was deleted, so nothing may be sent to them (Email
// and SlackWebhook are then empty).
type Notifications struct {
	Email, SlackWebhook string
	Forgotten           bool
}

// Settings are a user's notification settings as their events have
// them: the address sealed with the user's personal data key
// (domain/personal), never in plain.
type Settings struct {
	EmailSealed []byte
	// PlainEmail is the address of a NotificationsSet written before
	// email_sealed existed: read for compatibility, never written.
	PlainEmail   string
	SlackWebhook string
}

// SetNotifications records a user's settings; EmailSealed is the address
// sealed (nil: none).
type SetNotifications struct {
	EmailSealed  []byte
	SlackWebhook string
}

// NotificationsDecider holds a user's notification settings. It records
// every SetNotifications: whether a sealed address is the one already
// set only the user's key can tell, so Service.SetNotifications asks.
var NotificationsDecider = es.Decider[Settings, SetNotifications]{
	Initial: func() Settings { return Settings{} },
	Decide: func(_ Settings, c SetNotifications) ([]proto.Message, error) {
		return []proto.Message{&storyv1.NotificationsSet{EmailSealed: c.EmailSealed, SlackWebhook: c.SlackWebhook}}, nil
	},
	Evolve: func(cur Settings, ev proto.Message) Settings {
		if e, ok := ev.(*storyv1.NotificationsSet); ok {
			return Settings{EmailSealed: e.EmailSealed, PlainEmail: e.Email, SlackWebhook: e.SlackWebhook}
		}
		return cur
	},
}

// ValidateNotifications checks an e-mail address (normalised: trimmed,
// the domain lower-cased) and a Slack webhook URL (https, Slack's hosts
// or any https host for self-hosted relays); both may be empty.
func ValidateNotifications(n Notifications) (Notifications, error) {
	n.Email = strings.TrimSpace(n.Email)
	if n.Email != "" {
		if len(n.Email) > MaxEmailBytes {
			return n, es.Invalidf("email", "must be at most %d bytes", MaxEmailBytes)
		}
		a, err := mail.ParseAddress(n.Email)
		if err != nil || a.Name != "" || a.Address != n.Email {
			return n, es.Invalidf("email", "must be a plain address like name@example.com")
		}
		local, domain, _ := strings.Cut(a.Address, "@")
		if !strings.Contains(domain, ".") {
			return n, es.Invalidf("email", "must have a domain with a dot, got %q", domain)
		}
		n.Email = local + "@" + strings.ToLower(domain)
	}
	n.SlackWebhook = strings.TrimSpace(n.SlackWebhook)
	if n.SlackWebhook != "" {
		if len(n.SlackWebhook) > MaxWebhookBytes {
			return n, es.Invalidf("slack_webhook", "must be at most %d bytes", MaxWebhookBytes)
		}
		u, err := url.Parse(n.SlackWebhook)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil {
			return n, es.Invalidf("slack_webhook", "must be an https URL like https://hooks.slack.com/services/...")
		}
	}
	return n, nil
}

// ValidateLangs checks page languages (a subset of Langs) and returns
// them sorted and without repeats; empty means all.
func ValidateLangs(langs []string) ([]string, error) {
	out := make([]string, 0, len(langs))
	for i, l := range langs {
		if !slices.Contains(Langs, l) {
			return nil, es.Invalidf(fmt.Sprintf("langs[%d]", i), "must be one of %s, got %q", strings.Join(Langs, ", "), l)
		}
		if !slices.Contains(out, l) {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return out, nil
}

// Mask hides a recipient for events and logs: of an e-mail address all
// but its domain ("kim@example.com" → "***@example.com"), so that the
// events hold nothing of the address a forgetting could not erase; of a
// webhook all but its host.
func Mask(channel, recipient string) string {
	switch channel {
	case "email":
		_, domain, ok := strings.Cut(recipient, "@")
		if !ok {
			return "***"
		}
		return "***@" + domain
	case "slack":
		if u, err := url.Parse(recipient); err == nil {
			return u.Host
		}
	}
	return ""
}

// MayUse returns ErrNotStoryUser unless p may use storytime: people
// (walkers, riders, labelers, enterprises, admins), not devices or
// services.
func MayUse(p auth.Principal) error {
	if !p.Person() {
		return ErrNotStoryUser
	}
	return nil
}
