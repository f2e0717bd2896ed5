package reactions

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/labeling"
	"github.com/tideline/tideline/domain/media"
	"github.com/tideline/tideline/domain/notify"
	labelingv1 "github.com/tideline/tideline/schemas/gen/tideline/labeling/v1"
)

// LabelingPreprocessName is the preprocessing reaction's stable name.
const LabelingPreprocessName = "labeling-preprocess"

// LabelingEngines are what preprocessing uses.
type LabelingEngines struct {
	Blobs media.Blobs
	OCR   media.OCR
	// Decoder decodes Ogg Opus items; nil takes only WAV.
	Decoder media.Decoder
	// Attempts is how many times an item whose engine fails (not
	// unavailable, not refusing it) is tried before it is failed; default 3.
	Attempts int
	// Concurrency is how many items are worked on at once; default the
	// number of CPUs.
	Concurrency int
	Logger      *slog.Logger
}

// LabelingReactions cut an approved dataset's items into tasks: an
// image's text lines (OCR, Korean and English) each become a task with
// its crop; a recording's stretches between silences each become a task
// with its clip (WAV). Items are worked on Concurrency at a time and
// each is recorded as soon as it is done, so memory stays bounded by
// the items in hand and a restart goes on with the items not yet
// recorded. An engine that is unavailable makes the dataset wait
// (redelivered until it is back); an item the engine refuses, or that
// failed Attempts times, is recorded failed with its reason.
func LabelingReactions(svc *labeling.Service, e LabelingEngines) []Reaction {
	if e.Attempts <= 0 {
		e.Attempts = 3
	}
	if e.Concurrency <= 0 {
		e.Concurrency = runtime.NumCPU()
	}
	if e.Logger == nil {
		e.Logger = slog.Default()
	}
	if e.OCR == nil {
		e.OCR = noOCR{}
	}
	p := &preprocessor{svc: svc, e: e, health: &engineHealth{logger: e.Logger}}
	return []Reaction{{Name: LabelingPreprocessName, Subjects: []string{"ev.labeling.dataset.>"}, Handle: p.handle}}
}

type preprocessor struct {
	svc    *labeling.Service
	e      LabelingEngines
	health *engineHealth
}

func (p *preprocessor) handle(ctx context.Context, c es.Commit) error {
	for _, ev := range c.Events {
		if a, ok := ev.Data.(*labelingv1.DatasetApproved); ok {
			if err := p.dataset(ctx, a.DatasetId); err != nil {
				return fmt.Errorf("dataset %s: %w", a.DatasetId, err)
			}
		}
	}
	return nil
}

// dataset preprocesses every item of dataset id not yet done.
func (p *preprocessor) dataset(ctx context.Context, id string) error {
	d, err := p.svc.DatasetNow(ctx, id)
	if err != nil {
		return err
	}
	if d.State != labelingv1.State_STATE_PREPROCESSING {
		return nil
	}
	type job struct {
		id  string
		ref media.BlobRef
	}
	jobs := make(chan job)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range p.e.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if err := p.item(ctx, d, j.id, j.ref); err != nil {
					once.Do(func() { first = err; cancel() })
				}
			}
		}()
	}
