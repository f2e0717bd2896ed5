package lecture_test

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/tideline/tideline/domain/es"
	tr "github.com/tideline/tideline/domain/transcription"
	lecturemodel "github.com/tideline/tideline/projections/lecture"
	transcriptionv1 "github.com/tideline/tideline/schemas/gen/tideline/transcription/v1"
)

func apply(m *lecturemodel.Model, seq uint64, owner, id string, d proto.Message) {
	m.Apply(es.Event{Data: d, Position: es.Position{Seq: seq}, Stream: tr.Stream(owner, id)})
}

func TestLectureList(t *testing.T) {
	m := lecturemodel.New()
	apply(m, 1, "kim", "l1", &transcriptionv1.LectureStarted{LectureId: "l1", OwnerId: "kim", Title: "graphs"})
	apply(m, 2, "lee", "l1", &transcriptionv1.LectureStarted{LectureId: "l1", OwnerId: "lee"}) // lee's l1 is another lecture
	apply(m, 3, "kim", "l1", &transcriptionv1.SegmentTranscribed{LectureId: "l1"})
	apply(m, 4, "kim", "l1", &transcriptionv1.SegmentTranscribed{LectureId: "l1", Index: 1})
	apply(m, 5, "kim", "l1", &transcriptionv1.LectureEnded{LectureId: "l1"})
	apply(m, 6, "kim", "l2", &transcriptionv1.LectureStarted{LectureId: "l2", OwnerId: "kim"})
	list, total := m.List("kim", 10)
	if total != 2 || list[0].LectureId != "l2" || list[1].Segments != 2 || list[1].State != transcriptionv1.LectureState_LECTURE_STATE_ENDED {
		t.Fatalf("kim's lectures: %v (total %d)", list, total)
	}
	if lees, _ := m.List("lee", 10); len(lees) != 1 || lees[0].Segments != 0 {
		t.Fatalf("lee's lectures: %v", lees)
	}
	list[0].Title = "changed" // a caller's copy
	snap, err := m.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	r := lecturemodel.New()
	if err := r.Restore(snap); err != nil {
		t.Fatal(err)
	}
	apply(r, 7, "kim", "l2", &transcriptionv1.SegmentTranscribed{LectureId: "l2"}) // restored stream ids still match
	apply(m, 7, "kim", "l2", &transcriptionv1.SegmentTranscribed{LectureId: "l2"})
	for _, owner := range []string{"kim", "lee"} {
		a, _ := m.List(owner, 10)
		b, _ := r.List(owner, 10)
		if fmt.Sprint(a) != fmt.Sprint(b) {
			t.Fatalf("%s: restored %v, want %v", owner, b, a)
		}
	}
}
