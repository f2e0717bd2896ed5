package story

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/media"
	"github.com/tideline/tideline/domain/personal"
)

// Service runs storytime's commands against an event store, reading
// uploads' references from blob storage. Safe for concurrent use.
type Service struct {
	stories *es.Repository[Story, Command]
	batches *es.Repository[Batch, BatchCommand]
	users   *es.Repository[Settings, SetNotifications]
	data    personal.Data
	blobs   media.Blobs
	now     func() time.Time
}

// NewService returns a service over store and blobs, sealing users'
// notification addresses with their keys in keys. now is the clock; nil
// means time.Now.
func NewService(store es.Store, blobs media.Blobs, keys personal.Keys, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{
		stories: es.NewRepository(store, Decider, 0),
		batches: es.NewRepository(store, BatchDecider, 1000),
		users:   es.NewRepository(store, NotificationsDecider, 0),
		data:    personal.Data{Keys: keys},
		blobs:   blobs, now: now,
	}
}

// ErrNotStoryUser is returned to principals that may not use storytime.
var ErrNotStoryUser = &es.Error{Kind: es.Forbidden, Message: "only people may use storytime: not devices, services or metrics tokens"}

// upload returns the reference of p's upload name, checking it is p's,
// was uploaded, and is a page image.
func (s *Service) upload(ctx context.Context, p auth.Principal, field, name string) (media.BlobRef, error) {
	if err := es.ValidateToken(field, name); err != nil {
		return media.BlobRef{}, err
	}
	if len(name) <= len(UploadPrefix(p.Subject)) || name[:len(UploadPrefix(p.Subject))] != UploadPrefix(p.Subject) {
		return media.BlobRef{}, es.Invalidf(field, "is not an upload issued to you (CreateUploads issues them)")
	}
	ref, err := s.blobs.Stat(ctx, Bucket, name)
	if errors.Is(err, media.ErrNotFound) {
		return media.BlobRef{}, &es.Error{Kind: es.FailedPrecondition, Field: field, Message: "nothing was uploaded to it yet: PUT the image to its url first"}
	}
	if err != nil {
		return media.BlobRef{}, es.Wrap(es.Unavailable, "blob storage", err)
	}
	if !slices.Contains(ImageTypes, ref.ContentType) {
		return media.BlobRef{}, es.Invalidf(field, "holds %q; a page must be one of %v", ref.ContentType, ImageTypes)
	}
	if ref.Size <= 0 || ref.Size > MaxImageBytes {
		return media.BlobRef{}, es.Invalidf(field, "holds %d bytes; a page image must be 1..%d", ref.Size, MaxImageBytes)
	}
	return ref, nil
}

func meta(p auth.Principal, source string) es.AppendOptions {
	return es.AppendOptions{Meta: es.Metadata{Actor: p.String(), Source: source}}
}

// Request starts p's story of the upload named uploadName. When p had
// requested the same image before, it returns that story with duplicate
// true and appends nothing. Errors: Forbidden for devices and services;
// Invalid naming upload_name or langs; FailedPrecondition when nothing
// was uploaded; store errors.
func (s *Service) Request(ctx context.Context, p auth.Principal, uploadName string, langs []string) (id string, res es.AppendResult, duplicate bool, err error) {
	if err := MayUse(p); err != nil {
		return "", es.AppendResult{}, false, err
	}
	if langs, err = ValidateLangs(langs); err != nil {
		return "", es.AppendResult{}, false, err
	}
	ref, err := s.upload(ctx, p, "upload_name", uploadName)
	if err != nil {
		return "", es.AppendResult{}, false, err
	}
	id = StoryID(p.Subject, ref.SHA256)
	cur, version, err := s.stories.Get(ctx, Stream(id))
	if err != nil {
		return "", es.AppendResult{}, false, err
	}
	if cur.Stage != 0 {
		return id, es.AppendResult{Position: es.Position{Seq: version}}, true, nil
	}
	res, err = s.stories.Handle(ctx, Stream(id), Request{UserID: p.Subject, Image: ref, Langs: langs, Now: s.now()}, meta(p, "api"))
	return id, res, false, err
}

