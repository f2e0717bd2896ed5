package transcription

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/media"
)

// Service runs lecture commands against an event store. Safe for
// concurrent use.
type Service struct {
	repo  *es.Repository[Lecture, Command]
	blobs media.Blobs
	now   func() time.Time
}

// NewService returns a service over store and blobs (the uploaded
// recordings). now is the clock; nil means time.Now.
func NewService(store es.Store, blobs media.Blobs, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{repo: es.NewRepository(store, Decider, 1000), blobs: blobs, now: now}
}

func opts(p auth.Principal, source string) es.AppendOptions {
	return es.AppendOptions{Meta: es.Metadata{Actor: p.String(), Source: source}}
}

// Open starts p's lecture id, or continues it when it has not ended, and
// returns it. Errors: Forbidden, Invalid naming lecture_id, title or
// lang, ErrLectureEnded, store errors.
func (s *Service) Open(ctx context.Context, p auth.Principal, id, title, lang string) (Lecture, uint64, error) {
	if err := MayUse(p); err != nil {
		return Lecture{}, 0, err
	}
	lang, err := ValidateStart(id, title, lang)
	if err != nil {
		return Lecture{}, 0, err
	}
	if _, err := s.repo.Handle(ctx, Stream(p.Subject, id), Start{ID: id, Owner: p.Subject, Title: title, Lang: lang, Now: s.now()}, opts(p, "api")); err != nil {
		return Lecture{}, 0, err
	}
	return s.repo.Get(ctx, Stream(p.Subject, id))
}

// Record runs a command on p's lecture id (AddSegment, End) and returns
// where it landed.
func (s *Service) Record(ctx context.Context, p auth.Principal, id string, cmd Command) (es.AppendResult, error) {
	return s.repo.Handle(ctx, Stream(p.Subject, id), cmd, opts(p, "api"))
}

// TranscribeRecording starts p's lecture id from an uploaded recording;
// a reaction transcribes it. The same request again appends nothing and
// says duplicate. Errors: as Open, plus Invalid or FailedPrecondition
// naming upload_name.
func (s *Service) TranscribeRecording(ctx context.Context, p auth.Principal, id, title, lang, upload string) (es.AppendResult, bool, error) {
	if err := MayUse(p); err != nil {
		return es.AppendResult{}, false, err
	}
	lang, err := ValidateStart(id, title, lang)
	if err != nil {
		return es.AppendResult{}, false, err
	}
	if err := es.ValidateToken("upload_name", upload); err != nil {
		return es.AppendResult{}, false, err
	}
	if !strings.HasPrefix(upload, UploadPrefix(p.Subject)) {
		return es.AppendResult{}, false, es.Invalidf("upload_name", "is not an upload issued to you (CreateUpload issues them)")
	}
	ref, err := s.blobs.Stat(ctx, Bucket, upload)
	if errors.Is(err, media.ErrNotFound) {
		return es.AppendResult{}, false, &es.Error{Kind: es.FailedPrecondition, Field: "upload_name", Message: "nothing was uploaded to it yet: PUT the recording to its url first"}
	}
	if err != nil {
		return es.AppendResult{}, false, es.Wrap(es.Unavailable, "blob storage", err)
	}
	cur, version, err := s.repo.Get(ctx, Stream(p.Subject, id))
	if err != nil {
		return es.AppendResult{}, false, err
	}
	if cur.Exists() {
		if cur.Recording.SHA256 != ref.SHA256 {
			return es.AppendResult{}, false, &es.Error{Kind: es.FailedPrecondition, Field: "lecture_id", Message: "already holds another lecture: choose a new lecture_id"}
		}
		return es.AppendResult{Position: es.Position{Seq: version}}, true, nil
	}
	res, err := s.repo.Handle(ctx, Stream(p.Subject, id), Start{ID: id, Owner: p.Subject, Title: title, Lang: lang, Recording: ref, Now: s.now()}, opts(p, "api"))
	return res, false, err
}

// Get returns p's lecture id; ErrLectureNotFound when p has none of
// that id.
func (s *Service) Get(ctx context.Context, p auth.Principal, id string) (Lecture, uint64, error) {
	if err := MayUse(p); err != nil {
		return Lecture{}, 0, err
	}
	if err := es.ValidateToken("lecture_id", id); err != nil {
		return Lecture{}, 0, err
	}
	return s.lecture(ctx, Stream(p.Subject, id), 0) // this process's writes are in the cache
}

// Lecture returns the lecture of stream as the store has it now, for
// reactions: never older than a commit a reaction was handed.
func (s *Service) Lecture(ctx context.Context, stream es.StreamID) (Lecture, uint64, error) {
	return s.lecture(ctx, stream, es.Latest)
}

func (s *Service) lecture(ctx context.Context, stream es.StreamID, at uint64) (Lecture, uint64, error) {
	l, version, err := s.repo.GetAt(ctx, stream, at)
	if err == nil && !l.Exists() {
		err = ErrLectureNotFound
	}
	return l, version, err
}

// Restructure asks for a new version of p's lecture id's paragraphs by
// engine. When one was asked for over the same transcript by the same
// engine, it returns that version with already true.
func (s *Service) Restructure(ctx context.Context, p auth.Principal, id, engine string) (version int32, already bool, res es.AppendResult, err error) {
	l, v, err := s.Get(ctx, p, id)
	if err != nil {
		return 0, false, es.AppendResult{}, err
	}
	res, err = s.repo.Handle(ctx, Stream(p.Subject, id), RequestRestructure{Engine: engine}, opts(p, "api"))
	if err != nil {
		return 0, false, es.AppendResult{}, err
	}
	if res.Position.Seq == v { // nothing appended
		return l.Requested, true, res, nil
	}
	l, _, err = s.Get(ctx, p, id)
	return l.Requested, false, res, err
}

// reaction is the principal reactions act as.
var reaction = auth.Principal{Role: auth.Service, Subject: "transcription"}

// Advance runs a reaction's command on the lecture of stream.
func (s *Service) Advance(ctx context.Context, stream es.StreamID, cmd Command) (es.AppendResult, error) {
	return s.repo.Handle(ctx, stream, cmd, opts(reaction, "reaction"))
}
