package story_test

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/es"
	storymodel "github.com/tideline/tideline/projections/story"
	storyv1 "github.com/tideline/tideline/schemas/gen/tideline/story/v1"
)

var t0 = time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)

func apply(m *storymodel.Model, seq uint64, d proto.Message) {
	m.Apply(es.Event{Data: d, Position: es.Position{Seq: seq}, OccurredAt: t0.Add(time.Duration(seq) * time.Second)})
}

func requested(id, user string, seq uint64) *storyv1.StoryRequested {
	return &storyv1.StoryRequested{StoryId: id, UserId: user, RequestedAt: timestamppb.New(t0.Add(time.Duration(seq) * time.Second))}
}

func TestListNewestFirstWithStages(t *testing.T) {
	m := storymodel.New()
	apply(m, 1, requested("s1", "kim", 1))
	apply(m, 2, requested("s2", "kim", 2))
	apply(m, 3, requested("s3", "lee", 3))
	apply(m, 4, &storyv1.TextExtracted{StoryId: "s1"})
	apply(m, 5, &storyv1.StoryFailed{StoryId: "s2"})
	apply(m, 6, &storyv1.UserNotified{StoryId: "s2"}) // a failed story stays failed
	apply(m, 7, requested("s1", "kim", 7))            // a replayed request changes nothing
	list, total := m.List("kim", 10)
	if total != 2 || len(list) != 2 || list[0].StoryId != "s2" || list[1].StoryId != "s1" {
		t.Fatalf("kim's list = %v (total %d), want s2, s1", list, total)
	}
	if list[0].Stage != storyv1.Stage_STAGE_FAILED || list[1].Stage != storyv1.Stage_STAGE_TEXT_EXTRACTED {
		t.Fatalf("stages = %v, %v", list[0].Stage, list[1].Stage)
	}
	if at, ok := m.Updated("s1"); !ok || !at.Equal(t0.Add(4*time.Second)) {
		t.Fatalf("s1 updated = %v, %v", at, ok)
	}
	if m.Position() != 7 {
		t.Fatalf("position = %d", m.Position())
	}
	snap, err := m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	r := storymodel.New()
	if err := r.Restore(snap); err != nil {
		t.Fatal(err)
	}
	for _, user := range []string{"kim", "lee"} {
		a, _ := m.List(user, 10)
		b, _ := r.List(user, 10)
		if fmt.Sprint(a) != fmt.Sprint(b) {
			t.Fatalf("%s: restored %v, want %v", user, b, a)
		}
	}
	if r.Position() != 7 {
		t.Fatalf("restored position = %d", r.Position())
	}
}

func TestListKeepsAtMostMaxPerUser(t *testing.T) {
	m := storymodel.New()
	n := storymodel.MaxPerUser + 5
	for i := 1; i <= n; i++ {
		apply(m, uint64(i), requested(fmt.Sprintf("s%d", i), "kim", uint64(i)))
	}
	list, total := m.List("kim", 1)
	if total != storymodel.MaxPerUser || list[0].StoryId != fmt.Sprintf("s%d", n) {
		t.Fatalf("total %d, newest %v", total, list)
	}
	if _, ok := m.Updated("s1"); ok {
		t.Fatal("the oldest summary should be gone")
	}
}
