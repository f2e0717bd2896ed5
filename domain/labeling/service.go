package labeling

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/media"
	labelingv1 "github.com/tideline/tideline/schemas/gen/tideline/labeling/v1"
)

// Picker chooses up to n tasks for a labeler: tasks that still need
// labels, none the labeler was ever given (seen), the neediest first, and
// a gold task when one is due. The read model of the task pool implements
// it; it is safe for concurrent use.
type Picker func(labelerID string, seen map[string]bool, n int, now time.Time) []*labelingv1.MissionTask

// Service runs the labeling commands against an event store, reading
// uploads from blob storage. Safe for concurrent use.
type Service struct {
	datasets *es.Repository[Dataset, DatasetCommand]
	labelers *es.Repository[Labeler, LabelerCommand]
	blobs    media.Blobs
	pick     Picker
	now      func() time.Time
}

// NewService returns a service over store and blobs; pick chooses
// missions' tasks (nil: StartMission finds none). now is the clock; nil
// means time.Now.
func NewService(store es.Store, blobs media.Blobs, pick Picker, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	if pick == nil {
		pick = func(string, map[string]bool, int, time.Time) []*labelingv1.MissionTask { return nil }
	}
	return &Service{datasets: es.NewRepository(store, DatasetDecider, 1000), labelers: es.NewRepository(store, LabelerDecider, 0),
		blobs: blobs, pick: pick, now: now}
}

// Errors of access.
var (
	ErrNotEnterprise = &es.Error{Kind: es.Forbidden, Message: "datasets are for enterprise accounts (and admins)"}
	ErrNotLabeler    = &es.Error{Kind: es.Forbidden, Message: "missions are for labelers"}
	ErrNotAdmin      = &es.Error{Kind: es.Forbidden, Message: "only an admin reviews datasets"}
)

func meta(p auth.Principal, source string) es.AppendOptions {
	return es.AppendOptions{Meta: es.Metadata{Actor: p.String(), Source: source}}
}

// reaction is the principal the pipeline acts as.
var reaction = auth.Principal{Role: auth.Service, Subject: "labeling"}

// MayOwn reports whether p may own and see datasets.
func MayOwn(p auth.Principal) error {
	if (p.Role == auth.Enterprise || p.Role == auth.Admin) && p.Subject != "" {
		return nil
	}
	return ErrNotEnterprise
}

// MayLabel reports whether p may do missions.
func MayLabel(p auth.Principal) error {
	if (p.Role == auth.Labeler || p.Role == auth.Admin) && p.Subject != "" {
		return nil
	}
	return ErrNotLabeler
}

// DatasetSpec is what CreateDataset is given.
type DatasetSpec struct {
	Name, Instructions string
	Kind               Kind
	LabelsPerItem      int32
	Deadline           time.Time
}

// CreateDataset creates p's dataset. A dataset's id follows from its
// owner and name, so a retried create returns the same dataset
// (duplicate true); another of p's datasets by that name is
// FailedPrecondition. Errors: Forbidden, Invalid naming the field.
func (s *Service) CreateDataset(ctx context.Context, p auth.Principal, spec DatasetSpec) (d Dataset, res es.AppendResult, duplicate bool, err error) {
	if err := MayOwn(p); err != nil {
		return Dataset{}, res, false, err
	}
	spec.Name, spec.Instructions = strings.TrimSpace(spec.Name), strings.TrimSpace(spec.Instructions)
	now := s.now()
	switch {
	case spec.Name == "" || utf8.RuneCountInString(spec.Name) > MaxNameLen:
		return Dataset{}, res, false, es.Invalidf("name", "must be 1..%d characters", MaxNameLen)
	case spec.Kind != labelingv1.Kind_KIND_OCR_IMAGES && spec.Kind != labelingv1.Kind_KIND_AUDIO:
		return Dataset{}, res, false, es.Invalidf("kind", "must be KIND_OCR_IMAGES or KIND_AUDIO")
	case utf8.RuneCountInString(spec.Instructions) > MaxInstructionsLen:
		return Dataset{}, res, false, es.Invalidf("instructions", "must be at most %d characters", MaxInstructionsLen)
	case spec.LabelsPerItem < 0 || spec.LabelsPerItem > MaxLabelsPerItem:
		return Dataset{}, res, false, es.Invalidf("labels_per_item", "must be 1..%d (0 for the default %d)", MaxLabelsPerItem, DefaultLabelsPerItem)
	case !spec.Deadline.IsZero() && !spec.Deadline.After(now):
		return Dataset{}, res, false, es.Invalidf("deadline", "must be in the future")
	}
	if spec.LabelsPerItem == 0 {
		spec.LabelsPerItem = DefaultLabelsPerItem
	}
	id := DatasetID(p.Subject, Normalize(spec.Name))
	cur, version, err := s.datasets.Get(ctx, DatasetStream(id))
	if err != nil {
		return Dataset{}, res, false, err
	}
	if cur.ID != "" {
		if cur.Kind != spec.Kind || cur.LabelsPerItem != spec.LabelsPerItem || cur.Instructions != spec.Instructions {
			return Dataset{}, res, false, &es.Error{Kind: es.FailedPrecondition, Field: "name",
				Message: fmt.Sprintf("you already have a dataset named %q (%s) with other settings", cur.Name, cur.ID)}
		}
		return cur, es.AppendResult{Position: es.Position{Seq: version}}, true, nil
	}
	res, err = s.datasets.Handle(ctx, DatasetStream(id), Create{ID: id, OwnerID: p.Subject, Name: spec.Name, Kind: spec.Kind,
		Instructions: spec.Instructions, LabelsPerItem: spec.LabelsPerItem, Deadline: spec.Deadline, Now: now}, meta(p, "api"))
	if err != nil {
		return Dataset{}, res, false, err
	}
	d, _, err = s.datasets.Get(ctx, DatasetStream(id))
	return d, res, false, err
}

