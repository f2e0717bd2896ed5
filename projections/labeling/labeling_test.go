package labeling_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/labeling"
	labelingmodel "github.com/tideline/tideline/projections/labeling"
	labelingv1 "github.com/tideline/tideline/schemas/gen/tideline/labeling/v1"
)

var t0 = time.Date(2026, 12, 2, 6, 0, 0, 0, time.UTC)

type feed struct {
	m   *labelingmodel.Model
	seq uint64
}

func (f *feed) apply(stream es.StreamID, events ...proto.Message) {
	f.seq++
	for i, e := range events {
		f.m.Apply(es.Event{Data: e, Stream: stream, OccurredAt: t0, Position: es.Position{Seq: f.seq, Index: uint32(i)}})
	}
}

// dataset puts an approved dataset of n tasks wanting want labels each.
func (f *feed) dataset(id string, n int, want int32) []string {
	s := labeling.DatasetStream(id)
	f.apply(s, &labelingv1.DatasetCreated{DatasetId: id, OwnerId: "acme", Kind: labelingv1.Kind_KIND_OCR_IMAGES, LabelsPerItem: want, CreatedAt: timestamppb.New(t0)},
		&labelingv1.ItemsAdded{DatasetId: id, Items: []*labelingv1.Item{{ItemId: id + "-i"}}}, &labelingv1.DatasetApproved{DatasetId: id})
	item := &labelingv1.ItemPreprocessed{DatasetId: id, ItemId: id + "-i"}
	var ids []string
	for i := range n {
		tid := fmt.Sprintf("%s-t%d", id, i)
		ids = append(ids, tid)
		item.Tasks = append(item.Tasks, &labelingv1.Task{TaskId: tid})
	}
	f.apply(s, item, &labelingv1.PreprocessingFinished{DatasetId: id, Tasks: int32(n)})
	return ids
}

func (f *feed) mission(labeler, mission string, tasks ...*labelingv1.MissionTask) {
	f.apply(labeling.LabelerStream(labeler), &labelingv1.MissionStarted{MissionId: mission, LabelerId: labeler, Tasks: tasks,
		StartedAt: timestamppb.New(t0), Deadline: timestamppb.New(t0.Add(labeling.MissionTTL))})
}

func (f *feed) answer(labeler, mission string, tasks []*labelingv1.MissionTask, text string) {
	var events []proto.Message
	for _, t := range tasks {
		events = append(events, &labelingv1.AnswerSubmitted{MissionId: mission, LabelerId: labeler, TaskId: t.TaskId, DatasetId: t.DatasetId,
			Answer: text, Gold: t.Gold, Correct: t.Gold && text == t.GoldAnswer})
	}
	f.apply(labeling.LabelerStream(labeler), append(events, &labelingv1.MissionCompleted{MissionId: mission, LabelerId: labeler})...)
}

// Missions spread the labels: a task promised to an open mission, or
// labeled, comes after those with fewer; nobody gets a task twice; a
// task with its labels leaves the pool; an expired mission gives its
// tasks back.
func TestPickSpreadsLabels(t *testing.T) {
	f := &feed{m: labelingmodel.New()}
	f.dataset("d", 4, 2)
	first := f.m.Pick("kim", nil, 2, t0)
	if len(first) != 2 || first[0].TaskId != "d-t0" || first[1].TaskId != "d-t1" {
		t.Fatalf("first pick %v", first)
	}
	f.mission("kim", "m1", first...)
	second := f.m.Pick("lee", nil, 2, t0)
	if second[0].TaskId != "d-t2" || second[1].TaskId != "d-t3" {
		t.Fatalf("second pick %v: want the tasks nobody holds", second)
	}
	f.answer("kim", "m1", first, "x")
	seen := map[string]bool{"d-t0": true, "d-t1": true}
	if again := f.m.Pick("kim", seen, 4, t0); len(again) != 2 || again[0].TaskId != "d-t2" {
		t.Fatalf("kim again: %v", again)
	}
	f.mission("lee", "m2", f.m.Pick("lee", nil, 4, t0)...)
	f.mission("park", "m3", f.m.Pick("park", nil, 4, t0)...)
	// every task now has 2 labels or promises: none left for a fourth person.
	if left := f.m.Pick("choi", nil, 4, t0); len(left) != 0 {
		t.Fatalf("pool should be empty, got %v", left)
	}
	f.apply(labeling.LabelerStream("park"), &labelingv1.MissionExpired{MissionId: "m3", LabelerId: "park"})
	if back := f.m.Pick("choi", nil, 4, t0); len(back) == 0 {
		t.Fatal("the expired mission's tasks did not come back")
	}
	if due := f.m.DueForVerification()["d"]; len(due) != 0 {
		t.Fatalf("due %v: no task has 2 labels yet", due)
	}
}

