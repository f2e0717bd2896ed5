package api

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"net/http"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/media"
	"github.com/tideline/tideline/domain/story"
	storymodel "github.com/tideline/tideline/projections/story"
	storyv1 "github.com/tideline/tideline/schemas/gen/tideline/story/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/story/v1/storyv1connect"
)

// StoryTTLs are how long storytime's signed links work.
type StoryTTLs struct {
	Upload time.Duration // an upload URL; default 15 minutes
	Audio  time.Duration // an audio link in GetStory; default 1 hour
}

// StoryServices serves tideline.story.v1.StoryService over svc, the
// stories list and its runner, and links (signed upload and audio URLs).
func StoryServices(svc *story.Service, list *storymodel.Model, listFeed ReadModel, links media.Links, ttls StoryTTLs) []Service {
	if ttls.Upload <= 0 {
		ttls.Upload = 15 * time.Minute
	}
	if ttls.Audio <= 0 {
		ttls.Audio = time.Hour
	}
	return []Service{{Name: storyv1connect.StoryServiceName, mount: func(rt *runtime, opts connect.HandlerOption) (string, http.Handler) {
		return storyv1connect.NewStoryServiceHandler(&storyHandler{rt: rt, svc: svc, list: list, listFeed: listFeed, links: links, ttls: ttls}, opts)
	}}}
}

type storyHandler struct {
	rt       *runtime
	svc      *story.Service
	list     *storymodel.Model
	listFeed ReadModel
	links    media.Links
	ttls     StoryTTLs
}

const maxStoryList = 100

// uploadName is a new upload's name: the owner's prefix and 120 random
// bits, so that nobody guesses another's upload.
func uploadName(prefix string) string {
	var r [15]byte
	rand.Read(r[:])
	return prefix + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(r[:]))
}

func (h *storyHandler) CreateUploads(ctx context.Context, req *connect.Request[storyv1.CreateUploadsRequest]) (*connect.Response[storyv1.CreateUploadsResponse], error) {
	p := caller(ctx)
	if err := story.MayUse(p); err != nil {
		return nil, err
	}
	n := int(req.Msg.Count)
	if n == 0 {
		n = 1
	}
	if n < 1 || n > story.MaxBatch {
		return nil, es.Invalidf("count", "must be between 1 and %d, got %d", story.MaxBatch, req.Msg.Count)
	}
	out := &storyv1.CreateUploadsResponse{}
	for range n {
		name := uploadName(story.UploadPrefix(p.Subject))
		url, exp, err := h.links.UploadURL(media.Upload{Bucket: story.Bucket, Name: name,
			ContentTypes: story.ImageTypes, MaxBytes: story.MaxImageBytes}, h.ttls.Upload)
		if err != nil {
			return nil, es.Wrap(es.Unavailable, "upload link", err)
		}
		out.Uploads = append(out.Uploads, &storyv1.Upload{Name: name, Url: url, ExpiresAt: timestamppb.New(exp),
			MaxBytes: story.MaxImageBytes, ContentTypes: story.ImageTypes})
	}
	return connect.NewResponse(out), nil
}

func withPosition[T any](msg *T, pos uint64) *connect.Response[T] {
	out := connect.NewResponse(msg)
	out.Header().Set(PositionHeader, strconv.FormatUint(pos, 10))
	return out
}

func (h *storyHandler) RequestStory(ctx context.Context, req *connect.Request[storyv1.RequestStoryRequest]) (*connect.Response[storyv1.RequestStoryResponse], error) {
	id, res, dup, err := h.svc.Request(ctx, caller(ctx), req.Msg.UploadName, req.Msg.Langs)
	if err != nil {
		return nil, err
	}
	return withPosition(&storyv1.RequestStoryResponse{StoryId: id, Position: res.Position.Seq, Duplicate: dup}, res.Position.Seq), nil
}

func (h *storyHandler) RequestStories(ctx context.Context, req *connect.Request[storyv1.RequestStoriesRequest]) (*connect.Response[storyv1.RequestStoriesResponse], error) {
	b, res, dup, err := h.svc.RequestBatch(ctx, caller(ctx), req.Msg.UploadNames, req.Msg.Langs)
	if err != nil {
		return nil, err
	}
	return withPosition(&storyv1.RequestStoriesResponse{BatchId: b.ID, StoryIds: b.Stories, Position: res.Position.Seq, Duplicate: dup}, res.Position.Seq), nil
}

