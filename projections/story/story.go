// Package story is storytime's read model: each user's stories, newest
// first, with their stage. It keeps a summary (about 200 bytes) per story
// and at most MaxPerUser stories per user (the oldest summaries go
// first; the stories themselves stay in the event store, where GetStory
// reads them).
package story

import (
	"slices"
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
	id, user           string
	stage              storyv1.Stage
	requested, updated time.Time
}

// Model is users' story lists. Safe for queries concurrent with Apply.
type Model struct {
	mu     sync.RWMutex
	byUser map[string][]*summary // in order of request
	byID   map[string]*summary
	pos    uint64
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
	var ts []string
	for _, e := range []proto.Message{(*storyv1.StoryRequested)(nil), (*storyv1.TextExtracted)(nil),
		(*storyv1.SpeechSynthesized)(nil), (*storyv1.StoryFailed)(nil), (*storyv1.UserNotified)(nil)} {
		ts = append(ts, string(e.ProtoReflect().Descriptor().FullName()))
	}
	return ts
}

// Reset empties the model.
func (m *Model) Reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.byUser, m.byID, m.pos = map[string][]*summary{}, map[string]*summary{}, 0
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
	switch d := e.Data.(type) {
	case *storyv1.StoryRequested:
		if m.byID[d.StoryId] != nil {
			return
		}
		s := &summary{id: d.StoryId, user: d.UserId, stage: storyv1.Stage_STAGE_REQUESTED,
			requested: d.RequestedAt.AsTime(), updated: e.OccurredAt}
		m.add(s)
	case *storyv1.TextExtracted:
		m.stage(d.StoryId, storyv1.Stage_STAGE_TEXT_EXTRACTED, e.OccurredAt)
	case *storyv1.SpeechSynthesized:
		m.stage(d.StoryId, storyv1.Stage_STAGE_SPEECH_SYNTHESIZED, e.OccurredAt)
	case *storyv1.StoryFailed:
		m.stage(d.StoryId, storyv1.Stage_STAGE_FAILED, e.OccurredAt)
	case *storyv1.UserNotified:
		if s := m.byID[d.StoryId]; s != nil && s.stage != storyv1.Stage_STAGE_FAILED {
			m.stage(d.StoryId, storyv1.Stage_STAGE_NOTIFIED, e.OccurredAt)
		}
	}
}

func (m *Model) add(s *summary) {
	list := append(m.byUser[s.user], s)
	if len(list) > MaxPerUser {
		delete(m.byID, list[0].id)
		list = slices.Delete(list, 0, 1)
	}
	m.byUser[s.user] = list
	m.byID[s.id] = s
}

func (m *Model) stage(id string, st storyv1.Stage, at time.Time) {
	if s := m.byID[id]; s != nil {
		s.stage, s.updated = st, at
	}
}

// List returns user's latest stories, newest first, at most limit, and
// how many the model holds for them.
func (m *Model) List(user string, limit int) ([]*storyv1.StorySummary, int) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	list := m.byUser[user]
	out := make([]*storyv1.StorySummary, 0, min(limit, len(list)))
	for i := len(list) - 1; i >= 0 && len(out) < limit; i-- {
		out = append(out, list[i].proto())
	}
	return out, len(list)
}

// Updated returns when story id last changed, if the model has it.
func (m *Model) Updated(id string) (time.Time, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if s := m.byID[id]; s != nil {
		return s.updated, true
	}
	return time.Time{}, false
}

func (s *summary) proto() *storyv1.StorySummary {
	return &storyv1.StorySummary{StoryId: s.id, Stage: s.stage,
		RequestedAt: timestamppb.New(s.requested), UpdatedAt: timestamppb.New(s.updated)}
}

var framed = projections.Framed{Magic: "tlstory1"}

// Snapshot serializes the model.
func (m *Model) Snapshot() ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	msgs := make([]proto.Message, 0, len(m.byID))
	for _, list := range m.byUser {
		for _, s := range list {
			msgs = append(msgs, &storyv1.Story{StoryId: s.id, UserId: s.user, Stage: s.stage,
				RequestedAt: timestamppb.New(s.requested), UpdatedAt: timestamppb.New(s.updated)})
		}
	}
	return framed.Marshal(m.pos, msgs)
}

// Restore replaces the model with a snapshot's.
func (m *Model) Restore(data []byte) error {
	byUser, byID := map[string][]*summary{}, map[string]*summary{}
	pos, err := framed.Unmarshal(data, func() proto.Message { return new(storyv1.Story) }, func(msg proto.Message) error {
		st := msg.(*storyv1.Story)
		s := &summary{id: st.StoryId, user: st.UserId, stage: st.Stage, requested: st.RequestedAt.AsTime(), updated: st.UpdatedAt.AsTime()}
		byUser[s.user] = append(byUser[s.user], s)
		byID[s.id] = s
		return nil
	})
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.byUser, m.byID, m.pos = byUser, byID, pos
	return nil
}