// Dataset returns dataset id as p may see it: their own, or any for an
// admin; another's is ErrDatasetNotFound.
func (s *Service) Dataset(ctx context.Context, p auth.Principal, id string) (Dataset, uint64, error) {
	if err := MayOwn(p); err != nil {
		return Dataset{}, 0, err
	}
	if err := es.ValidateToken("dataset_id", id); err != nil {
		return Dataset{}, 0, err
	}
	d, version, err := s.datasets.Get(ctx, DatasetStream(id))
	if err != nil {
		return Dataset{}, 0, err
	}
	if d.ID == "" || (p.Role != auth.Admin && d.OwnerID != p.Subject) {
		return Dataset{}, 0, ErrDatasetNotFound
	}
	return d, version, nil
}

// DatasetNow returns dataset id as the store has it now (for reactions).
func (s *Service) DatasetNow(ctx context.Context, id string) (Dataset, error) {
	d, _, err := s.datasets.GetAt(ctx, DatasetStream(id), es.Latest)
	if err == nil && d.ID == "" {
		err = ErrDatasetNotFound
	}
	return d, err
}

// File is a file an enterprise means to upload.
type File struct {
	SHA256      string
	Size        int64
	ContentType string
}

// UploadPlan is what to do with one File: upload it (Upload set) or
// nothing, as a duplicate.
type UploadPlan struct {
	SHA256    string
	Duplicate bool
	Upload    media.Upload
}

func validSHA(field, s string) error {
	if b, err := hex.DecodeString(s); err != nil || len(b) != 32 || strings.ToLower(s) != s {
		return es.Invalidf(field, "must be a SHA-256 as 64 lowercase hex digits")
	}
	return nil
}

// CreateUploads plans the upload of files (1..MaxFilesPerCall) into p's
// draft dataset: each is to be uploaded under UploadName, unless the
// dataset holds its content already or files names it twice.
func (s *Service) CreateUploads(ctx context.Context, p auth.Principal, datasetID string, files []File) ([]UploadPlan, error) {
	d, _, err := s.Dataset(ctx, p, datasetID)
	if err != nil {
		return nil, err
	}
	if len(files) == 0 || len(files) > MaxFilesPerCall {
		return nil, es.Invalidf("files", "must list 1..%d files, got %d", MaxFilesPerCall, len(files))
	}
	if d.State != labelingv1.State_STATE_DRAFT && d.State != labelingv1.State_STATE_REJECTED {
		return nil, ErrNotDraft
	}
	types := ContentTypes[d.Kind]
	plans := make([]UploadPlan, len(files))
	seen := map[string]bool{}
	for i, f := range files {
		if err := validSHA(fmt.Sprintf("files[%d].sha256", i), f.SHA256); err != nil {
			return nil, err
		}
		if !slices.Contains(types, f.ContentType) {
			return nil, es.Invalidf(fmt.Sprintf("files[%d].content_type", i), "%q: a %s dataset takes %v", f.ContentType, d.Kind, types)
		}
		if f.Size <= 0 || f.Size > MaxBytes(d.Kind) {
			return nil, es.Invalidf(fmt.Sprintf("files[%d].size", i), "must be 1..%d bytes, got %d", MaxBytes(d.Kind), f.Size)
		}
		plans[i].SHA256 = f.SHA256
		if _, dup := d.Hashes[f.SHA256]; dup || seen[f.SHA256] {
			plans[i].Duplicate = true
			continue
		}
		seen[f.SHA256] = true
		plans[i].Upload = media.Upload{Bucket: Bucket, Name: UploadName(d.ID, f.SHA256), ContentTypes: []string{f.ContentType}, MaxBytes: f.Size}
	}
	return plans, nil
}

