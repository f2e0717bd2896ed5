package reactions

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"time"
	"unicode"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/media"
	"github.com/tideline/tideline/domain/story"
	storyv1 "github.com/tideline/tideline/schemas/gen/tideline/story/v1"
)

// Storytime's reaction names: stable (each is a durable consumer). Each
// stage has its own consumer, so a slow OCR does not hold up speech or
// notifications, and each stage is a queue that drains in order.
const (
	StoryBatchName  = "story-batch"
	StoryReadName   = "story-ocr"
	StorySpeakName  = "story-tts"
	StoryNotifyName = "story-notify"
)

// StoryEngines are what storytime's reactions use.
type StoryEngines struct {
	Blobs   media.Blobs
	OCR     media.OCR
	Speaker media.Speaker
	Links   media.Links
	// Email and Slack deliver notifications; nil when not configured (a
	// user who chose that channel is then not told by it).
	Email, Slack media.Notifier
	// LinkTTL is how long a notification's audio link works; default 7 days.
	LinkTTL time.Duration
	// Attempts is how many times an engine that fails (not unavailable,
	// not refusing the input) is tried before the story fails; default 3.
	Attempts int
	// Concurrency is how many stories each engine stage works on at once;
	// default the number of CPUs.
	Concurrency int
	Logger      *slog.Logger
}

// StoryReactions are storytime's pipeline: fan a bulk request out into
// stories, read each page (OCR), speak its text (TTS), and tell the user.
//
// Each stage is idempotent (the story aggregate decides nothing for a
// stage already done), so redelivery and replay run no engine twice for
// a story that is past the stage. An engine that is not installed or not
// reachable (media.ErrUnavailable) is logged once and its stories wait:
// the commit is redelivered until the engine is back. Input the engine
// refuses (media.ErrUnusable) fails the story with the engine's reason;
// any other engine error is retried Attempts times, then fails the story
// with its reason. Nothing is dropped silently.
//
// A user whose personal data was forgotten (their key deleted) is told
// nothing: the story is recorded notified by "forgotten".
//
// Only telling the user notifies (Reaction.Notifies): the fan-out, OCR
// and speech run for a story however old its request, since the user
// still waits for it, and the story done now is news; a story that was
// done longer than Config.MaxAge ago is not told again.
func StoryReactions(svc *story.Service, e StoryEngines) []Reaction {
	if e.LinkTTL <= 0 {
		e.LinkTTL = 7 * 24 * time.Hour
	}
	if e.Attempts <= 0 {
		e.Attempts = 3
	}
	if e.Logger == nil {
		e.Logger = slog.Default()
	}
	if e.Concurrency <= 0 {
		e.Concurrency = runtime.NumCPU()
	}
	if e.OCR == nil {
		e.OCR = noOCR{}
	}
	if e.Speaker == nil {
		e.Speaker = noSpeaker{}
	}
	p := &storyPipeline{svc: svc, e: e, health: &engineHealth{logger: e.Logger}}
	return []Reaction{
		{Name: StoryBatchName, Subjects: []string{"ev.story.batch.>"}, Handle: p.fanout},
		{Name: StoryReadName, Subjects: []string{"ev.story.story.>"}, Handle: p.read, Concurrency: e.Concurrency},
		{Name: StorySpeakName, Subjects: []string{"ev.story.story.>"}, Handle: p.speak, Concurrency: e.Concurrency},
		{Name: StoryNotifyName, Subjects: []string{"ev.story.story.>"}, Handle: p.notify, Notifies: true},
	}
}

type storyPipeline struct {
	svc    *story.Service
	e      StoryEngines
	health *engineHealth
}

func (p *storyPipeline) fanout(ctx context.Context, c es.Commit) error {
	for _, ev := range c.Events {
		if b, ok := ev.Data.(*storyv1.BatchRequested); ok {
			batch, err := p.svc.Batch(ctx, b.BatchId)
			if err != nil {
				return fmt.Errorf("batch %s: %w", b.BatchId, err)
			}
			if err := p.svc.Fanout(ctx, batch); err != nil {
				return err
			}
		}
	}
	return nil
}

// stage runs one engine call for story id (see attempt): it returns nil
// when the story advanced or failed, and an error to have the commit
// retried.
func (p *storyPipeline) stage(ctx context.Context, engine, id string, stage storyv1.Stage, run func() (story.Command, error)) error {
	cmd, reason, err := attempt(ctx, p.health, p.e.Attempts, engine, id, run)
	if err != nil {
		return err
	}
	if reason != "" {
		cmd = story.Fail{Stage: stage, Reason: reason}
	}
	_, err = p.svc.Advance(ctx, id, cmd)
	return err
}

// storiesAt returns the ids of the stories whose events of the given
// types c holds.
func storiesAt(c es.Commit, match func(any) (string, bool)) []string {
	var ids []string
	for _, ev := range c.Events {
		if id, ok := match(ev.Data); ok {
			ids = append(ids, id)
		}
	}
	return ids
}

