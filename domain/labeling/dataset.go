// Package labeling is the data-labeling context (the belloga seed):
// enterprises upload raw data (OCR images, audio) as datasets, an admin
// approves them, preprocessing cuts every item into tasks, labelers
// answer tasks as the mission that dismisses their wake-up alarm, and a
// periodic verification batch decides each task by weighted agreement.
//
// Aggregates, referenced by id only:
//   - a dataset (ev.labeling.dataset.<id>): its items, review, the tasks
//     cut from each item, and the verification decisions;
//   - a labeler (ev.labeling.labeler.<user>): alarms, missions and the
//     answers given, so one person never gets the same task twice and has
//     at most one open mission (the stream's version check decides).
//
// Points, stamps and raffles are the rewards context's: a reaction turns
// completed missions and accepted labels into credits there.
package labeling

import (
	"fmt"
	"maps"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/media"
	labelingv1 "github.com/tideline/tideline/schemas/gen/tideline/labeling/v1"
)

// Bucket is the blob bucket of raw items, crops and clips.
const Bucket = "labeling"

// Limits of input.
const (
	MaxNameLen           = 200
	MaxInstructionsLen   = 2000
	MaxLabelsPerItem     = 10
	DefaultLabelsPerItem = 3
	MaxFilesPerCall      = 1000
	MaxImageBytes        = 20 << 20
	MaxAudioBytes        = 100 << 20
	MaxReasonLen         = 500
	MaxAnswerLen         = 500
	MaxTasksPerItem      = 200
)

// ContentTypes are the item types each kind accepts.
var ContentTypes = map[Kind][]string{
	labelingv1.Kind_KIND_OCR_IMAGES: {"image/png", "image/jpeg"},
	labelingv1.Kind_KIND_AUDIO:      {"audio/wav", "audio/ogg"},
}

// MaxBytes is the size limit of an item of kind k.
func MaxBytes(k Kind) int64 {
	if k == labelingv1.Kind_KIND_AUDIO {
		return MaxAudioBytes
	}
	return MaxImageBytes
}

// Kind is what a dataset holds.
type Kind = labelingv1.Kind

// State is where a dataset is.
type State = labelingv1.State

// DatasetStream returns the stream of a dataset.
func DatasetStream(id string) es.StreamID {
	return es.StreamID{Context: "labeling", Type: "dataset", ID: id}
}

// DatasetID is the id of ownerID's dataset created by the request with
// that idempotency token (a retried create is the same dataset).
func DatasetID(ownerID, token string) string { return es.DigestID("d", ownerID, token) }

// ItemID is the id of the item with that content in a dataset.
func ItemID(datasetID, sha256 string) string { return es.DigestID("i", datasetID, sha256) }

// TaskID is the id of the n-th task cut from an item.
func TaskID(itemID string, n int) string { return es.DigestID("t", itemID, fmt.Sprint(n)) }

// UploadName is the blob name of a dataset's file with that SHA-256.
func UploadName(datasetID, sha256 string) string { return datasetID + "-" + sha256 }

// Dataset is a dataset's state, folded from its events. Its maps are
// never changed in place (states are shared by a repository's readers):
// Evolve replaces a map it adds to.
type Dataset struct {
	ID, OwnerID, Name, Instructions string
	Kind                            Kind
	LabelsPerItem                   int32
	Deadline                        time.Time
	State                           State
	RejectReason                    string
	// Items are the items' blobs by item id; Hashes the item ids by
	// content SHA-256.
	Items  map[string]media.BlobRef
	Hashes map[string]string
	// Done are the items preprocessed or failed, by item id.
	Done   map[string]bool
	Failed int
	Tasks  int
	// Verified holds, per task decided at least once, the number of
	// labels its last decision considered, or -1 once it is closed
	// (accepted or unresolved).
	Verified map[string]int32
}

// DatasetCommand is a command on a dataset.
type DatasetCommand interface{ isDatasetCommand() }

// Create starts a dataset.
type Create struct {
	ID, OwnerID, Name, Instructions string
	Kind                            Kind
	LabelsPerItem                   int32
	Deadline, Now                   time.Time
}

// AddItems adds uploaded files; files whose content the dataset already
// holds are skipped.
type AddItems struct{ Items []media.BlobRef }

// Submit asks for review.
type Submit struct{}

// Review approves or rejects a submitted dataset.
type Review struct {
	Approve          bool
	Reviewer, Reason string
}