// AddStatus is what became of a file given to AddItems.
type AddStatus = labelingv1.AddStatus

// AddResult is one file's outcome in AddItems.
type AddResult struct {
	SHA256, ItemID, Reason string
	Status                 AddStatus
}

// AddItems records p's uploaded files (by SHA-256) as items of their
// draft dataset, in one commit. Each file is reported ADDED, DUPLICATE,
// MISSING (not uploaded) or INVALID (its content is not its SHA-256, or
// it breaks the type and size limits).
func (s *Service) AddItems(ctx context.Context, p auth.Principal, datasetID string, shas []string) ([]AddResult, es.AppendResult, error) {
	d, version, err := s.Dataset(ctx, p, datasetID)
	if err != nil {
		return nil, es.AppendResult{}, err
	}
	if len(shas) == 0 || len(shas) > MaxFilesPerCall {
		return nil, es.AppendResult{}, es.Invalidf("sha256s", "must list 1..%d files, got %d", MaxFilesPerCall, len(shas))
	}
	if d.State != labelingv1.State_STATE_DRAFT && d.State != labelingv1.State_STATE_REJECTED {
		return nil, es.AppendResult{}, ErrNotDraft
	}
	results := make([]AddResult, len(shas))
	var add []media.BlobRef
	seen := map[string]bool{}
	for i, sha := range shas {
		if err := validSHA(fmt.Sprintf("sha256s[%d]", i), sha); err != nil {
			return nil, es.AppendResult{}, err
		}
		r := &results[i]
		r.SHA256 = sha
		if id, dup := d.Hashes[sha]; dup || seen[sha] {
			r.Status, r.ItemID = labelingv1.AddStatus_ADD_STATUS_DUPLICATE, id
			continue
		}
		ref, err := s.blobs.Stat(ctx, Bucket, UploadName(d.ID, sha))
		switch {
		case errors.Is(err, media.ErrNotFound):
			r.Status, r.Reason = labelingv1.AddStatus_ADD_STATUS_MISSING, "not uploaded yet: PUT it to its upload url"
			continue
		case err != nil:
			return nil, es.AppendResult{}, es.Wrap(es.Unavailable, "blob storage", err)
		case ref.SHA256 != sha:
			r.Status, r.Reason = labelingv1.AddStatus_ADD_STATUS_INVALID, "the uploaded content's SHA-256 is "+ref.SHA256
			continue
		case !slices.Contains(ContentTypes[d.Kind], ref.ContentType):
			r.Status, r.Reason = labelingv1.AddStatus_ADD_STATUS_INVALID, fmt.Sprintf("uploaded as %q; a %s dataset takes %v", ref.ContentType, d.Kind, ContentTypes[d.Kind])
			continue
		case ref.Size <= 0 || ref.Size > MaxBytes(d.Kind):
			r.Status, r.Reason = labelingv1.AddStatus_ADD_STATUS_INVALID, fmt.Sprintf("%d bytes; at most %d", ref.Size, MaxBytes(d.Kind))
			continue
		}
		seen[sha] = true
		r.Status, r.ItemID = labelingv1.AddStatus_ADD_STATUS_ADDED, ItemID(d.ID, sha)
		add = append(add, ref)
	}
	if len(add) == 0 {
		return results, es.AppendResult{Position: es.Position{Seq: version}}, nil
	}
	res, err := s.datasets.Handle(ctx, DatasetStream(d.ID), AddItems{Items: add}, meta(p, "api"))
	return results, res, err
}

// Submit asks an admin to review p's dataset.
func (s *Service) Submit(ctx context.Context, p auth.Principal, datasetID string) (es.AppendResult, error) {
	if _, _, err := s.Dataset(ctx, p, datasetID); err != nil {
		return es.AppendResult{}, err
	}
	return s.datasets.Handle(ctx, DatasetStream(datasetID), Submit{}, meta(p, "api"))
}

