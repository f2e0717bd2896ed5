package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/labeling"
	"github.com/tideline/tideline/domain/media"
	labelingmodel "github.com/tideline/tideline/projections/labeling"
	labelingv1 "github.com/tideline/tideline/schemas/gen/tideline/labeling/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/labeling/v1/labelingv1connect"
)

// LabelingTTLs are how long the labeling context's signed links work.
type LabelingTTLs struct {
	Upload time.Duration // an upload URL; default 1 hour (bulk uploads take time)
	Media  time.Duration // a task's crop or clip link; default labeling.MissionTTL
}

// LabelingServices serves tideline.labeling.v1.DatasetService and
// MissionService over svc, the labeling read model and its runner, and
// links (signed upload and media URLs).
func LabelingServices(svc *labeling.Service, model *labelingmodel.Model, feed ReadModel, links media.Links, ttls LabelingTTLs) []Service {
	if ttls.Upload <= 0 {
		ttls.Upload = time.Hour
	}
	if ttls.Media <= 0 {
		ttls.Media = labeling.MissionTTL
	}
	h := &labelingHandler{svc: svc, model: model, feed: feed, links: links, ttls: ttls}
	return []Service{
		{Name: labelingv1connect.DatasetServiceName, mount: func(rt *runtime, opts connect.HandlerOption) (string, http.Handler) {
			return labelingv1connect.NewDatasetServiceHandler(&datasetHandler{labelingHandler: h, rt: rt}, opts)
		}},
		{Name: labelingv1connect.MissionServiceName, mount: func(rt *runtime, opts connect.HandlerOption) (string, http.Handler) {
			return labelingv1connect.NewMissionServiceHandler(&missionHandler{labelingHandler: h, rt: rt}, opts)
		}},
	}
}

type labelingHandler struct {
	svc   *labeling.Service
	model *labelingmodel.Model
	feed  ReadModel
	links media.Links
	ttls  LabelingTTLs
}

type datasetHandler struct {
	*labelingHandler
	rt *runtime
}

