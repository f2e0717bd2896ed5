package labeling_test

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/labeling"
	"github.com/tideline/tideline/domain/media"
	labelingv1 "github.com/tideline/tideline/schemas/gen/tideline/labeling/v1"
)

var t0 = time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)

// given folds events into a state with d.Evolve.
func given[S, C any](d es.Decider[S, C], events ...proto.Message) S {
	s := d.Initial()
	for _, e := range events {
		s = d.Evolve(s, e)
	}
	return s
}

// decide runs cmds one after another, folding each decision's events.
func decide[S, C any](t *testing.T, d es.Decider[S, C], s S, cmds ...C) (S, []proto.Message, error) {
	t.Helper()
	var all []proto.Message
	for _, c := range cmds {
		events, err := d.Decide(s, c)
		if err != nil {
			return s, all, err
		}
		for _, e := range events {
			s = d.Evolve(s, e)
		}
		all = append(all, events...)
	}
	return s, all, nil
}

func blob(sha string) media.BlobRef {
	return media.BlobRef{Bucket: labeling.Bucket, Name: "x-" + sha, SHA256: sha, Size: 10, ContentType: "image/png"}
}

func created() *labelingv1.DatasetCreated {
	return &labelingv1.DatasetCreated{DatasetId: "d1", OwnerId: "acme", Name: "receipts", Kind: labelingv1.Kind_KIND_OCR_IMAGES, LabelsPerItem: 3}
}

func TestDatasetLifecycle(t *testing.T) {
	d := given(labeling.DatasetDecider, created())
	var events []proto.Message
	var err error
	d, events, err = decide[labeling.Dataset, labeling.DatasetCommand](t, labeling.DatasetDecider, d,
		(labeling.AddItems{Items: []media.BlobRef{blob("a"), blob("b"), blob("a")}}),
		labeling.AddItems{Items: []media.BlobRef{blob("b"), blob("c")}},
		labeling.Submit{}, labeling.Submit{},
		labeling.Review{Approve: true, Reviewer: "root"},
		labeling.RecordTasks{ItemID: labeling.ItemID("d1", "a"), Tasks: []*labelingv1.Task{{TaskId: "t1"}, {TaskId: "t2"}}},
		labeling.RecordTasks{ItemID: labeling.ItemID("d1", "a"), Tasks: []*labelingv1.Task{{TaskId: "t1"}}},
		labeling.FailItem{ItemID: labeling.ItemID("d1", "b"), Reason: "not an image", Attempts: 1},
		labeling.RecordTasks{ItemID: labeling.ItemID("d1", "c"), Tasks: []*labelingv1.Task{{TaskId: "t3"}}},
	)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, e := range events {
		types = append(types, string(e.ProtoReflect().Descriptor().Name()))
	}
	want := []string{"ItemsAdded", "ItemsAdded", "DatasetSubmitted", "DatasetApproved", "ItemPreprocessed", "ItemFailed", "ItemPreprocessed", "PreprocessingFinished"}
	if len(types) != len(want) {
		t.Fatalf("events %v, want %v", types, want)
	}
	for i := range want {
		if types[i] != want[i] {
			t.Fatalf("events %v, want %v", types, want)
		}
	}
	if n := len(events[0].(*labelingv1.ItemsAdded).Items); n != 2 {
		t.Fatalf("first add recorded %d items, want 2 (a duplicate in the request)", n)
	}
	if n := len(events[1].(*labelingv1.ItemsAdded).Items); n != 1 {
		t.Fatalf("second add recorded %d items, want 1 (b was there)", n)
	}
	fin := events[len(events)-1].(*labelingv1.PreprocessingFinished)
	if fin.Tasks != 3 || fin.FailedItems != 1 || d.State != labelingv1.State_STATE_LABELING {
		t.Fatalf("finished %+v, state %v", fin, d.State)
	}
}

