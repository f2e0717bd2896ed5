// Package lecture is the lectures' read model: each owner's lectures,
// newest first, with their state and segment count. It keeps a summary
// (about 250 bytes) per lecture and at most MaxPerOwner lectures per
// owner (the oldest summaries go first; the transcripts stay in the
// event store, where GetLecture reads them).
package lecture

import (
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/tideline/tideline/domain/es"
	tr "github.com/tideline/tideline/domain/transcription"
	"github.com/tideline/tideline/projections"
	transcriptionv1 "github.com/tideline/tideline/schemas/gen/tideline/transcription/v1"
)

// Name is the projection's stable name.
const Name = "lectures"

// MaxPerOwner bounds the summaries kept per owner.
const MaxPerOwner = 1000

// Model is owners' lecture lists. Safe for queries concurrent with Apply.
type Model struct {
	mu   sync.RWMutex
	list *projections.Recent[*transcriptionv1.LectureSummary] // by owner, keyed by the lecture's stream id
	pos  uint64
}

var (
	_ projections.Projection = (*Model)(nil)
	_ projections.Scoped     = (*Model)(nil)
	_ projections.Selective  = (*Model)(nil)
)

// New returns an empty model.
func New() *Model {
	m := &Model{}
	m.Reset()
	return m
}

func (m *Model) Name() string { return Name }
func (m *Model) Version() int { return 1 }

// Subjects lists the streams the model reads.
func (m *Model) Subjects() []string { return []string{"ev.transcription.lecture.>"} }

// EventTypes lists the events the model reads; every lecture event, so
// that watchers of a lecture wake on each of its changes.
func (m *Model) EventTypes() []string {
	return projections.TypeNames((*transcriptionv1.LectureStarted)(nil), (*transcriptionv1.SegmentTranscribed)(nil),
		(*transcriptionv1.LectureEnded)(nil), (*transcriptionv1.LectureFailed)(nil), (*transcriptionv1.RestructureRequested)(nil),
		(*transcriptionv1.LectureRestructured)(nil), (*transcriptionv1.RestructureFailed)(nil))
}

// Reset empties the model.
func (m *Model) Reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.list, m.pos = projections.NewRecent[*transcriptionv1.LectureSummary](MaxPerOwner), 0
}

// Position is the last applied position.
func (m *Model) Position() uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.pos
}

// Apply folds e.
func (m *Model) Apply(e es.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pos = e.Position.Seq
	if d, ok := e.Data.(*transcriptionv1.LectureStarted); ok {
		m.list.Add(d.OwnerId, e.Stream.ID, &transcriptionv1.LectureSummary{LectureId: d.LectureId, OwnerId: d.OwnerId, Title: d.Title,
			State: transcriptionv1.LectureState_LECTURE_STATE_LIVE, StartedAt: d.StartedAt})
		return
	}
	p := m.list.Get(e.Stream.ID)
	if p == nil {
		return
	}
	switch s := *p; e.Data.(type) {
	case *transcriptionv1.SegmentTranscribed:
		s.Segments++
	case *transcriptionv1.LectureEnded:
		s.State = transcriptionv1.LectureState_LECTURE_STATE_ENDED
	case *transcriptionv1.LectureFailed:
		s.State = transcriptionv1.LectureState_LECTURE_STATE_FAILED
	}
}

// List returns owner's latest lectures, newest first, at most limit, and
// how many the model holds for them.
func (m *Model) List(owner string, limit int) ([]*transcriptionv1.LectureSummary, int) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	list, total := m.list.Newest(owner, limit)
	for i, s := range list {
		list[i] = proto.Clone(s).(*transcriptionv1.LectureSummary)
	}
	return list, total
}

var framed = projections.Framed{Magic: "tllecture1"}

// Snapshot serializes the model.
func (m *Model) Snapshot() ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	msgs := make([]proto.Message, 0, m.list.Len())
	m.list.Each(func(_, _ string, s *transcriptionv1.LectureSummary) { msgs = append(msgs, s) })
	return framed.Marshal(m.pos, msgs)
}

// Restore replaces the model with a snapshot's. Each summary's stream id
// is derived from its owner and lecture id, as the stream's is.
func (m *Model) Restore(data []byte) error {
	list := projections.NewRecent[*transcriptionv1.LectureSummary](MaxPerOwner)
	pos, err := framed.Unmarshal(data, func() proto.Message { return new(transcriptionv1.LectureSummary) }, func(msg proto.Message) error {
		s := msg.(*transcriptionv1.LectureSummary)
		list.Add(s.OwnerId, tr.Stream(s.OwnerId, s.LectureId).ID, s)
		return nil
	})
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.list, m.pos = list, pos
	return nil
}