type missionHandler struct {
	*labelingHandler
	rt *runtime
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func datasetToProto(d labelingmodel.Dataset) *labelingv1.Dataset {
	out := &labelingv1.Dataset{DatasetId: d.ID, OwnerId: d.Owner, Name: d.Name, Kind: d.Kind, Instructions: d.Instructions,
		LabelsPerItem: d.LabelsPerItem, Deadline: ts(d.Deadline), State: d.State, RejectReason: d.RejectReason,
		Progress: &labelingv1.Progress{Items: d.Items, ItemsPreprocessed: d.Preprocessed, ItemsFailed: d.Failed, Tasks: d.Tasks,
			Labels: d.Labels, Verified: d.Verified, Accepted: d.Accepted, Unresolved: d.Unresolved},
		CreatedAt: ts(d.Created), UpdatedAt: ts(d.Updated), Version: d.Version}
	for _, f := range d.FailedItems {
		out.Failed = append(out.Failed, &labelingv1.FailedItem{ItemId: f.ItemID, Sha256: f.SHA256, Reason: f.Reason})
	}
	return out
}

// dataset returns dataset id from the read model as p may see it.
func (h *datasetHandler) dataset(p auth.Principal, id string) (labelingmodel.Dataset, error) {
	if err := labeling.MayOwn(p); err != nil {
		return labelingmodel.Dataset{}, err
	}
	if err := es.ValidateToken("dataset_id", id); err != nil {
		return labelingmodel.Dataset{}, err
	}
	d, ok := h.model.Dataset(id)
	if !ok || (p.Role != auth.Admin && d.Owner != p.Subject) {
		return labelingmodel.Dataset{}, labeling.ErrDatasetNotFound
	}
	return d, nil
}

func (h *datasetHandler) CreateDataset(ctx context.Context, req *connect.Request[labelingv1.CreateDatasetRequest]) (*connect.Response[labelingv1.CreateDatasetResponse], error) {
	m := req.Msg
	spec := labeling.DatasetSpec{Name: m.Name, Kind: m.Kind, Instructions: m.Instructions, LabelsPerItem: m.LabelsPerItem}
	if m.Deadline != nil {
		if err := m.Deadline.CheckValid(); err != nil {
			return nil, es.Invalidf("deadline", "%v", err)
		}
		spec.Deadline = m.Deadline.AsTime()
	}
	d, res, _, err := h.svc.CreateDataset(ctx, caller(ctx), spec)
	if err != nil {
		return nil, err
	}
	out := &labelingv1.Dataset{DatasetId: d.ID, OwnerId: d.OwnerID, Name: d.Name, Kind: d.Kind, Instructions: d.Instructions,
		LabelsPerItem: d.LabelsPerItem, Deadline: ts(d.Deadline), State: d.State, Progress: &labelingv1.Progress{Items: int32(len(d.Items))},
		Version: res.Position.Seq}
	return withPosition(&labelingv1.CreateDatasetResponse{Dataset: out, Position: res.Position.Seq}, res.Position.Seq), nil
}

func (h *datasetHandler) CreateUploads(ctx context.Context, req *connect.Request[labelingv1.CreateUploadsRequest]) (*connect.Response[labelingv1.CreateUploadsResponse], error) {
	files := make([]labeling.File, len(req.Msg.Files))
	for i, f := range req.Msg.Files {
		files[i] = labeling.File{SHA256: f.Sha256, Size: f.Size, ContentType: f.ContentType}
	}
	plans, err := h.svc.CreateUploads(ctx, caller(ctx), req.Msg.DatasetId, files)
	if err != nil {
		return nil, err
	}
	out := &labelingv1.CreateUploadsResponse{}
	for _, p := range plans {
		u := &labelingv1.UploadURL{Sha256: p.SHA256, Status: labelingv1.UploadStatus_UPLOAD_STATUS_DUPLICATE}
		if !p.Duplicate {
			url, exp, err := h.links.UploadURL(p.Upload, h.ttls.Upload)
			if err != nil {
				return nil, es.Wrap(es.Unavailable, "upload link", err)
			}
			u.Status, u.Url, u.ExpiresAt = labelingv1.UploadStatus_UPLOAD_STATUS_UPLOAD, url, timestamppb.New(exp)
			u.MaxBytes, u.ContentTypes = p.Upload.MaxBytes, p.Upload.ContentTypes
		}
		out.Uploads = append(out.Uploads, u)
	}
	return connect.NewResponse(out), nil
}

func (h *datasetHandler) AddItems(ctx context.Context, req *connect.Request[labelingv1.AddItemsRequest]) (*connect.Response[labelingv1.AddItemsResponse], error) {
	results, res, err := h.svc.AddItems(ctx, caller(ctx), req.Msg.DatasetId, req.Msg.Sha256S)
	if err != nil {
		return nil, err
	}
	out := &labelingv1.AddItemsResponse{Position: res.Position.Seq}
	for _, r := range results {
		out.Results = append(out.Results, &labelingv1.AddResult{Sha256: r.SHA256, Status: r.Status, ItemId: r.ItemID, Reason: r.Reason})
		switch r.Status {
		case labelingv1.AddStatus_ADD_STATUS_ADDED:
			out.Added++
		case labelingv1.AddStatus_ADD_STATUS_DUPLICATE:
			out.Duplicates++
		case labelingv1.AddStatus_ADD_STATUS_MISSING:
			out.Missing++
		case labelingv1.AddStatus_ADD_STATUS_INVALID:
			out.Invalid++
		}
	}
	return withPosition(out, res.Position.Seq), nil
}

func (h *datasetHandler) SubmitDataset(ctx context.Context, req *connect.Request[labelingv1.SubmitDatasetRequest]) (*connect.Response[labelingv1.SubmitDatasetResponse], error) {
	res, err := h.svc.Submit(ctx, caller(ctx), req.Msg.DatasetId)
	if err != nil {
		return nil, err
	}
	return withPosition(&labelingv1.SubmitDatasetResponse{Position: res.Position.Seq}, res.Position.Seq), nil
}

func (h *datasetHandler) ReviewDataset(ctx context.Context, req *connect.Request[labelingv1.ReviewDatasetRequest]) (*connect.Response[labelingv1.ReviewDatasetResponse], error) {
	res, err := h.svc.Review(ctx, caller(ctx), req.Msg.DatasetId, req.Msg.Approve, req.Msg.Reason)
	if err != nil {
		return nil, err
	}
	return withPosition(&labelingv1.ReviewDatasetResponse{Position: res.Position.Seq}, res.Position.Seq), nil
}

func (h *datasetHandler) GetDataset(ctx context.Context, req *connect.Request[labelingv1.GetDatasetRequest]) (*connect.Response[labelingv1.GetDatasetResponse], error) {
	if err := h.rt.waitFor(ctx, h.feed, req.Msg.MinPosition); err != nil {
		return nil, err
	}
	d, err := h.dataset(caller(ctx), req.Msg.DatasetId)
	if err != nil {
		return nil, err
	}
	return connect.NewResponse(&labelingv1.GetDatasetResponse{Dataset: datasetToProto(d)}), nil
}

const maxDatasetList = 100

func (h *datasetHandler) ListDatasets(ctx context.Context, req *connect.Request[labelingv1.ListDatasetsRequest]) (*connect.Response[labelingv1.ListDatasetsResponse], error) {
	p := caller(ctx)
	if err := labeling.MayOwn(p); err != nil {
		return nil, err
	}
	limit := int(req.Msg.Limit)
	if limit == 0 {
		limit = 20
	}
	if limit < 1 || limit > maxDatasetList {
		return nil, es.Invalidf("limit", "must be between 1 and %d, got %d", maxDatasetList, req.Msg.Limit)
	}
	if _, ok := labelingv1.State_name[int32(req.Msg.State)]; !ok {
		return nil, es.Invalidf("state", "unknown state %d", req.Msg.State)
	}
	if err := h.rt.waitFor(ctx, h.feed, req.Msg.MinPosition); err != nil {
		return nil, err
	}
	owner := p.Subject
	if p.Role == auth.Admin {
		owner = ""
	}
	out := &labelingv1.ListDatasetsResponse{Position: h.feed.Position()}
	for _, d := range h.model.Datasets(owner, req.Msg.State, limit) {
		out.Datasets = append(out.Datasets, datasetToProto(d))
	}
	return connect.NewResponse(out), nil
}

func (h *datasetHandler) WatchDataset(ctx context.Context, req *connect.Request[labelingv1.WatchDatasetRequest], s *connect.ServerStream[labelingv1.WatchDatasetResponse]) error {
	p := caller(ctx)
	if _, err := h.dataset(p, req.Msg.DatasetId); err != nil {
		return err
	}
	sent := uint64(0)
	return live(ctx, h.rt, h.feed, 0, s, func(time.Time) []*labelingv1.WatchDatasetResponse {
		d, err := h.dataset(p, req.Msg.DatasetId)
		if err != nil || d.Version == sent {
			return nil
		}
		sent = d.Version
		return []*labelingv1.WatchDatasetResponse{{Dataset: datasetToProto(d)}}
	})
}

// exportChunk is the size of an ExportLabels message.
const exportChunk = 64 << 10

// exportedLabel is one JSON Lines record of ExportLabels.
type exportedLabel struct {
	TaskID     string          `json:"task_id"`
	DatasetID  string          `json:"dataset_id"`
	ItemID     string          `json:"item_id"`
	ItemSHA256 string          `json:"item_sha256"`
	Kind       string          `json:"kind"`
	Box        *[4]int32       `json:"bbox,omitempty"` // x, y, w, h
	StartMs    int64           `json:"start_ms,omitempty"`
	EndMs      int64           `json:"end_ms,omitempty"`
	Outcome    string          `json:"outcome"`
	Answer     string          `json:"answer"`
	Support    float64         `json:"support"`
	Reason     string          `json:"reason"`
	Labels     []exportedVote  `json:"labels"`
	Media      exportedBlobRef `json:"media"`
}

type exportedVote struct {
	// Labeler is pseudonymous: the same person has the same id within a
	// dataset, and no other.
	Labeler  string `json:"labeler"`
	Answer   string `json:"answer"`
	Accepted bool   `json:"accepted"`
}

type exportedBlobRef struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
}

