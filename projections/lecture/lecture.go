// Package lecture is the lectures' read model: each owner's lectures,
// newest first, with their state and segment count. It keeps a summary
// (about 250 bytes) per lecture and at most MaxPerOwner lectures per
// owner (the oldest summaries go first; the transcripts stay in the
// event store, where GetLecture reads them).
package lecture

import (
	"slices"
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
	mu       sync.RWMutex
	byOwner  map[string][]*transcriptionv1.LectureSummary // in order of start
	byStream map[string]*transcriptionv1.LectureSummary   // by the lecture's stream id
	pos      uint64
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
	var ts []string
	for _, e := range []proto.Message{(*transcriptionv1.LectureStarted)(nil), (*transcriptionv1.SegmentTranscribed)(nil),
		(*transcriptionv1.LectureEnded)(nil), (*transcriptionv1.LectureFailed)(nil), (*transcriptionv1.RestructureRequested)(nil),
		(*transcriptionv1.LectureRestructured)(nil), (*transcriptionv1.RestructureFailed)(nil)} {
		ts = append(ts, string(e.ProtoReflect().Descriptor().FullName()))
	}
	return ts
}

// Reset empties the model.
func (m *Model) Reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.byOwner, m.byStream, m.pos = map[string][]*transcriptionv1.LectureSummary{}, map[string]*transcriptionv1.LectureSummary{}, 0
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
		if m.byStream[e.Stream.ID] == nil {
			m.add(&transcriptionv1.LectureSummary{LectureId: d.LectureId, OwnerId: d.OwnerId, Title: d.Title,
				State: transcriptionv1.LectureState_LECTURE_STATE_LIVE, StartedAt: d.StartedAt})
		}
		return
	}
	s := m.byStream[e.Stream.ID]
	if s == nil {
		return
	}
	switch e.Data.(type) {
	case *transcriptionv1.SegmentTranscribed:
		s.Segments++
	case *transcriptionv1.LectureEnded:
		s.State = transcriptionv1.LectureState_LECTURE_STATE_ENDED
	case *transcriptionv1.LectureFailed:
		s.State = transcriptionv1.LectureState_LECTURE_STATE_FAILED
	}
}

func (m *Model) add(s *transcriptionv1.LectureSummary) {
	list := append(m.byOwner[s.OwnerId], s)
	if len(list) > MaxPerOwner {
		delete(m.byStream, tr.Stream(list[0].OwnerId, list[0].LectureId).ID)
		list = slices.Delete(list, 0, 1)
	}
	m.byOwner[s.OwnerId] = list
	m.byStream[tr.Stream(s.OwnerId, s.LectureId).ID] = s
}

// List returns owner's latest lectures, newest first, at most limit, and
// how many the model holds for them.
func (m *Model) List(owner string, limit int) ([]*transcriptionv1.LectureSummary, int) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	list := m.byOwner[owner]
	out := make([]*transcriptionv1.LectureSummary, 0, min(limit, len(list)))
	for i := len(list) - 1; i >= 0 && len(out) < limit; i-- {
		out = append(out, proto.Clone(list[i]).(*transcriptionv1.LectureSummary))
	}
	return out, len(list)
}

var framed = projections.Framed{Magic: "tllecture1"}

// Snapshot serializes the model.
func (m *Model) Snapshot() ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	msgs := make([]proto.Message, 0, len(m.byStream))
	for _, list := range m.byOwner {
		for _, s := range list {
			msgs = append(msgs, s)
		}
	}
	return framed.Marshal(m.pos, msgs)
}

// Restore replaces the model with a snapshot's.
func (m *Model) Restore(data []byte) error {
	fresh := New()
	pos, err := framed.Unmarshal(data, func() proto.Message { return new(transcriptionv1.LectureSummary) }, func(msg proto.Message) error {
		fresh.add(msg.(*transcriptionv1.LectureSummary))
		return nil
	})
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.byOwner, m.byStream, m.pos = fresh.byOwner, fresh.byStream, pos
	return nil
}