// RequestBatch starts p's stories of several uploads (1..MaxBatch) as one
// batch, recorded in one commit; a reaction then requests each story
// (Fanout). The same request again is the same batch: duplicate true,
// nothing appended.
func (s *Service) RequestBatch(ctx context.Context, p auth.Principal, uploadNames []string, langs []string) (b Batch, res es.AppendResult, duplicate bool, err error) {
	if err := MayUse(p); err != nil {
		return Batch{}, es.AppendResult{}, false, err
	}
	if len(uploadNames) == 0 || len(uploadNames) > MaxBatch {
		return Batch{}, es.AppendResult{}, false, es.Invalidf("upload_names", "must name 1..%d uploads, got %d", MaxBatch, len(uploadNames))
	}
	if langs, err = ValidateLangs(langs); err != nil {
		return Batch{}, es.AppendResult{}, false, err
	}
	images := make([]media.BlobRef, len(uploadNames))
	ids := make([]string, len(uploadNames))
	for i, name := range uploadNames {
		if images[i], err = s.upload(ctx, p, fmt.Sprintf("upload_names[%d]", i), name); err != nil {
			return Batch{}, es.AppendResult{}, false, err
		}
		ids[i] = StoryID(p.Subject, images[i].SHA256)
	}
	stream := BatchStream(BatchID(p.Subject, ids))
	cur, version, err := s.batches.Get(ctx, stream)
	if err != nil {
		return Batch{}, es.AppendResult{}, false, err
	}
	if cur.ID != "" {
		return cur, es.AppendResult{Position: es.Position{Seq: version}}, true, nil
	}
	res, err = s.batches.Handle(ctx, stream, RequestBatch{UserID: p.Subject, Images: images, Langs: langs, Now: s.now()}, meta(p, "api"))
	if err != nil {
		return Batch{}, es.AppendResult{}, false, err
	}
	b, _, err = s.batches.Get(ctx, stream)
	return b, res, false, err
}

// reaction is the principal reactions act as.
var reaction = auth.Principal{Role: auth.Service, Subject: "story"}

// Fanout requests each story of batch b, or adds an existing one to it.
// Idempotent.
func (s *Service) Fanout(ctx context.Context, b Batch) error {
	for i, img := range b.Images {
		_, err := s.stories.Handle(ctx, Stream(b.Stories[i]),
			Request{UserID: b.UserID, Image: img, Langs: b.Langs, Batch: b.ID, Now: s.now()}, meta(reaction, "reaction"))
		if err != nil {
			return fmt.Errorf("story %s of batch %s: %w", b.Stories[i], b.ID, err)
		}
	}
	return nil
}

// Advance runs a stage command (RecordText, RecordSpeech, Fail,
// MarkNotified) of a reaction on story id; a stage already past appends
// nothing.
func (s *Service) Advance(ctx context.Context, id string, cmd Command) (es.AppendResult, error) {
	if _, ok := cmd.(Request); ok {
		return es.AppendResult{}, errors.New("story: Advance does not take Request")
	}
	return s.stories.Handle(ctx, Stream(id), cmd, meta(reaction, "reaction"))
}

// Story returns story id as the store has it now, and its version, for
// reactions (no access check): never a state older than a commit a
// reaction was handed. ErrStoryNotFound when it does not exist.
func (s *Service) Story(ctx context.Context, id string) (Story, uint64, error) {
	return s.story(ctx, id, es.Latest)
}

func (s *Service) story(ctx context.Context, id string, at uint64) (Story, uint64, error) {
	if err := es.ValidateToken("story_id", id); err != nil {
		return Story{}, 0, err
	}
	st, version, err := s.stories.GetAt(ctx, Stream(id), at)
	if err != nil {
		return Story{}, 0, err
	}
	if st.Stage == 0 {
		return Story{}, 0, ErrStoryNotFound
	}
	return st, version, nil
}