func exportRecord(e labelingmodel.Exported) exportedLabel {
	t := e.Task
	r := exportedLabel{TaskID: t.ID, DatasetID: t.Dataset, ItemID: t.Item, ItemSHA256: e.ItemSHA, Kind: t.Kind.String(),
		StartMs: t.StartMs, EndMs: t.EndMs, Outcome: t.Outcome.String(), Answer: t.Answer, Support: t.Support, Reason: t.Reason,
		Media: exportedBlobRef{Name: t.Media.Name, SHA256: t.Media.SHA256}, Labels: []exportedVote{}}
	if t.Kind == labelingv1.Kind_KIND_OCR_IMAGES {
		r.Box = &t.Box
	}
	for _, v := range t.Votes {
		r.Labels = append(r.Labels, exportedVote{Labeler: es.DigestID("l", t.Dataset, v.Labeler)[:13], Answer: v.Answer,
			Accepted: slices.Contains(t.AcceptedBy, v.Labeler)})
	}
	return r
}

// cocoText is the COCO-Text shape (imgs, anns, imgToAnns) of an OCR
// dataset's verified labels; an annotation's id is its task id.
type cocoText struct {
	Imgs      map[string]cocoImg  `json:"imgs"`
	Anns      map[string]cocoAnn  `json:"anns"`
	ImgToAnns map[string][]string `json:"imgToAnns"`
}

