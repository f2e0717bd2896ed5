// Package transcription is the lecture context (seed HEARUS): a lecture's
// speech becomes its transcript as it is given, one event per final
// segment, and the transcript can be restructured into paragraphs with
// their key words highlighted, in versions (a better engine later makes
// a new version; the old ones stay in the events).
//
// Lecture ids are chosen by their owner and scoped to them: two users'
// lectures of the same id are two lectures (the stream's id is derived
// from both), so nobody can read, continue or squat another's lecture.
package transcription

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/media"
	transcriptionv1 "github.com/tideline/tideline/schemas/gen/tideline/transcription/v1"
)

// Bucket is the blob bucket of uploaded recordings.
const Bucket = "lectures"

// Limits of input.
const (
	MaxTitleBytes     = 200
	MaxSegments       = 20000     // ~ 10 hours of speech
	MaxSegmentBytes   = 4 << 10   // text of one segment
	MaxRecordingBytes = 200 << 20 // ~ 1.8 hours of 16 kHz mono WAV
	MaxReasonBytes    = 500
)

// Langs are the languages a lecture may be in.
var Langs = []string{"en", "ko"}

// Stream returns the stream of owner's lecture id.
func Stream(owner, id string) es.StreamID {
	return es.StreamID{Context: "transcription", Type: "lecture", ID: es.DigestID("l", owner, id)}
}

// UploadPrefix is the prefix of user's recording uploads.
func UploadPrefix(user string) string { return es.DigestID("r", "recording", user)[:14] + "-" }

// Segment is a final stretch of a transcript.
type Segment struct {
	Index      int32
	Start, End time.Duration
	Text       string
	Confidence float64
}

// Version is a restructured transcript.
type Version struct {
	Version    int32
	Engine     string
	Paragraphs []media.Paragraph
}

// Lecture is a lecture's state.
type Lecture struct {
	ID, Owner, Title, Lang string
	Recording              media.BlobRef
	StartedAt              time.Time
	Segments               []Segment
	Ended                  bool
	Duration               time.Duration
	Failure                string
	// Requested is the last version asked for, of RequestedEngine over
	// RequestedSegments segments; Latest the last one made.
	Requested          int32
	RequestedEngine    string
	RequestedSegments  int32
	Latest             *Version
	RestructureFailure string
}

// Exists reports whether the lecture was started.
func (l Lecture) Exists() bool { return l.ID != "" }

// Restructuring reports whether a requested version is not made yet.
func (l Lecture) Restructuring() bool {
	return l.Requested > 0 && (l.Latest == nil || l.Latest.Version < l.Requested) && l.RestructureFailure == ""
}

// Command is one of Start, AddSegment, End, Fail, RequestRestructure,
// RecordRestructured, FailRestructure.
type Command interface{ isCommand() }

// Start opens a lecture, or continues it when it exists and has not
// ended.
type Start struct {
	ID, Owner, Title, Lang string
	Recording              media.BlobRef
	Now                    time.Time
}

// AddSegment appends a final segment; its index is the lecture's next.
type AddSegment struct {
	Start, End time.Duration
	Text       string
	Confidence float64
}

// End closes the lecture at Duration.
type End struct{ Duration time.Duration }

// Fail says a recording could not be transcribed.
type Fail struct{ Reason string }

// RequestRestructure asks for a version by Engine.
type RequestRestructure struct{ Engine string }

// RecordRestructured records a made version.
type RecordRestructured struct {
	Version    int32
	Engine     string
	Paragraphs []media.Paragraph
}

// FailRestructure records that a version could not be made.
type FailRestructure struct {
	Version int32
	Reason  string
}

func (Start) isCommand()              {}
func (AddSegment) isCommand()         {}
func (End) isCommand()                {}
func (Fail) isCommand()               {}
func (RequestRestructure) isCommand() {}
func (RecordRestructured) isCommand() {}
func (FailRestructure) isCommand()    {}

// Errors of the lecture's rules.
var (
	ErrLectureNotFound = &es.Error{Kind: es.NotFound, Message: "no such lecture"}
	ErrLectureEnded    = &es.Error{Kind: es.FailedPrecondition, Message: "the lecture has ended: stream a new lecture_id"}
	ErrNoSegments      = &es.Error{Kind: es.FailedPrecondition, Message: "the lecture has no transcript yet"}
	ErrTooManySegments = &es.Error{Kind: es.ResourceExhausted, Message: fmt.Sprintf("a lecture holds at most %d segments", MaxSegments)}
)

// Decider is the lecture aggregate.
var Decider = es.Decider[Lecture, Command]{
	Initial: func() Lecture { return Lecture{} },
	Decide:  decide,
	Evolve:  evolve,
}