// RecordTasks records the tasks cut from an item.
type RecordTasks struct {
	ItemID string
	Tasks  []*labelingv1.Task
}

// FailItem records that an item could not be preprocessed.
type FailItem struct {
	ItemID, Reason string
	Attempts       int32
}

// Verify records a verification batch's decisions; decisions already
// recorded (a task closed, or decided on as many labels) are dropped.
type Verify struct {
	RunID     string
	Decisions []*labelingv1.Decision
	Now       time.Time
}

func (Create) isDatasetCommand()      {}
func (AddItems) isDatasetCommand()    {}
func (Submit) isDatasetCommand()      {}
func (Review) isDatasetCommand()      {}
func (RecordTasks) isDatasetCommand() {}
func (FailItem) isDatasetCommand()    {}
func (Verify) isDatasetCommand()      {}

// Errors of the dataset aggregate.
var (
	ErrDatasetNotFound = &es.Error{Kind: es.NotFound, Message: "no such dataset"}
	ErrNotDraft        = &es.Error{Kind: es.FailedPrecondition, Message: "the dataset takes items only while a draft or rejected"}
	ErrNoItems         = &es.Error{Kind: es.FailedPrecondition, Message: "the dataset has no items: AddItems first"}
	ErrNotSubmitted    = &es.Error{Kind: es.FailedPrecondition, Message: "the dataset is not waiting for review"}
	ErrNotApproved     = &es.Error{Kind: es.FailedPrecondition, Message: "the dataset is not approved"}
)

// DatasetDecider is the dataset aggregate.
var DatasetDecider = es.Decider[Dataset, DatasetCommand]{
	Initial: func() Dataset { return Dataset{} },
	Decide:  decideDataset,
	Evolve:  evolveDataset,
}

func decideDataset(d Dataset, cmd DatasetCommand) ([]proto.Message, error) {
	if c, ok := cmd.(Create); ok {
		if d.ID != "" {
			return nil, nil // a retried create
		}
		var deadline *timestamppb.Timestamp
		if !c.Deadline.IsZero() {
			deadline = timestamppb.New(c.Deadline)
		}
		return []proto.Message{&labelingv1.DatasetCreated{DatasetId: c.ID, OwnerId: c.OwnerID, Name: c.Name, Kind: c.Kind,
			Instructions: c.Instructions, LabelsPerItem: c.LabelsPerItem, Deadline: deadline, CreatedAt: timestamppb.New(c.Now)}}, nil
	}
	if d.ID == "" {
		return nil, ErrDatasetNotFound
	}
	switch c := cmd.(type) {
	case AddItems:
		if d.State != labelingv1.State_STATE_DRAFT && d.State != labelingv1.State_STATE_REJECTED {
			return nil, ErrNotDraft
		}
		e := &labelingv1.ItemsAdded{DatasetId: d.ID}
		seen := map[string]bool{}
		for _, b := range c.Items {
			if _, dup := d.Hashes[b.SHA256]; dup || seen[b.SHA256] {
				continue
			}
			seen[b.SHA256] = true
			e.Items = append(e.Items, &labelingv1.Item{ItemId: ItemID(d.ID, b.SHA256), Blob: media.RefToProto(b)})
		}
		if len(e.Items) == 0 {
			return nil, nil
		}
		return []proto.Message{e}, nil
	case Submit:
		switch d.State {
		case labelingv1.State_STATE_SUBMITTED:
			return nil, nil
		case labelingv1.State_STATE_DRAFT, labelingv1.State_STATE_REJECTED:
		default:
			return nil, &es.Error{Kind: es.FailedPrecondition, Message: "the dataset was approved already"}
		}
		if len(d.Items) == 0 {
			return nil, ErrNoItems
		}
		return []proto.Message{&labelingv1.DatasetSubmitted{DatasetId: d.ID, Items: int32(len(d.Items))}}, nil
	case Review:
		if d.State != labelingv1.State_STATE_SUBMITTED {
			return nil, ErrNotSubmitted
		}
		if c.Approve {
			return []proto.Message{&labelingv1.DatasetApproved{DatasetId: d.ID, ReviewerId: c.Reviewer}}, nil
		}
		return []proto.Message{&labelingv1.DatasetRejected{DatasetId: d.ID, ReviewerId: c.Reviewer, Reason: c.Reason}}, nil
	case RecordTasks, FailItem:
		if d.State != labelingv1.State_STATE_PREPROCESSING && d.State != labelingv1.State_STATE_LABELING {
			return nil, ErrNotApproved
		}
		var e proto.Message
		item := ""
		switch c := c.(type) {
		case RecordTasks:
			item, e = c.ItemID, &labelingv1.ItemPreprocessed{DatasetId: d.ID, ItemId: c.ItemID, Tasks: c.Tasks}
		case FailItem:
			item, e = c.ItemID, &labelingv1.ItemFailed{DatasetId: d.ID, ItemId: c.ItemID, Reason: es.Truncate(c.Reason, MaxReasonLen), Attempts: c.Attempts}
		}
		if d.Done[item] {
			return nil, nil
		}
		if _, ok := d.Items[item]; !ok {
			return nil, &es.Error{Kind: es.NotFound, Message: "no such item in the dataset"}
		}
		events := []proto.Message{e}
		if len(d.Done)+1 == len(d.Items) {
			tasks, failed := d.Tasks, d.Failed
			if t, ok := e.(*labelingv1.ItemPreprocessed); ok {
				tasks += len(t.Tasks)
			} else {
				failed++
			}
			events = append(events, &labelingv1.PreprocessingFinished{DatasetId: d.ID, Tasks: int32(tasks), FailedItems: int32(failed)})
		}
		return events, nil
	case Verify:
		if d.State != labelingv1.State_STATE_LABELING && d.State != labelingv1.State_STATE_PREPROCESSING {
			return nil, ErrNotApproved
		}
		e := &labelingv1.LabelsVerified{DatasetId: d.ID, RunId: c.RunID, VerifiedAt: timestamppb.New(c.Now)}
		for _, dec := range c.Decisions {
			if last, ok := d.Verified[dec.TaskId]; ok && (last < 0 || last >= int32(len(dec.Votes))) {
				continue
			}
			e.Decisions = append(e.Decisions, dec)
		}
		if len(e.Decisions) == 0 {
			return nil, nil
		}
		return []proto.Message{e}, nil
	}
	return nil, fmt.Errorf("labeling: unknown dataset command %T", cmd)
}