type cocoImg struct {
	ID       string `json:"id"`
	FileName string `json:"file_name"`
}

type cocoAnn struct {
	ID         string     `json:"id"`
	ImageID    string     `json:"image_id"`
	BBox       [4]float64 `json:"bbox"`
	Text       string     `json:"utf8_string"`
	Legibility string     `json:"legibility"`
	Support    float64    `json:"support"`
}

func (h *datasetHandler) ExportLabels(ctx context.Context, req *connect.Request[labelingv1.ExportLabelsRequest], s *connect.ServerStream[labelingv1.ExportLabelsResponse]) error {
	if err := h.rt.waitFor(ctx, h.feed, req.Msg.MinPosition); err != nil {
		return err
	}
	d, err := h.dataset(caller(ctx), req.Msg.DatasetId)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	flush := func(all bool) error {
		for buf.Len() >= exportChunk || all && buf.Len() > 0 {
			n := min(buf.Len(), exportChunk)
			if err := s.Send(&labelingv1.ExportLabelsResponse{Data: slices.Clone(buf.Next(n))}); err != nil {
				return err
			}
		}
		return nil
	}
	switch req.Msg.Format {
	case labelingv1.ExportFormat_EXPORT_FORMAT_UNSPECIFIED, labelingv1.ExportFormat_EXPORT_FORMAT_JSONL:
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		err = h.model.Verified(d.ID, func(e labelingmodel.Exported) error {
			if err := enc.Encode(exportRecord(e)); err != nil {
				return err
			}
			return flush(false)
		})
	case labelingv1.ExportFormat_EXPORT_FORMAT_COCO_TEXT:
		if d.Kind != labelingv1.Kind_KIND_OCR_IMAGES {
			return es.Invalidf("format", "COCO-Text is for OCR image datasets; export an audio dataset as JSON Lines")
		}
		doc := cocoText{Imgs: map[string]cocoImg{}, Anns: map[string]cocoAnn{}, ImgToAnns: map[string][]string{}}
		err = h.model.Verified(d.ID, func(e labelingmodel.Exported) error {
			t := e.Task
			doc.Imgs[t.Item] = cocoImg{ID: t.Item, FileName: e.ItemSHA}
			legible := "illegible"
			if t.Outcome == labelingv1.Outcome_OUTCOME_ACCEPTED {
				legible = "legible"
			}
			doc.Anns[t.ID] = cocoAnn{ID: t.ID, ImageID: t.Item, BBox: [4]float64{float64(t.Box[0]), float64(t.Box[1]), float64(t.Box[2]), float64(t.Box[3])},
				Text: t.Answer, Legibility: legible, Support: t.Support}
			doc.ImgToAnns[t.Item] = append(doc.ImgToAnns[t.Item], t.ID)
			return nil
		})
		if err == nil {
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			err = enc.Encode(doc)
		}
	default:
		return es.Invalidf("format", "unknown export format %d", req.Msg.Format)
	}
	if err != nil {
		return err
	}
	return flush(true)
}

func alarmToProto(a labeling.Alarm, now time.Time) *labelingv1.Alarm {
	return &labelingv1.Alarm{AlarmId: a.ID, Time: a.Time, Weekdays: a.Weekdays, TimeZone: a.Zone, Enabled: a.Enabled,
		NextRing: ts(labeling.NextRing(a, now))}
}

func (h *missionHandler) SetAlarm(ctx context.Context, req *connect.Request[labelingv1.SetAlarmRequest]) (*connect.Response[labelingv1.SetAlarmResponse], error) {
	a := req.Msg.Alarm
	if a == nil {
		return nil, es.Invalidf("alarm", "is required")
	}
	alarm, res, err := h.svc.SetAlarm(ctx, caller(ctx), labeling.Alarm{ID: a.AlarmId, Time: a.Time, Weekdays: a.Weekdays, Zone: a.TimeZone, Enabled: a.Enabled})
	if err != nil {
		return nil, err
	}
	return withPosition(&labelingv1.SetAlarmResponse{Alarm: alarmToProto(alarm, time.Now()), Position: res.Position.Seq}, res.Position.Seq), nil
}

func (h *missionHandler) DeleteAlarm(ctx context.Context, req *connect.Request[labelingv1.DeleteAlarmRequest]) (*connect.Response[labelingv1.DeleteAlarmResponse], error) {
	res, err := h.svc.RemoveAlarm(ctx, caller(ctx), req.Msg.AlarmId)
	if err != nil {
		return nil, err
	}
	return withPosition(&labelingv1.DeleteAlarmResponse{Position: res.Position.Seq}, res.Position.Seq), nil
}