func (p *storyPipeline) read(ctx context.Context, c es.Commit) error {
	for _, id := range storiesAt(c, func(d any) (string, bool) {
		r, ok := d.(*storyv1.StoryRequested)
		return r.GetStoryId(), ok
	}) {
		st, _, err := p.svc.Story(ctx, id)
		if err != nil {
			return err
		}
		if st.Stage != storyv1.Stage_STAGE_REQUESTED {
			continue
		}
		err = p.stage(ctx, "ocr", id, storyv1.Stage_STAGE_TEXT_EXTRACTED, func() (story.Command, error) {
			img, err := readBlob(ctx, p.e.Blobs, st.Image, story.MaxImageBytes)
			if err != nil {
				return nil, err
			}
			page, err := p.e.OCR.Read(ctx, img, st.Langs)
			if err != nil {
				return nil, err
			}
			text := strings.TrimSpace(page.Text)
			if text == "" {
				return nil, fmt.Errorf("%w: no text found on the page", media.ErrUnusable)
			}
			var sum float64
			for _, w := range page.Words {
				sum += w.Confidence
			}
			conf := 0.0
			if len(page.Words) > 0 {
				conf = sum / float64(len(page.Words))
			}
			return story.RecordText{Text: text, Lang: page.Lang, Confidence: conf, Words: int32(len(page.Words))}, nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// SpeechLang picks the voice for text: Korean when at least a third of
// its letters are Hangul, else English.
func SpeechLang(text string) string {
	var letters, hangul int
	for _, r := range text {
		if unicode.IsLetter(r) {
			letters++
			if unicode.Is(unicode.Hangul, r) {
				hangul++
			}
		}
	}
	if letters > 0 && hangul*3 >= letters {
		return "ko"
	}
	return "en"
}

// speechName is the blob name of a story's speech.
func speechName(id string) string { return id + "-speech" }

func (p *storyPipeline) speak(ctx context.Context, c es.Commit) error {
	for _, id := range storiesAt(c, func(d any) (string, bool) {
		t, ok := d.(*storyv1.TextExtracted)
		return t.GetStoryId(), ok
	}) {
		st, _, err := p.svc.Story(ctx, id)
		if err != nil {
			return err
		}
		if st.Stage != storyv1.Stage_STAGE_TEXT_EXTRACTED {
			continue
		}
		err = p.stage(ctx, "tts", id, storyv1.Stage_STAGE_SPEECH_SYNTHESIZED, func() (story.Command, error) {
			audio, err := p.e.Speaker.Speak(ctx, st.Text, SpeechLang(st.Text))
			if err != nil {
				return nil, err
			}
			ref, err := p.e.Blobs.Put(ctx, story.Bucket, speechName(id), audio.ContentType,
				bytes.NewReader(audio.Data), int64(len(audio.Data)))
			if err != nil {
				if errors.Is(err, media.ErrUnusable) || errors.Is(err, media.ErrTooLarge) {
					return nil, fmt.Errorf("store speech: %w", err)
				}
				return nil, fmt.Errorf("store speech: %w", errors.Join(media.ErrUnavailable, err))
			}
			return story.RecordSpeech{Audio: ref, Duration: audio.Duration}, nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func (p *storyPipeline) notify(ctx context.Context, c es.Commit) error {
	for _, id := range storiesAt(c, func(d any) (string, bool) {
		switch e := d.(type) {
		case *storyv1.SpeechSynthesized:
			return e.StoryId, true
		case *storyv1.StoryFailed:
			return e.StoryId, true
		case *storyv1.StoryAddedToBatch:
			return e.StoryId, true
		}
		return "", false
	}) {
		st, _, err := p.svc.Story(ctx, id)
		if err != nil {
			return err
		}
		if !st.Done() {
			continue
		}
		if len(st.Batches) == 0 {
			if st.Channel != "" {
				continue
			}
			channel, recipient, err := p.send(ctx, st.UserID, []story.Story{st})
			if err != nil {
				return err
			}
			if _, err := p.svc.Advance(ctx, id, story.MarkNotified{Channel: channel, Recipient: recipient}); err != nil {
				return err
			}
			continue
		}
		for _, b := range st.Batches {
			if err := p.notifyBatch(ctx, b); err != nil {
				return err
			}
		}
	}
	return nil
}

// notifyBatch tells the user of batch id in one message once all its
// stories are done.
func (p *storyPipeline) notifyBatch(ctx context.Context, id string) error {
	b, err := p.svc.Batch(ctx, id)
	if err != nil {
		return fmt.Errorf("batch %s: %w", id, err)
	}
	if b.Notified {
		return nil
	}
	stories := make([]story.Story, 0, len(b.Stories))
	for _, sid := range b.Stories {
		st, _, err := p.svc.Story(ctx, sid)
		if es.KindOf(err) == es.NotFound {
			return nil // not fanned out yet: its own events will call again
		}
		if err != nil {
			return err
		}
		if !st.Done() {
			return nil
		}
		stories = append(stories, st)
	}
	channel, recipient, err := p.send(ctx, b.UserID, stories)
	if err != nil {
		return err
	}
	if err := p.svc.MarkBatchNotified(ctx, id, story.MarkBatchNotified{Channel: channel, Recipient: recipient}); err != nil {
		return err
	}
	for _, st := range stories {
		if _, err := p.svc.Advance(ctx, st.ID, story.MarkNotified{Channel: channel, Recipient: recipient}); err != nil {
			return err
		}
	}
	return nil
}

// send tells user about stories by every channel they chose and have a
// notifier. It returns the channels used ("email", "slack",
// "email,slack", "none" when none is set, "undeliverable" when every
// channel refused the message, "forgotten" when the user's personal data
// was forgotten: nothing is sent) and the masked recipients. An
// unavailable channel is an Unavailable error: the commit is retried
// later (the user may then be told twice by the channel that had worked).
func (p *storyPipeline) send(ctx context.Context, user string, stories []story.Story) (channel, recipient string, err error) {
	prefs, err := p.svc.Notifications(ctx, user)
	if err != nil {
		return "", "", err
	}
	if prefs.Forgotten {
		p.e.Logger.Info("story notification not sent: the user's personal data was forgotten", "user", user)
		return "forgotten", "", nil
	}
	msg, err := p.message(stories)
	if err != nil {
		return "", "", err
	}
	var used, masked, refused []string
	for _, ch := range []struct {
		name, to string
		n        media.Notifier
		rcpt     media.Recipient
	}{
		{"email", prefs.Email, p.e.Email, media.Recipient{Email: prefs.Email}},
		{"slack", prefs.SlackWebhook, p.e.Slack, media.Recipient{SlackWebhook: prefs.SlackWebhook}},
	} {
		if ch.to == "" {
			continue
		}
		if ch.n == nil {
			p.e.Logger.Warn("story notification channel not configured", "channel", ch.name, "user", user)
			continue
		}
		m := msg
		m.To = ch.rcpt
		err := ch.n.Notify(ctx, m)
		switch {
		case err == nil:
			used, masked = append(used, ch.name), append(masked, story.Mask(ch.name, ch.to))
		case errors.Is(err, media.ErrUnusable):
			p.e.Logger.Warn("story notification refused", "channel", ch.name, "to", story.Mask(ch.name, ch.to), "err", err)
			refused = append(refused, ch.name)
		default:
			return "", "", es.Wrap(es.Unavailable, "notify by "+ch.name, err)
		}
	}
	switch {
	case len(used) > 0:
		return strings.Join(used, ","), strings.Join(masked, ","), nil
	case len(refused) > 0:
		return "undeliverable", "", nil
	}
	return "none", "", nil
}

func (p *storyPipeline) message(stories []story.Story) (media.Message, error) {
	var m media.Message
	var b strings.Builder
	ready := 0
	for i, st := range stories {
		if len(stories) > 1 {
			fmt.Fprintf(&b, "Page %d: ", i+1)
		}
		if st.Stage == storyv1.Stage_STAGE_FAILED {
			fmt.Fprintf(&b, "we could not read it aloud: %s\n", st.Failure)
			continue
		}
		ready++
		url, _, err := p.e.Links.DownloadURL(st.Audio, p.e.LinkTTL)
		if err != nil {
			return m, fmt.Errorf("audio link of %s: %w", st.ID, err)
		}
		title := "Listen"
		if len(stories) > 1 {
			title = fmt.Sprintf("Listen to page %d", i+1)
		}
		m.Links = append(m.Links, media.Link{Title: title, URL: url})
		fmt.Fprintf(&b, "%s\n", excerpt(st.Text, 120))
	}
	switch {
	case ready == len(stories):
		m.Subject = "Your story is ready"
	case ready == 0:
		m.Subject = "We could not read your story"
	default:
		m.Subject = fmt.Sprintf("%d of %d pages are ready", ready, len(stories))
	}
	if ready > 0 {
		fmt.Fprintf(&b, "The links work for %s.\n", humanDuration(p.e.LinkTTL))
	}
	m.Text = b.String()
	return m, nil
}

func excerpt(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	r := []rune(s)
	if len(r) <= n {
		return "“" + s + "”"
	}
	return "“" + string(r[:n]) + "…”"
}

// humanDuration says d in days or hours.
func humanDuration(d time.Duration) string {
	switch {
	case d >= 48*time.Hour && d%(24*time.Hour) == 0:
		return fmt.Sprintf("%d days", d/(24*time.Hour))
	case d >= 2*time.Hour && d%time.Hour == 0:
		return fmt.Sprintf("%d hours", d/time.Hour)
	}
	return d.String()
}

// noOCR and noSpeaker stand for engines the server was not given: their
// stories wait, as for an engine that is not installed.
type (
	noOCR     struct{}
	noSpeaker struct{}
)

func (noOCR) Read(context.Context, []byte, []string) (media.Page, error) {
	return media.Page{}, fmt.Errorf("%w: no OCR engine configured", media.ErrUnavailable)
}

func (noSpeaker) Speak(context.Context, string, string) (media.Audio, error) {
	return media.Audio{}, fmt.Errorf("%w: no speech engine configured", media.ErrUnavailable)
}