// Review approves or rejects (with a reason) a submitted dataset. Admin
// only.
func (s *Service) Review(ctx context.Context, p auth.Principal, datasetID string, approve bool, reason string) (es.AppendResult, error) {
	if p.Role != auth.Admin {
		return es.AppendResult{}, ErrNotAdmin
	}
	if _, _, err := s.Dataset(ctx, p, datasetID); err != nil {
		return es.AppendResult{}, err
	}
	reason = strings.TrimSpace(reason)
	if !approve && (reason == "" || utf8.RuneCountInString(reason) > MaxReasonLen) {
		return es.AppendResult{}, es.Invalidf("reason", "a rejection needs a reason of 1..%d characters", MaxReasonLen)
	}
	return s.datasets.Handle(ctx, DatasetStream(datasetID), Review{Approve: approve, Reviewer: p.Subject, Reason: reason}, meta(p, "api"))
}

// Preprocessed records an item's tasks (or its failure, cmd FailItem)
// for the preprocessing reaction; an item already done appends nothing.
func (s *Service) Preprocessed(ctx context.Context, datasetID string, cmd DatasetCommand) (es.AppendResult, error) {
	switch cmd.(type) {
	case RecordTasks, FailItem:
	default:
		return es.AppendResult{}, fmt.Errorf("labeling: Preprocessed takes RecordTasks or FailItem, not %T", cmd)
	}
	return s.datasets.Handle(ctx, DatasetStream(datasetID), cmd, meta(reaction, "reaction"))
}

// RecordDecisions records a verification batch's decisions on a
// dataset; decisions already recorded are dropped (the batch is
// idempotent).
func (s *Service) RecordDecisions(ctx context.Context, datasetID string, v Verify) (es.AppendResult, error) {
	if v.Now.IsZero() {
		v.Now = s.now()
	}
	return s.datasets.Handle(ctx, DatasetStream(datasetID), v, meta(reaction, "verification"))
}

// SetAlarm creates or replaces p's alarm.
func (s *Service) SetAlarm(ctx context.Context, p auth.Principal, a Alarm) (Alarm, es.AppendResult, error) {
	if err := MayLabel(p); err != nil {
		return a, es.AppendResult{}, err
	}
	a, err := ValidateAlarm("alarm.", a)
	if err != nil {
		return a, es.AppendResult{}, err
	}
	res, err := s.labelers.Handle(ctx, LabelerStream(p.Subject), SetAlarm{Alarm: a}, meta(p, "api"))
	return a, res, err
}

// RemoveAlarm deletes p's alarm.
func (s *Service) RemoveAlarm(ctx context.Context, p auth.Principal, id string) (es.AppendResult, error) {
	if err := MayLabel(p); err != nil {
		return es.AppendResult{}, err
	}
	if err := es.ValidateToken("alarm_id", id); err != nil {
		return es.AppendResult{}, err
	}
	return s.labelers.Handle(ctx, LabelerStream(p.Subject), RemoveAlarm{ID: id}, meta(p, "api"))
}

// Labeler returns p's labeler state.
func (s *Service) Labeler(ctx context.Context, p auth.Principal) (Labeler, uint64, error) {
	if err := MayLabel(p); err != nil {
		return Labeler{}, 0, err
	}
	return s.labelers.Get(ctx, LabelerStream(p.Subject))
}

// StartMission gives p a mission of n tasks (1..MaxMissionTasks, 0 for
// the default), or their open mission again (resumed true). alarmID
// names the alarm that rang, if any: the mission's local date is in its
// time zone. FailedPrecondition when no task is available to p.
func (s *Service) StartMission(ctx context.Context, p auth.Principal, alarmID string, n int) (m *Mission, res es.AppendResult, resumed bool, err error) {
	if err := MayLabel(p); err != nil {
		return nil, res, false, err
	}
	if n < 0 || n > MaxMissionTasks {
		return nil, res, false, es.Invalidf("tasks", "must be 1..%d (0 for the default %d)", MaxMissionTasks, DefaultMissionTasks)
	}
	if n == 0 {
		n = DefaultMissionTasks
	}
	stream := LabelerStream(p.Subject)
	for range 5 {
		l, version, err := s.labelers.Get(ctx, stream)
		if err != nil {
			return nil, res, false, err
		}
		now := s.now()
		if open := l.OpenAt(now); open != nil {
			return open, es.AppendResult{Position: es.Position{Seq: version}}, true, nil
		}
		zone := "UTC"
		if alarmID != "" {
			a, ok := l.Alarms[alarmID]
			if !ok {
				return nil, res, false, &es.Error{Kind: es.NotFound, Field: "alarm_id", Message: "no such alarm"}
			}
			zone = a.Zone
		}
		tasks := s.pick(p.Subject, l.Seen, n, now)
		if len(tasks) == 0 {
			return nil, res, false, ErrNoTasks
		}
		cmd := StartMission{LabelerID: p.Subject, AlarmID: alarmID,
			LocalDate: LocalDate(now, zone), Tasks: tasks, Now: now}
		res, err = s.labelers.Handle(ctx, stream, cmd, meta(p, "api"))
		if errors.Is(err, errMissionStillOpen) {
			continue // another request opened one: return it
		}
		if err != nil {
			return nil, res, false, err
		}
		l, _, err = s.labelers.Get(ctx, stream)
		if err != nil {
			return nil, res, false, err
		}
		return l.Open, res, false, nil
	}
	return nil, res, false, es.Errorf(es.Conflict, "the mission could not be started: try again")
}