func (h *missionHandler) ListAlarms(ctx context.Context, _ *connect.Request[labelingv1.ListAlarmsRequest]) (*connect.Response[labelingv1.ListAlarmsResponse], error) {
	l, _, err := h.svc.Labeler(ctx, caller(ctx))
	if err != nil {
		return nil, err
	}
	out := &labelingv1.ListAlarmsResponse{}
	now := time.Now()
	for _, a := range l.Alarms {
		out.Alarms = append(out.Alarms, alarmToProto(a, now))
	}
	slices.SortFunc(out.Alarms, func(a, b *labelingv1.Alarm) int { return strings.Compare(a.AlarmId, b.AlarmId) })
	return connect.NewResponse(out), nil
}

func (h *missionHandler) mission(m *labeling.Mission) (*labelingv1.Mission, error) {
	out := &labelingv1.Mission{MissionId: m.ID, Deadline: timestamppb.New(m.Deadline)}
	for _, t := range m.Tasks {
		ref := media.RefFromProto(t.Media)
		url, _, err := h.links.DownloadURL(ref, h.ttls.Media)
		if err != nil {
			return nil, es.Wrap(es.Unavailable, "media link", err)
		}
		out.Tasks = append(out.Tasks, &labelingv1.TaskToDo{TaskId: t.TaskId, Kind: t.Kind, Instructions: t.Instructions,
			MediaUrl: url, MediaContentType: ref.ContentType})
		if m.Answered[t.TaskId] {
			out.Answered = append(out.Answered, t.TaskId)
		}
	}
	return out, nil
}

func (h *missionHandler) StartMission(ctx context.Context, req *connect.Request[labelingv1.StartMissionRequest]) (*connect.Response[labelingv1.StartMissionResponse], error) {
	if req.Msg.AlarmId != "" {
		if err := es.ValidateToken("alarm_id", req.Msg.AlarmId); err != nil {
			return nil, err
		}
	}
	m, res, resumed, err := h.svc.StartMission(ctx, caller(ctx), req.Msg.AlarmId, int(req.Msg.Tasks))
	if err != nil {
		return nil, err
	}
	out, err := h.mission(m)
	if err != nil {
		return nil, err
	}
	return withPosition(&labelingv1.StartMissionResponse{Mission: out, Resumed: resumed, Position: res.Position.Seq}, res.Position.Seq), nil
}

func (h *missionHandler) SubmitAnswers(ctx context.Context, req *connect.Request[labelingv1.SubmitAnswersRequest]) (*connect.Response[labelingv1.SubmitAnswersResponse], error) {
	answers := make([]labeling.AnswerText, len(req.Msg.Answers))
	for i, a := range req.Msg.Answers {
		answers[i] = labeling.AnswerText{TaskID: a.TaskId, Text: a.Text}
	}
	done, remaining, res, err := h.svc.SubmitAnswers(ctx, caller(ctx), req.Msg.MissionId, answers)
	if err != nil {
		return nil, err
	}
	return withPosition(&labelingv1.SubmitAnswersResponse{Completed: done, Remaining: int32(remaining), Position: res.Position.Seq}, res.Position.Seq), nil
}

func (h *missionHandler) GetLabelerStats(ctx context.Context, req *connect.Request[labelingv1.GetLabelerStatsRequest]) (*connect.Response[labelingv1.GetLabelerStatsResponse], error) {
	p := caller(ctx)
	if err := labeling.MayLabel(p); err != nil {
		return nil, err
	}
	if err := h.rt.waitFor(ctx, h.feed, req.Msg.MinPosition); err != nil {
		return nil, err
	}
	l := h.model.Labeler(p.Subject)
	out := &labelingv1.GetLabelerStatsResponse{MissionsCompleted: l.Completed, MissionsExpired: l.Expired, Labels: l.Labels,
		LabelsAccepted: l.Accepted, LabelsRejected: l.Rejected, GoldAnswered: l.GoldAnswered, GoldCorrect: l.GoldCorrect, Accuracy: l.Accuracy()}
	for i := len(l.Missions) - 1; i >= 0; i-- {
		m := l.Missions[i]
		state := m.State
		if state == "open" && !time.Now().Before(m.Deadline) {
			state = "expired"
		}
		out.Missions = append(out.Missions, &labelingv1.MissionSummary{MissionId: m.ID, StartedAt: timestamppb.New(m.Started),
			State: state, Tasks: int32(len(m.Tasks)), LocalDate: m.LocalDate})
	}
	return connect.NewResponse(out), nil
}