feed:
	for itemID, ref := range d.Items {
		if d.Done[itemID] {
			continue
		}
		select {
		case jobs <- job{itemID, ref}:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

// item cuts one item into tasks and records them (or its failure).
func (p *preprocessor) item(ctx context.Context, d labeling.Dataset, itemID string, ref media.BlobRef) error {
	engine := "ocr"
	if d.Kind == labelingv1.Kind_KIND_AUDIO {
		engine = "audio"
	}
	tasks, reason, err := attempt(ctx, p.health, p.e.Attempts, engine, itemID, func() ([]*labelingv1.Task, error) {
		if d.Kind == labelingv1.Kind_KIND_AUDIO {
			return p.audio(ctx, itemID, ref)
		}
		return p.image(ctx, itemID, ref)
	})
	if err != nil {
		return err
	}
	var cmd labeling.DatasetCommand = labeling.RecordTasks{ItemID: itemID, Tasks: tasks}
	if reason != "" {
		cmd = labeling.FailItem{ItemID: itemID, Reason: reason, Attempts: int32(p.e.Attempts)}
	} else if len(tasks) == 0 {
		what := "no text found in the image"
		if d.Kind == labelingv1.Kind_KIND_AUDIO {
			what = "no speech found in the recording"
		}
		cmd = labeling.FailItem{ItemID: itemID, Reason: what, Attempts: 1}
	}
	_, err = p.svc.Preprocessed(ctx, d.ID, cmd)
	return err
}

func (p *preprocessor) put(ctx context.Context, name, contentType string, data []byte) (media.BlobRef, error) {
	return p.e.Blobs.Put(ctx, labeling.Bucket, name, contentType, bytes.NewReader(data), int64(len(data)))
}

func (p *preprocessor) image(ctx context.Context, itemID string, ref media.BlobRef) ([]*labelingv1.Task, error) {
	img, err := readBlob(ctx, p.e.Blobs, ref, labeling.MaxImageBytes)
	if err != nil {
		return nil, err
	}
	page, err := p.e.OCR.Read(ctx, img, []string{"ko", "en"})
	if err != nil {
		return nil, err
	}
	lines := page.Lines[:min(len(page.Lines), labeling.MaxTasksPerItem)]
	crops, err := media.CropsPNG(img, lines, 4)
	if err != nil {
		return nil, err
	}
	tasks := make([]*labelingv1.Task, len(lines))
	for i, line := range lines {
		id := labeling.TaskID(itemID, i)
		blob, err := p.put(ctx, id+".png", "image/png", crops[i])
		if err != nil {
			return nil, fmt.Errorf("store crop: %w", err)
		}
		tasks[i] = &labelingv1.Task{TaskId: id, ItemId: itemID, Media: media.RefToProto(blob),
			Box: &labelingv1.Box{X: int32(line.X), Y: int32(line.Y), W: int32(line.W), H: int32(line.H)}, Hint: line.Text}
	}
	return tasks, nil
}

func (p *preprocessor) audio(ctx context.Context, itemID string, ref media.BlobRef) ([]*labelingv1.Task, error) {
	pcm, err := p.pcm(ctx, ref)
	if err != nil {
		return nil, err
	}
	var tasks []*labelingv1.Task
	for _, span := range media.SplitSilences(pcm, media.SplitOptions{}) {
		if len(tasks) == labeling.MaxTasksPerItem {
			break
		}
		id := labeling.TaskID(itemID, len(tasks))
		blob, err := p.put(ctx, id+".wav", "audio/wav", media.ClipWAV(pcm, span))
		if err != nil {
			return nil, fmt.Errorf("store clip: %w", err)
		}
		tasks = append(tasks, &labelingv1.Task{TaskId: id, ItemId: itemID, Media: media.RefToProto(blob),
			StartMs: span.Start.Milliseconds(), EndMs: span.End.Milliseconds()})
	}
	return tasks, nil
}

// maxItemPCM bounds a recording's decoded audio: one hour.
var maxItemPCM = media.PCM.BytesPerSecond() * 3600

// pcm decodes a recording (WAV, or Ogg Opus through the Decoder) to
// media.PCM.
func (p *preprocessor) pcm(ctx context.Context, ref media.BlobRef) ([]byte, error) {
	if ref.ContentType == "audio/wav" {
		b, err := readBlob(ctx, p.e.Blobs, ref, labeling.MaxAudioBytes)
		if err != nil {
			return nil, err
		}
		return media.PCMFromWAV(b)
	}
	if p.e.Decoder == nil {
		return nil, fmt.Errorf("%w: no decoder for %s", media.ErrUnavailable, ref.ContentType)
	}
	r, _, err := p.e.Blobs.Open(ctx, ref.Bucket, ref.Name)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	in, out, err := p.e.Decoder.Decode(ctx, ref.ContentType)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	go func() {
		_, err := io.Copy(in, io.LimitReader(r, labeling.MaxAudioBytes))
		in.Close()
		_ = err // a short input ends the decoder's output with its error
	}()
	pcm, err := io.ReadAll(io.LimitReader(out, int64(maxItemPCM)+1))
	if err != nil {
		return nil, err
	}
	if len(pcm) > maxItemPCM {
		return nil, fmt.Errorf("%w: the recording is over %s", media.ErrUnusable, media.PCM.Duration(maxItemPCM))
	}
	if len(pcm) == 0 {
		return nil, errors.New("the decoder gave no audio")
	}
	return pcm, nil
}

// LabelingNotifyName is the stable name of the reaction that tells
// enterprises how their datasets fare.
const LabelingNotifyName = "labeling-notify"

// Poster posts a notification to a user's inbox (and their push
// subscriptions); notify.Service.Post is one. Posting the same id twice
// posts once.
type Poster func(ctx context.Context, userID string, n notify.Notification) error

// LabelingNotifications tell a dataset's owner when it is approved or
// rejected (with the reason) and when its preprocessing is finished
// (tasks made, items failed), in their inbox and by push (topic
// TOPIC_DATASET). Each notification's id derives from its event's, so
// a redelivered commit notifies once; one older than Config.MaxAge
// notifies not at all (Reaction.Notifies).
func LabelingNotifications(svc *labeling.Service, post Poster) Reaction {
	return Reaction{Name: LabelingNotifyName, Subjects: []string{"ev.labeling.dataset.>"}, Notifies: true, Handle: func(ctx context.Context, c es.Commit) error {
		for _, ev := range c.Events {
			var id, title, body string
			switch e := ev.Data.(type) {
			case *labelingv1.DatasetApproved:
				id, title, body = e.DatasetId, "Dataset approved", " was approved; its items are being cut into tasks."
			case *labelingv1.DatasetRejected:
				id, title, body = e.DatasetId, "Dataset rejected", " was rejected: "+e.Reason
			case *labelingv1.PreprocessingFinished:
				id, title = e.DatasetId, "Dataset ready for labeling"
				body = fmt.Sprintf(": %d tasks are ready for labelers", e.Tasks)
				if e.FailedItems > 0 {
					body += fmt.Sprintf("; %d items could not be used (see the dataset for why)", e.FailedItems)
				}
				body += "."
			default:
				continue
			}
			d, err := svc.DatasetNow(ctx, id)
			if err != nil {
				return err
			}
			n := notify.Notification{ID: es.DigestID("n", ev.ID), Topic: notify.TopicDataset, Title: title,
				Body: es.Truncate(d.Name+body, 1000)}
			if err := post(ctx, d.OwnerID, n); err != nil {
				return fmt.Errorf("notify %s: %w", d.OwnerID, err)
			}
		}
		return nil
	}}
}

// AlarmReminder is the notification of an alarm ringing at at.
func AlarmReminder(labelerID string, a labeling.Alarm, at time.Time) notify.Notification {
	return notify.Notification{ID: es.DigestID("n", "alarm", labelerID, a.ID, at.UTC().Format(time.RFC3339)), Topic: notify.TopicAlarmReminder,
		Title: "Good morning!", Body: fmt.Sprintf("It is %s: your wake-up mission is ready. Label %d items to turn off the alarm.", a.Time, labeling.DefaultMissionTasks)}
}