// SubmitAnswers records p's answers to their open mission; completed
// says whether every task is now answered.
func (s *Service) SubmitAnswers(ctx context.Context, p auth.Principal, missionID string, answers []AnswerText) (completed bool, remaining int, res es.AppendResult, err error) {
	if err := MayLabel(p); err != nil {
		return false, 0, res, err
	}
	if err := es.ValidateToken("mission_id", missionID); err != nil {
		return false, 0, res, err
	}
	if len(answers) == 0 || len(answers) > MaxMissionTasks {
		return false, 0, res, es.Invalidf("answers", "must hold 1..%d answers", MaxMissionTasks)
	}
	for i, a := range answers {
		if err := es.ValidateToken(fmt.Sprintf("answers[%d].task_id", i), a.TaskID); err != nil {
			return false, 0, res, err
		}
		if t := CleanAnswer(a.Text); t == "" || utf8.RuneCountInString(strings.TrimSpace(a.Text)) > MaxAnswerLen || !utf8.ValidString(a.Text) {
			return false, 0, res, es.Invalidf(fmt.Sprintf("answers[%d].text", i), "must be 1..%d characters of valid UTF-8", MaxAnswerLen)
		}
	}
	stream := LabelerStream(p.Subject)
	res, err = s.labelers.Handle(ctx, stream, SubmitAnswers{MissionID: missionID, Answers: answers, Now: s.now()}, meta(p, "api"))
	if err != nil {
		return false, 0, res, err
	}
	l, _, err := s.labelers.Get(ctx, stream)
	if err != nil {
		return false, 0, res, err
	}
	if l.Open == nil || l.Open.ID != missionID {
		return true, 0, res, nil
	}
	return false, len(l.Open.Tasks) - len(l.Open.Answered), res, nil
}

// ExpireMission records labeler's mission expired if its deadline has
// passed (for the sweeper); otherwise it appends nothing.
func (s *Service) ExpireMission(ctx context.Context, labelerID, missionID string) (es.AppendResult, error) {
	return s.labelers.Handle(ctx, LabelerStream(labelerID), ExpireMission{MissionID: missionID, Now: s.now()}, meta(reaction, "sweeper"))
}

// DueTask is a task with its wanted labels, to be verified.
type DueTask struct {
	Task   string
	Votes  []Vote
	Wanted int32
}

// VerifyBatchSize is how many decisions one commit records.
const VerifyBatchSize = 500

// Verify runs a verification batch: it decides every due task (by
// dataset) with a and records the decisions, VerifyBatchSize a commit.
// It is idempotent (decisions already recorded are dropped by the
// dataset) and replayable (a decision is a pure function of its votes,
// recorded with them). It returns how many decisions it recorded.
func (s *Service) Verify(ctx context.Context, due map[string][]DueTask, a Agreement, runID string) (int, error) {
	decided := 0
	ids := make([]string, 0, len(due))
	for id := range due {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		tasks := due[id]
		for from := 0; from < len(tasks); from += VerifyBatchSize {
			chunk := tasks[from:min(from+VerifyBatchSize, len(tasks))]
			v := Verify{RunID: runID, Now: s.now()}
			for _, t := range chunk {
				v.Decisions = append(v.Decisions, a.Decide(t.Task, t.Votes, t.Wanted))
			}
			before, _, err := s.datasets.GetAt(ctx, DatasetStream(id), 0)
			if err != nil {
				return decided, err
			}
			if _, err := s.RecordDecisions(ctx, id, v); err != nil {
				return decided, fmt.Errorf("dataset %s: %w", id, err)
			}
			after, _, err := s.datasets.Get(ctx, DatasetStream(id))
			if err != nil {
				return decided, err
			}
			decided += changed(before.Verified, after.Verified)
		}
	}
	return decided, nil
}

func changed(before, after map[string]int32) int {
	n := 0
	for k, v := range after {
		if b, ok := before[k]; !ok || b != v {
			n++
		}
	}
	return n
}