func evolveDataset(d Dataset, ev proto.Message) Dataset {
	switch e := ev.(type) {
	case *labelingv1.DatasetCreated:
		d = Dataset{ID: e.DatasetId, OwnerID: e.OwnerId, Name: e.Name, Kind: e.Kind, Instructions: e.Instructions,
			LabelsPerItem: e.LabelsPerItem, State: labelingv1.State_STATE_DRAFT}
		if e.Deadline != nil {
			d.Deadline = e.Deadline.AsTime()
		}
	case *labelingv1.ItemsAdded:
		items, hashes := maps.Clone(d.Items), maps.Clone(d.Hashes)
		if items == nil {
			items, hashes = map[string]media.BlobRef{}, map[string]string{}
		}
		for _, it := range e.Items {
			items[it.ItemId] = media.RefFromProto(it.Blob)
			hashes[it.Blob.GetSha256()] = it.ItemId
		}
		d.Items, d.Hashes = items, hashes
	case *labelingv1.DatasetSubmitted:
		d.State, d.RejectReason = labelingv1.State_STATE_SUBMITTED, ""
	case *labelingv1.DatasetApproved:
		d.State = labelingv1.State_STATE_PREPROCESSING
	case *labelingv1.DatasetRejected:
		d.State, d.RejectReason = labelingv1.State_STATE_REJECTED, e.Reason
	case *labelingv1.ItemPreprocessed:
		d.Done = es.With(d.Done, e.ItemId, true)
		d.Tasks += len(e.Tasks)
	case *labelingv1.ItemFailed:
		d.Done = es.With(d.Done, e.ItemId, true)
		d.Failed++
	case *labelingv1.PreprocessingFinished:
		d.State = labelingv1.State_STATE_LABELING
	case *labelingv1.LabelsVerified:
		v := maps.Clone(d.Verified)
		if v == nil {
			v = map[string]int32{}
		}
		for _, dec := range e.Decisions {
			if dec.Outcome == labelingv1.Outcome_OUTCOME_NEEDS_MORE {
				v[dec.TaskId] = int32(len(dec.Votes))
			} else {
				v[dec.TaskId] = -1
			}
		}
		d.Verified = v
	}
	return d
}