func (h *storyHandler) story(ctx context.Context, id string) (*storyv1.Story, error) {
	st, version, err := h.svc.Get(ctx, caller(ctx), id)
	if err != nil {
		return nil, err
	}
	out := &storyv1.Story{StoryId: st.ID, UserId: st.UserID, Stage: st.Stage, ImageSha256: st.Image.SHA256,
		Langs: st.Langs, Text: st.Text, TextConfidence: st.Confidence, FailedStage: st.FailedStage, Failure: st.Failure,
		NotifiedChannel: st.Channel, BatchIds: st.Batches, RequestedAt: timestamppb.New(st.RequestedAt), Version: version}
	if at, ok := h.list.Updated(st.ID); ok {
		out.UpdatedAt = timestamppb.New(at)
	}
	if st.Audio.Name != "" {
		url, exp, err := h.links.DownloadURL(st.Audio, h.ttls.Audio)
		if err != nil {
			return nil, es.Wrap(es.Unavailable, "audio link", err)
		}
		out.AudioUrl, out.AudioUrlExpiresAt = url, timestamppb.New(exp)
		out.AudioContentType, out.AudioDurationMs = st.Audio.ContentType, st.Duration.Milliseconds()
	}
	return out, nil
}

func (h *storyHandler) GetStory(ctx context.Context, req *connect.Request[storyv1.GetStoryRequest]) (*connect.Response[storyv1.GetStoryResponse], error) {
	if err := h.rt.checkPosition(ctx, req.Msg.MinPosition); err != nil {
		return nil, err
	}
	st, err := h.story(ctx, req.Msg.StoryId)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&storyv1.GetStoryResponse{Story: st}), nil
}

func (h *storyHandler) WatchStory(ctx context.Context, req *connect.Request[storyv1.WatchStoryRequest], s *connect.ServerStream[storyv1.WatchStoryResponse]) error {
	st, err := h.story(ctx, req.Msg.StoryId)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sent := uint64(0)
	var failed error
	err = live(ctx, h.rt, h.listFeed, 0, s, func(time.Time) []*storyv1.WatchStoryResponse {
		if sent != 0 {
			if st, err = h.story(ctx, req.Msg.StoryId); err != nil {
				failed = err
				cancel()
				return nil
			}
		}
		if st.Version == sent {
			return nil
		}
		sent = st.Version
		if st.Stage == storyv1.Stage_STAGE_NOTIFIED || st.Stage == storyv1.Stage_STAGE_FAILED && st.NotifiedChannel != "" {
			defer cancel() // the story's last change: end after sending it
		}
		return []*storyv1.WatchStoryResponse{{Story: st}}
	})
	if failed != nil {
		return failed
	}
	return err
}

func (h *storyHandler) ListStories(ctx context.Context, req *connect.Request[storyv1.ListStoriesRequest]) (*connect.Response[storyv1.ListStoriesResponse], error) {
	p := caller(ctx)
	if err := story.MayUse(p); err != nil {
		return nil, err
	}
	limit := int(req.Msg.Limit)
	if limit == 0 {
		limit = 20
	}
	if limit < 1 || limit > maxStoryList {
		return nil, es.Invalidf("limit", "must be between 1 and %d, got %d", maxStoryList, req.Msg.Limit)
	}
	if err := h.rt.waitFor(ctx, h.listFeed, req.Msg.MinPosition); err != nil {
		return nil, err
	}
	pos := h.listFeed.Position()
	list, total := h.list.List(p.Subject, limit)
	return connect.NewResponse(&storyv1.ListStoriesResponse{Stories: list, Total: int64(total), Position: pos}), nil
}

func (h *storyHandler) SetNotifications(ctx context.Context, req *connect.Request[storyv1.SetNotificationsRequest]) (*connect.Response[storyv1.SetNotificationsResponse], error) {
	res, err := h.svc.SetNotifications(ctx, caller(ctx), story.Notifications{Email: req.Msg.Email, SlackWebhook: req.Msg.SlackWebhook})
	if err != nil {
		return nil, err
	}
	return withPosition(&storyv1.SetNotificationsResponse{Position: res.Position.Seq}, res.Position.Seq), nil
}