func TestDatasetRules(t *testing.T) {
	draft := given(labeling.DatasetDecider, created())
	withItem := given(labeling.DatasetDecider, created(), &labelingv1.ItemsAdded{DatasetId: "d1", Items: []*labelingv1.Item{{ItemId: "i1", Blob: media.RefToProto(blob("a"))}}})
	submitted := labeling.DatasetDecider.Evolve(withItem, &labelingv1.DatasetSubmitted{DatasetId: "d1"})
	approved := labeling.DatasetDecider.Evolve(submitted, &labelingv1.DatasetApproved{DatasetId: "d1"})
	rejected := labeling.DatasetDecider.Evolve(submitted, &labelingv1.DatasetRejected{DatasetId: "d1", Reason: "blurry"})
	for _, tc := range []struct {
		name  string
		state labeling.Dataset
		cmd   labeling.DatasetCommand
		want  error
	}{
		{"unknown_dataset_is_not_found", labeling.Dataset{}, labeling.Submit{}, labeling.ErrDatasetNotFound},
		{"empty_dataset_cannot_be_submitted", draft, labeling.Submit{}, labeling.ErrNoItems},
		{"draft_cannot_be_reviewed", withItem, labeling.Review{Approve: true}, labeling.ErrNotSubmitted},
		{"approved_takes_no_items", approved, labeling.AddItems{Items: []media.BlobRef{blob("z")}}, labeling.ErrNotDraft},
		{"submitted_takes_no_items", submitted, labeling.AddItems{Items: []media.BlobRef{blob("z")}}, labeling.ErrNotDraft},
		{"draft_is_not_preprocessed", withItem, labeling.RecordTasks{ItemID: "i1"}, labeling.ErrNotApproved},
		{"draft_is_not_verified", withItem, labeling.Verify{}, labeling.ErrNotApproved},
		{"rejected_takes_items_again", rejected, labeling.AddItems{Items: []media.BlobRef{blob("z")}}, nil},
		{"rejected_may_be_resubmitted", rejected, labeling.Submit{}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := labeling.DatasetDecider.Decide(tc.state, tc.cmd)
			if !errors.Is(err, tc.want) && !(tc.want == nil && err == nil) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestVerifyIsIdempotent(t *testing.T) {
	d := given(labeling.DatasetDecider, created(), &labelingv1.DatasetApproved{DatasetId: "d1"})
	votes := func(n int) []*labelingv1.Vote { return make([]*labelingv1.Vote, n) }
	more := &labelingv1.Decision{TaskId: "t1", Outcome: labelingv1.Outcome_OUTCOME_NEEDS_MORE, Votes: votes(3)}
	accepted := &labelingv1.Decision{TaskId: "t1", Outcome: labelingv1.Outcome_OUTCOME_ACCEPTED, Votes: votes(5)}
	d, events, err := decide[labeling.Dataset, labeling.DatasetCommand](t, labeling.DatasetDecider, d,
		(labeling.Verify{Decisions: []*labelingv1.Decision{more}}),
		labeling.Verify{Decisions: []*labelingv1.Decision{more}},     // the same batch again: nothing
		labeling.Verify{Decisions: []*labelingv1.Decision{accepted}}, // on more labels: decided
		labeling.Verify{Decisions: []*labelingv1.Decision{accepted}}, // closed: nothing
	)
	if err != nil || len(events) != 2 {
		t.Fatalf("%d events, %v; want 2", len(events), err)
	}
	if d.Verified["t1"] != -1 {
		t.Fatalf("t1 verified %d, want closed", d.Verified["t1"])
	}
}

func mission(tasks ...string) []*labelingv1.MissionTask {
	var out []*labelingv1.MissionTask
	for _, id := range tasks {
		out = append(out, &labelingv1.MissionTask{TaskId: id, DatasetId: "d1"})
	}
	return out
}

func TestMission(t *testing.T) {
	start := labeling.StartMission{LabelerID: "kim", Tasks: mission("t1", "t2"), Now: t0}
	l, events, err := decide[labeling.Labeler, labeling.LabelerCommand](t, labeling.LabelerDecider, labeling.Labeler{}, (start))
	if err != nil || len(events) != 1 {
		t.Fatal(events, err)
	}
	id := l.Open.ID
	if id != labeling.MissionID("kim", 0) {
		t.Fatalf("mission id %s", id)
	}
	if _, err := labeling.LabelerDecider.Decide(l, labeling.StartMission{LabelerID: "kim", Tasks: mission("t3"), Now: t0.Add(time.Minute)}); err == nil {
		t.Fatal("a second mission opened while one is open")
	}
	answer := func(task, text string, at time.Time) labeling.SubmitAnswers {
		return labeling.SubmitAnswers{MissionID: id, Answers: []labeling.AnswerText{{TaskID: task, Text: text}}, Now: at}
	}
	_, err = labeling.LabelerDecider.Decide(l, labeling.SubmitAnswers{MissionID: id, Answers: []labeling.AnswerText{{TaskID: "t9", Text: "x"}}, Now: t0})
	var ee *es.Error
	if !errors.As(err, &ee) || ee.Kind != es.Invalid || ee.Field != "answers[0].task_id" {
		t.Fatalf("answer to a task not in the mission: %v", err)
	}
	l, events, err = decide[labeling.Labeler, labeling.LabelerCommand](t, labeling.LabelerDecider, l, (answer("t1", "  Hello  world ", t0.Add(time.Minute))), answer("t1", "again", t0.Add(2*time.Minute)))
	if err != nil || len(events) != 1 || events[0].(*labelingv1.AnswerSubmitted).Answer != "Hello world" {
		t.Fatalf("first answer: %v %v (a retried answer must append nothing)", events, err)
	}
	if _, err := labeling.LabelerDecider.Decide(l, answer("t2", "late", t0.Add(labeling.MissionTTL))); !errors.Is(err, labeling.ErrMissionExpired) {
		t.Fatalf("answer after the deadline: %v", err)
	}
	l, events, err = decide[labeling.Labeler, labeling.LabelerCommand](t, labeling.LabelerDecider, l, (answer("t2", "bye", t0.Add(3*time.Minute))))
	if err != nil || len(events) != 2 {
		t.Fatal(events, err)
	}
	if _, ok := events[1].(*labelingv1.MissionCompleted); !ok || l.Open != nil || l.Completed != 1 {
		t.Fatalf("last answer did not complete: %v", events)
	}
	// Never the same task twice: t1 and t2 are dropped, t3 given.
	l, events, err = decide[labeling.Labeler, labeling.LabelerCommand](t, labeling.LabelerDecider, l, (labeling.StartMission{LabelerID: "kim", Tasks: mission("t1", "t2", "t3"), Now: t0.Add(time.Hour)}))
	if err != nil || len(l.Open.Tasks) != 1 || l.Open.Tasks[0].TaskId != "t3" || l.Open.ID == id {
		t.Fatalf("second mission %+v %v", l.Open, err)
	}
	if _, err := labeling.LabelerDecider.Decide(l, labeling.StartMission{LabelerID: "kim", Tasks: mission("t1"), Now: t0.Add(3 * time.Hour)}); !errors.Is(err, labeling.ErrNoTasks) {
		t.Fatalf("only seen tasks: %v", err)
	}
	// An expired open mission is recorded expired when the next starts.
	_, events, err = decide[labeling.Labeler, labeling.LabelerCommand](t, labeling.LabelerDecider, l, (labeling.StartMission{LabelerID: "kim", Tasks: mission("t4"), Now: t0.Add(3 * time.Hour)}))
	if err != nil || len(events) != 2 {
		t.Fatal(events, err)
	}
	if e, ok := events[0].(*labelingv1.MissionExpired); !ok || e.Answered != 0 {
		t.Fatalf("first event %v, want MissionExpired", events[0])
	}
}

func TestGoldAnswersAreGraded(t *testing.T) {
	tasks := []*labelingv1.MissionTask{{TaskId: "g", Gold: true, GoldAnswer: "Seoul Station"}, {TaskId: "t"}}
	l := given(labeling.LabelerDecider, &labelingv1.MissionStarted{MissionId: "m", LabelerId: "kim", Tasks: tasks, Deadline: nil})
	l.Open.Deadline = t0.Add(time.Hour)
	events, err := labeling.LabelerDecider.Decide(l, labeling.SubmitAnswers{MissionID: "m", Now: t0,
		Answers: []labeling.AnswerText{{TaskID: "g", Text: "seoul  statoin"}, {TaskID: "t", Text: "x"}}})
	if err != nil {
		t.Fatal(err)
	}
	if g := events[0].(*labelingv1.AnswerSubmitted); !g.Gold || !g.Correct {
		t.Fatalf("a near-exact gold answer: %+v", g)
	}
	l = given(labeling.LabelerDecider, append([]proto.Message{&labelingv1.MissionStarted{MissionId: "m", LabelerId: "kim", Tasks: tasks}}, events...)...)
	if l.GoldAnswered != 1 || l.GoldCorrect != 1 {
		t.Fatalf("gold %d/%d", l.GoldCorrect, l.GoldAnswered)
	}
}