func decide(l Lecture, cmd Command) ([]proto.Message, error) {
	if c, ok := cmd.(Start); ok {
		switch {
		case !l.Exists():
			ev := &transcriptionv1.LectureStarted{LectureId: c.ID, OwnerId: c.Owner, Title: c.Title, Lang: c.Lang,
				StartedAt: timestamppb.New(c.Now)}
			if c.Recording.Name != "" {
				ev.Recording = media.RefToProto(c.Recording)
			}
			return []proto.Message{ev}, nil
		case l.Ended || l.Failure != "":
			return nil, ErrLectureEnded
		}
		return nil, nil
	}
	if !l.Exists() {
		return nil, ErrLectureNotFound
	}
	switch c := cmd.(type) {
	case AddSegment:
		if l.Ended || l.Failure != "" {
			return nil, ErrLectureEnded
		}
		if len(l.Segments) >= MaxSegments {
			return nil, ErrTooManySegments
		}
		return []proto.Message{&transcriptionv1.SegmentTranscribed{LectureId: l.ID, Index: int32(len(l.Segments)),
			StartMs: c.Start.Milliseconds(), EndMs: c.End.Milliseconds(), Text: es.Truncate(c.Text, MaxSegmentBytes), Confidence: c.Confidence}}, nil
	case End:
		if l.Ended || l.Failure != "" {
			return nil, nil
		}
		return []proto.Message{&transcriptionv1.LectureEnded{LectureId: l.ID, DurationMs: c.Duration.Milliseconds(), Segments: int32(len(l.Segments))}}, nil
	case Fail:
		if l.Ended || l.Failure != "" {
			return nil, nil
		}
		return []proto.Message{&transcriptionv1.LectureFailed{LectureId: l.ID, Reason: es.Truncate(c.Reason, MaxReasonBytes)}}, nil
	case RequestRestructure:
		if len(l.Segments) == 0 {
			return nil, ErrNoSegments
		}
		if l.Requested > 0 && l.RequestedEngine == c.Engine && int(l.RequestedSegments) == len(l.Segments) && l.RestructureFailure == "" {
			return nil, nil // already asked for (or made) over the same transcript
		}
		return []proto.Message{&transcriptionv1.RestructureRequested{LectureId: l.ID, Version: l.Requested + 1,
			Engine: c.Engine, Segments: int32(len(l.Segments))}}, nil
	case RecordRestructured:
		if c.Version != l.Requested || l.Latest != nil && l.Latest.Version >= c.Version {
			return nil, nil // superseded or made already
		}
		ps := make([]*transcriptionv1.Paragraph, len(c.Paragraphs))
		for i, p := range c.Paragraphs {
			ps[i] = &transcriptionv1.Paragraph{Sentences: p.Sentences, Highlights: p.Highlights}
		}
		return []proto.Message{&transcriptionv1.LectureRestructured{LectureId: l.ID, Version: c.Version, Engine: c.Engine, Paragraphs: ps}}, nil
	case FailRestructure:
		if c.Version != l.Requested || l.RestructureFailure != "" || l.Latest != nil && l.Latest.Version >= c.Version {
			return nil, nil
		}
		return []proto.Message{&transcriptionv1.RestructureFailed{LectureId: l.ID, Version: c.Version, Reason: es.Truncate(c.Reason, MaxReasonBytes)}}, nil
	}
	return nil, fmt.Errorf("transcription: unknown command %T", cmd)
}

func evolve(l Lecture, ev proto.Message) Lecture {
	switch e := ev.(type) {
	case *transcriptionv1.LectureStarted:
		l = Lecture{ID: e.LectureId, Owner: e.OwnerId, Title: e.Title, Lang: e.Lang,
			Recording: media.RefFromProto(e.Recording), StartedAt: e.StartedAt.AsTime()}
	case *transcriptionv1.SegmentTranscribed:
		l.Segments = append(l.Segments, Segment{Index: e.Index, Start: time.Duration(e.StartMs) * time.Millisecond,
			End: time.Duration(e.EndMs) * time.Millisecond, Text: e.Text, Confidence: e.Confidence})
		l.Duration = max(l.Duration, time.Duration(e.EndMs)*time.Millisecond)
	case *transcriptionv1.LectureEnded:
		l.Ended, l.Duration = true, max(l.Duration, time.Duration(e.DurationMs)*time.Millisecond)
	case *transcriptionv1.LectureFailed:
		l.Failure = e.Reason
	case *transcriptionv1.RestructureRequested:
		l.Requested, l.RequestedEngine, l.RequestedSegments, l.RestructureFailure = e.Version, e.Engine, e.Segments, ""
	case *transcriptionv1.LectureRestructured:
		v := &Version{Version: e.Version, Engine: e.Engine}
		for _, p := range e.Paragraphs {
			v.Paragraphs = append(v.Paragraphs, media.Paragraph{Sentences: p.Sentences, Highlights: p.Highlights})
		}
		l.Latest = v
	case *transcriptionv1.RestructureFailed:
		l.RestructureFailure = e.Reason
	}
	return l
}

// Sentences returns the transcript as sentences for restructuring: each
// segment's text (the local engine hears no punctuation, so a segment,
// an utterance between pauses, is the sentence), or the text split at
// sentence ends where the engine gave punctuation.
func (l Lecture) Sentences() []string {
	var out []string
	for _, s := range l.Segments {
		for _, part := range splitSentences(s.Text) {
			out = append(out, part)
		}
	}
	return out
}

func splitSentences(text string) []string {
	var out []string
	start := 0
	for i, r := range text {
		if r == '.' || r == '?' || r == '!' || r == '。' {
			if s := strings.TrimSpace(text[start : i+utf8.RuneLen(r)]); s != "" {
				out = append(out, s)
			}
			start = i + utf8.RuneLen(r)
		}
	}
	if s := strings.TrimSpace(text[start:]); s != "" {
		out = append(out, s)
	}
	return out
}

// MayUse returns Forbidden unless p may use transcription: people, not
// devices or services.
func MayUse(p auth.Principal) error {
	if !p.Person() {
		return es.Errorf(es.Forbidden, "devices and services may not use transcription")
	}
	return nil
}

// ValidateStart checks a lecture's id, title and language (default "en").
func ValidateStart(id, title, lang string) (string, error) {
	if err := es.ValidateToken("lecture_id", id); err != nil {
		return "", err
	}
	if len(title) > MaxTitleBytes || !utf8.ValidString(title) {
		return "", es.Invalidf("title", "must be at most %d bytes of UTF-8", MaxTitleBytes)
	}
	if lang == "" {
		lang = "en"
	}
	for _, l := range Langs {
		if l == lang {
			return lang, nil
		}
	}
	return "", es.Invalidf("lang", "must be one of %v, got %q", Langs, lang)
}