// A task accepted unanimously by three becomes gold; every fourth
// mission of a labeler includes one they have not seen, with its answer.
func TestGoldTasks(t *testing.T) {
	f := &feed{m: labelingmodel.New()}
	f.dataset("d", 6, 3)
	tasks := []*labelingv1.MissionTask{{TaskId: "d-t0", DatasetId: "d"}}
	for i, who := range []string{"a", "b", "c"} {
		f.mission(who, fmt.Sprint("m", i), tasks...)
		f.answer(who, fmt.Sprint("m", i), tasks, "Seoul")
	}
	due := f.m.DueForVerification()["d"]
	if len(due) != 1 || len(due[0].Votes) != 3 || due[0].Votes[0].Weight != 0.5 {
		t.Fatalf("due %+v", due)
	}
	dec := labeling.DefaultAgreement.Decide(due[0].Task, due[0].Votes, due[0].Wanted)
	f.apply(labeling.DatasetStream("d"), &labelingv1.LabelsVerified{DatasetId: "d", Decisions: []*labelingv1.Decision{dec}})
	for i := range 3 {
		f.mission("kim", fmt.Sprint("k", i), f.m.Pick("kim", map[string]bool{}, 1, t0)...)
	}
	pick := f.m.Pick("kim", map[string]bool{}, 2, t0)
	if len(pick) != 2 || !pick[0].Gold || pick[0].TaskId != "d-t0" || pick[0].GoldAnswer != "Seoul" || pick[1].Gold {
		t.Fatalf("fourth mission %v: want the gold task first", pick)
	}
	f.answer("kim", "k3", pick[:1], "Seoul")
	if l := f.m.Labeler("kim"); l.GoldAnswered != 1 || l.GoldCorrect != 1 || l.Accuracy() != 2.0/3 {
		t.Fatalf("kim %+v", l)
	}
	if l := f.m.Labeler("a"); l.Accepted != 1 {
		t.Fatalf("a %+v", l)
	}
}

func TestRingsAndSnapshot(t *testing.T) {
	f := &feed{m: labelingmodel.New()}
	f.dataset("d", 2, 1)
	f.apply(labeling.LabelerStream("kim"), &labelingv1.AlarmSet{AlarmId: "wake", Time: "15:30", TimeZone: "Asia/Seoul", Enabled: true},
		&labelingv1.AlarmSet{AlarmId: "off", Time: "15:30", TimeZone: "Asia/Seoul"})
	// 15:30 in Seoul is 06:30 UTC.
	if r := f.m.Rings(t0.Add(29*time.Minute), t0.Add(31*time.Minute)); len(r) != 1 || r[0].Alarm.ID != "wake" || !r[0].At.Equal(t0.Add(30*time.Minute)) {
		t.Fatalf("rings %+v", r)
	}
	if r := f.m.Rings(t0.Add(30*time.Minute), t0.Add(40*time.Minute)); len(r) != 0 {
		t.Fatalf("rang twice: %+v", r)
	}
	snap, err := f.m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	g := labelingmodel.New()
	if err := g.Restore(snap); err != nil {
		t.Fatal(err)
	}
	if g.Position() != f.m.Position() || len(g.Pick("kim", nil, 5, t0)) != 2 || len(g.Rings(t0, t0.Add(time.Hour))) != 1 {
		t.Fatal("the restored model differs")
	}
	if err := g.Restore([]byte("{}")); err == nil {
		t.Fatal("an empty snapshot restored")
	}
}

// Whatever happened before, Pick gives the neediest tasks: none left out
// has fewer labels than one picked, and none picked has its labels.
// Thousands of moves between the pool's buckets exercise its compaction,
// and a model restored from a snapshot picks alike.
func TestPickGivesTheNeediest(t *testing.T) {
	f := &feed{m: labelingmodel.New()}
	ids := f.dataset("d", 3000, 3)
	rng := rand.New(rand.NewPCG(1, 2))
	labels := map[string]int{}
	for i := range 2000 {
		who := fmt.Sprint("l", i%50)
		var tasks []*labelingv1.MissionTask
		for range 3 {
			tasks = append(tasks, &labelingv1.MissionTask{TaskId: ids[rng.IntN(len(ids))], DatasetId: "d"})
		}
		mission := fmt.Sprint("m", i)
		f.mission(who, mission, tasks...)
		if rng.IntN(3) == 0 {
			f.apply(labeling.LabelerStream(who), &labelingv1.MissionExpired{MissionId: mission, LabelerId: who})
			continue
		}
		f.answer(who, mission, tasks, "x")
		for _, t := range tasks {
			labels[t.TaskId]++
		}
	}
	snap, err := f.m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	restored := labelingmodel.New()
	if err := restored.Restore(snap); err != nil {
		t.Fatal(err)
	}
	for name, m := range map[string]*labelingmodel.Model{"live": f.m, "restored": restored} {
		picked := m.Pick("newcomer", nil, 50, t0)
		if len(picked) != 50 {
			t.Fatalf("%s: picked %d", name, len(picked))
		}
		most, chosen := 0, map[string]bool{}
		for _, p := range picked {
			chosen[p.TaskId] = true
			most = max(most, labels[p.TaskId])
		}
		for _, id := range ids {
			if n := labels[id]; !chosen[id] && n < 3 && n < most {
				t.Fatalf("%s: %s with %d labels left out for one with %d", name, id, n, most)
			}
		}
		if most >= 3 {
			t.Fatalf("%s: picked a task that has its labels", name)
		}
	}
}