// Get returns story id as p may see it: their own, or any for admin.
// Another user's story is ErrStoryNotFound, as if it did not exist.
func (s *Service) Get(ctx context.Context, p auth.Principal, id string) (Story, uint64, error) {
	if err := MayUse(p); err != nil {
		return Story{}, 0, err
	}
	st, version, err := s.story(ctx, id, 0) // this process's writes are in the cache
	if err != nil {
		return Story{}, 0, err
	}
	if p.Role != auth.Admin && st.UserID != p.Subject {
		return Story{}, 0, ErrStoryNotFound
	}
	return st, version, nil
}

// Batch returns batch id as the store has it now.
func (s *Service) Batch(ctx context.Context, id string) (Batch, error) {
	b, _, err := s.batches.GetAt(ctx, BatchStream(id), es.Latest)
	if err == nil && b.ID == "" {
		err = es.Errorf(es.NotFound, "no such batch")
	}
	return b, err
}

// MarkBatchNotified records batch id's combined message.
func (s *Service) MarkBatchNotified(ctx context.Context, id string, cmd MarkBatchNotified) error {
	_, err := s.batches.Handle(ctx, BatchStream(id), cmd, meta(reaction, "reaction"))
	return err
}

// SetNotifications sets where p is told, the address sealed with p's
// personal data key (made when p has none). The settings p has already
// append nothing. Errors: Forbidden; Invalid naming email or
// slack_webhook; FailedPrecondition once p's personal data was
// forgotten; Unavailable when the keys cannot be reached; store errors.
func (s *Service) SetNotifications(ctx context.Context, p auth.Principal, n Notifications) (es.AppendResult, error) {
	if err := MayUse(p); err != nil {
		return es.AppendResult{}, err
	}
	n, err := ValidateNotifications(Notifications{Email: n.Email, SlackWebhook: n.SlackWebhook})
	if err != nil {
		return es.AppendResult{}, err
	}
	stream := UserStream(p.Subject)
	if err := stream.Validate(); err != nil {
		return es.AppendResult{}, err
	}
	// The key is made even for no address, so that p's forgetting is
	// known to the reactions whichever channels p chose.
	var sealed []byte
	if n.Email != "" {
		sealed, err = s.data.Seal(ctx, p.Subject, n.Email)
	} else {
		_, err = s.data.Keys.Create(ctx, p.Subject)
	}
	if errors.Is(err, personal.ErrForgotten) {
		return es.AppendResult{}, es.Wrap(es.FailedPrecondition, "your personal data was forgotten", err)
	}
	if err != nil {
		return es.AppendResult{}, es.Wrap(es.Unavailable, "personal data keys", err)
	}
	cur, version, err := s.users.Get(ctx, stream)
	if err != nil {
		return es.AppendResult{}, err
	}
	if was, err := s.reveal(ctx, p.Subject, cur); err == nil && was == n {
		return es.AppendResult{Position: es.Position{Seq: version}}, nil
	}
	return s.users.Handle(ctx, stream, SetNotifications{EmailSealed: sealed, SlackWebhook: n.SlackWebhook}, meta(p, "api"))
}

// Notifications returns where user is told, as the store has it now, in
// plain; Forgotten (and nothing else) once their personal data key was
// deleted. A setting of before the addresses were sealed reads as it
// was written, unless the user is forgotten.
func (s *Service) Notifications(ctx context.Context, user string) (Notifications, error) {
	set, _, err := s.users.GetAt(ctx, UserStream(user), es.Latest)
	if err != nil {
		return Notifications{}, err
	}
	n, err := s.reveal(ctx, user, set)
	if errors.Is(err, personal.ErrForgotten) {
		return Notifications{Forgotten: true}, nil
	}
	return n, err
}

// reveal opens user's settings; an error wrapping personal.ErrForgotten
// once their key was deleted.
func (s *Service) reveal(ctx context.Context, user string, set Settings) (Notifications, error) {
	n := Notifications{Email: set.PlainEmail, SlackWebhook: set.SlackWebhook}
	if set.EmailSealed != nil {
		email, err := s.data.Reveal(ctx, user, set.EmailSealed)
		n.Email = email
		return n, err
	}
	if n == (Notifications{}) {
		return n, nil
	}
	forgotten, err := s.data.Forgotten(ctx, user)
	if forgotten {
		return Notifications{}, fmt.Errorf("user %s: %w", user, personal.ErrForgotten)
	}
	return n, err
}
