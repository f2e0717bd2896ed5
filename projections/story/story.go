// Package story is storytime's read model: each user's stories, newest
// first, with their stage. It keeps a summary (about 200 bytes) per story
// and at most MaxPerUser stories per user (the oldest summaries go
// first; the stories themselves stay in the event store, where GetStory
// reads them).
package story

import (
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/projections"
	storyv1 "github.com/tideline/tideline/schemas/gen/tideline/story/v1"
)

// Name is the projection's stable name.
const Name = "story"

// MaxPerUser bounds the summaries kept per user.
const MaxPerUser = 1000

type summary struct {
	id                 string
	stage              storyv1.Stage
	requested, updated time.Time
}

// Model is users' story lists. Safe for queries concurrent with Apply.
type Model struct {
	mu   sync.RWMutex
	list *projections.Recent[summary] // by user, keyed by story id
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
func (m *Model) Subjects() []string { return []string{"ev.story.story.>"} }

// EventTypes lists the events the model reads.
func (m *Model) EventTypes() []string {
	return projections.TypeNames((*storyv1.StoryRequested)(nil), (*storyv1.TextExtracted)(nil),
		(*storyv1.SpeechSynthesized)(nil), (*storyv1.StoryFailed)(nil), (*storyv1.UserNotified)(nil))
}

// Reset empties the model.
func (m *Model) Reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.list, m.pos = projections.NewRecent[summary](MaxPerUser), 0
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
	stage := func(id string, st storyv1.Stage) {
		if s := m.list.Get(id); s != nil && (st != storyv1.Stage_STAGE_NOTIFIED || s.stage != storyv1.Stage_STAGE_FAILED) {
			s.stage, s.updated = st, e.OccurredAt
		}
	}
	switch d := e.Data.(type) {
	case *storyv1.StoryRequested:
		m.list.Add(d.UserId, d.StoryId, summary{id: d.StoryId, stage: storyv1.Stage_STAGE_REQUESTED,
			requested: d.RequestedAt.AsTime(), updated: e.OccurredAt})
	case *storyv1.TextExtracted:
		stage(d.StoryId, storyv1.Stage_STAGE_TEXT_EXTRACTED)
	case *storyv1.SpeechSynthesized:
		stage(d.StoryId, storyv1.Stage_STAGE_SPEECH_SYNTHESIZED)
	case *storyv1.StoryFailed:
		stage(d.StoryId, storyv1.Stage_STAGE_FAILED)
	case *storyv1.UserNotified:
		stage(d.StoryId, storyv1.Stage_STAGE_NOTIFIED) // a failed story stays failed
	}
}

// List returns user's latest stories, newest first, at most limit, and
// how many the model holds for them.
func (m *Model) List(user string, limit int) ([]*storyv1.StorySummary, int) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	list, total := m.list.Newest(user, limit)
	out := make([]*storyv1.StorySummary, len(list))
	for i, s := range list {
		out[i] = &storyv1.StorySummary{StoryId: s.id, Stage: s.stage,
			RequestedAt: timestamppb.New(s.requested), UpdatedAt: timestamppb.New(s.updated)}
	}
	return out, total
}

// Updated returns when story id last changed, if the model has it.
func (m *Model) Updated(id string) (time.Time, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if s := m.list.Get(id); s != nil {
		return s.updated, true
	}
	return time.Time{}, false
}

var framed = projections.Framed{Magic: "tlstory1"}

// Snapshot serializes the model.
func (m *Model) Snapshot() ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	msgs := make([]proto.Message, 0, m.list.Len())
	m.list.Each(func(user, _ string, s summary) {
		msgs = append(msgs, &storyv1.Story{StoryId: s.id, UserId: user, Stage: s.stage,
			RequestedAt: timestamppb.New(s.requested), UpdatedAt: timestamppb.New(s.updated)})
	})
	return framed.Marshal(m.pos, msgs)
}

// Restore replaces the model with a snapshot's.
func (m *Model) Restore(data []byte) error {
	list := projections.NewRecent[summary](MaxPerUser)
	pos, err := framed.Unmarshal(data, func() proto.Message { return new(storyv1.Story) }, func(msg proto.Message) error {
		st := msg.(*storyv1.Story)
		list.Add(st.UserId, st.StoryId, summary{id: st.StoryId, stage: st.Stage, requested: st.RequestedAt.AsTime(), updated: st.UpdatedAt.AsTime()})
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
