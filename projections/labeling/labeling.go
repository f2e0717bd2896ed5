// Package labeling is the read model of the labeling context: each
// dataset's progress, the task pool that missions are picked from (with
// every task's labels until it is decided), each labeler's figures and
// latest missions, and the open missions the sweeper expires.
//
// What it keeps: every task of every dataset with its labels (a task's
// labels are what verification decides on, so they stay until the
// dataset is deleted — datasets are bounded work, not an endless
// history), each labeler's last 30 missions, and at most 100 failed items
// per dataset. Rebuilt from the labeling events at any time.
package labeling

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/labeling"
	"github.com/tideline/tideline/domain/media"
	"github.com/tideline/tideline/projections"
	labelingv1 "github.com/tideline/tideline/schemas/gen/tideline/labeling/v1"
)

// Name is the read model's stable name.
const Name = "labeling"

// Bounds of what is kept.
const (
	MaxMissionsPerLabeler = 30
	MaxFailedPerDataset   = 100
	// GoldEvery: every GoldEvery-th mission of a labeler includes one
	// gold task, when one exists that they have not seen.
	GoldEvery = 4
	// GoldMinVotes is how many unanimous labels make an accepted task gold.
	GoldMinVotes = 3
)

// Vote is one label of a task.
type Vote struct {
	Labeler, Answer, Mission string
}

// Task is a task and its labels.
type Task struct {
	ID, Dataset, Item string
	Kind              labeling.Kind
	Media             media.BlobRef
	Box               [4]int32
	StartMs, EndMs    int64
	Wanted            int32
	Votes             []Vote
	// Assigned is how many open missions hold the task.
	Assigned int32
	Outcome  labelingv1.Outcome
	Answer   string
	Support  float64
	// AcceptedBy are the labelers whose labels the final decision accepted.
	AcceptedBy []string
	Reason     string
	Gold       bool
	Seq        int // order of creation, for fair picking
}

// Dataset is a dataset's summary and progress.
type Dataset struct {
	ID, Owner, Name, Instructions  string
	Kind                           labeling.Kind
	LabelsPerItem                  int32
	Deadline, Created, Updated     time.Time
	State                          labelingv1.State
	RejectReason                   string
	Items, Preprocessed, Failed    int32
	Tasks, Labels                  int32
	Verified, Accepted, Unresolved int32
	FailedItems                    []FailedItem
	// ItemSHA maps item ids to their content SHA-256.
	ItemSHA map[string]string
	// TaskIDs in creation order.
	TaskIDs []string
	Version uint64
}

// FailedItem is an item that could not be preprocessed.
type FailedItem struct{ ItemID, SHA256, Reason string }

// MissionSummary is one of a labeler's missions.
type MissionSummary struct {
	ID, State, LocalDate string
	Started, Deadline    time.Time
	Tasks                []string
}

// Labeler is a labeler's figures.
type Labeler struct {
	ID                          string
	Started, Completed, Expired int32
	Labels, Accepted, Rejected  int32
	GoldAnswered, GoldCorrect   int32
	Missions                    []MissionSummary // oldest first
	Alarms                      map[string]labeling.Alarm
}

// Accuracy is the labeler's smoothed gold accuracy.
func (l *Labeler) Accuracy() float64 {
	return labeling.Accuracy(int(l.GoldCorrect), int(l.GoldAnswered))
}

// Model is the labeling read model. Safe for concurrent use.
type Model struct {
	mu   sync.RWMutex
	s    state
	pool pool // derived from s.Tasks: rebuilt, never snapshotted
	pos  uint64
}

// pool indexes the tasks that take labels by how many they have, given
// or promised to open missions: one bucket a count, each in the order
// its tasks entered it, so Pick reads the neediest, longest-waiting
// tasks first without scanning every task.
type pool struct {
	buckets [][]*Task // by count; nil entries are holes left by tasks that moved
	at      map[*Task][2]int
	holes   int
}

func newPool() pool { return pool{at: map[*Task][2]int{}} }

// put files t under count, or takes it out when it takes no label.
func (p *pool) put(t *Task, open bool, count int) {
	if at, ok := p.at[t]; ok {
		if open && at[0] == count {
			return
		}
		p.buckets[at[0]][at[1]] = nil
		delete(p.at, t)
		p.holes++
	}
	if open {
		for len(p.buckets) <= count {
			p.buckets = append(p.buckets, nil)
		}
		p.at[t] = [2]int{count, len(p.buckets[count])}
		p.buckets[count] = append(p.buckets[count], t)
	}
	if p.holes >= 1024 && p.holes*2 >= len(p.at) {
		for b, ts := range p.buckets {
			kept := ts[:0]
			for _, t := range ts {
				if t != nil {
					p.at[t] = [2]int{b, len(kept)}
					kept = append(kept, t)
				}
			}
			clear(ts[len(kept):])
			p.buckets[b] = kept
		}
		p.holes = 0
	}
}

// reindex files t in the pool after a change to its labels, promises or
// decision.
func (m *Model) reindex(t *Task) {
	count := int32(len(t.Votes)) + t.Assigned
	closed := t.Outcome == labelingv1.Outcome_OUTCOME_ACCEPTED || t.Outcome == labelingv1.Outcome_OUTCOME_UNRESOLVED
	m.pool.put(t, !closed && count < t.Wanted, int(count))
}

type state struct {
	Datasets map[string]*Dataset
	Tasks    map[string]*Task
	Labelers map[string]*Labeler
	Gold     []string // task ids
	NextSeq  int
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

// Name implements projections.Projection.
func (m *Model) Name() string { return Name }

// Version implements projections.Projection.
func (m *Model) Version() int { return 1 }

// Subjects implements projections.Scoped.
func (m *Model) Subjects() []string { return []string{"ev.labeling.>"} }

// EventTypes implements projections.Selective.
func (m *Model) EventTypes() []string {
	return projections.TypeNames((*labelingv1.DatasetCreated)(nil), (*labelingv1.ItemsAdded)(nil),
		(*labelingv1.DatasetSubmitted)(nil), (*labelingv1.DatasetApproved)(nil), (*labelingv1.DatasetRejected)(nil),
		(*labelingv1.ItemPreprocessed)(nil), (*labelingv1.ItemFailed)(nil), (*labelingv1.PreprocessingFinished)(nil),
		(*labelingv1.LabelsVerified)(nil), (*labelingv1.AlarmSet)(nil), (*labelingv1.AlarmRemoved)(nil),
		(*labelingv1.MissionStarted)(nil), (*labelingv1.AnswerSubmitted)(nil), (*labelingv1.MissionCompleted)(nil),
		(*labelingv1.MissionExpired)(nil))
}

// Reset implements projections.Projection.
func (m *Model) Reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.s = state{Datasets: map[string]*Dataset{}, Tasks: map[string]*Task{}, Labelers: map[string]*Labeler{}}
	m.pool, m.pos = newPool(), 0
}

// Position is the last position applied.
func (m *Model) Position() uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.pos
}

func (m *Model) labeler(id string) *Labeler {
	l := m.s.Labelers[id]
	if l == nil {
		l = &Labeler{ID: id, Alarms: map[string]labeling.Alarm{}}
		m.s.Labelers[id] = l
	}
	return l
}

func (l *Labeler) mission(id string) *MissionSummary {
	for i := len(l.Missions) - 1; i >= 0; i-- {
		if l.Missions[i].ID == id {
			return &l.Missions[i]
		}
	}
	return nil
}

// Apply implements projections.Projection.
func (m *Model) Apply(e es.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pos = e.Position.Seq
	ds := func(id string) *Dataset {
		d := m.s.Datasets[id]
		if d != nil {
			d.Updated, d.Version = e.OccurredAt, e.Position.Seq
		}
		return d
	}
	switch x := e.Data.(type) {
	case *labelingv1.DatasetCreated:
		d := &Dataset{ID: x.DatasetId, Owner: x.OwnerId, Name: x.Name, Instructions: x.Instructions, Kind: x.Kind,
			LabelsPerItem: x.LabelsPerItem, Created: x.CreatedAt.AsTime(), Updated: e.OccurredAt,
			State: labelingv1.State_STATE_DRAFT, ItemSHA: map[string]string{}, Version: e.Position.Seq}
		if x.Deadline != nil {
			d.Deadline = x.Deadline.AsTime()
		}
		m.s.Datasets[d.ID] = d
	case *labelingv1.ItemsAdded:
		if d := ds(x.DatasetId); d != nil {
			for _, it := range x.Items {
				d.ItemSHA[it.ItemId] = it.Blob.GetSha256()
			}
			d.Items = int32(len(d.ItemSHA))
		}
	case *labelingv1.DatasetSubmitted:
		if d := ds(x.DatasetId); d != nil {
			d.State, d.RejectReason = labelingv1.State_STATE_SUBMITTED, ""
		}
	case *labelingv1.DatasetApproved:
		if d := ds(x.DatasetId); d != nil {
			d.State = labelingv1.State_STATE_PREPROCESSING
		}
	case *labelingv1.DatasetRejected:
		if d := ds(x.DatasetId); d != nil {
			d.State, d.RejectReason = labelingv1.State_STATE_REJECTED, x.Reason
		}
	case *labelingv1.ItemPreprocessed:
		if d := ds(x.DatasetId); d != nil {
			d.Preprocessed++
			for _, t := range x.Tasks {
				if m.s.Tasks[t.TaskId] != nil {
					continue
				}
				m.s.NextSeq++
				task := &Task{ID: t.TaskId, Dataset: d.ID, Item: x.ItemId, Kind: d.Kind, Media: media.RefFromProto(t.Media),
					Box:     [4]int32{t.GetBox().GetX(), t.GetBox().GetY(), t.GetBox().GetW(), t.GetBox().GetH()},
					StartMs: t.StartMs, EndMs: t.EndMs, Wanted: d.LabelsPerItem, Seq: m.s.NextSeq}
				m.s.Tasks[t.TaskId] = task
				m.reindex(task)
				d.TaskIDs = append(d.TaskIDs, t.TaskId)
				d.Tasks++
			}
		}
	case *labelingv1.ItemFailed:
		if d := ds(x.DatasetId); d != nil {
			d.Failed++
			if len(d.FailedItems) < MaxFailedPerDataset {
				d.FailedItems = append(d.FailedItems, FailedItem{ItemID: x.ItemId, SHA256: d.ItemSHA[x.ItemId], Reason: x.Reason})
			}
		}
	case *labelingv1.PreprocessingFinished:
		if d := ds(x.DatasetId); d != nil {
			d.State = labelingv1.State_STATE_LABELING
		}
	case *labelingv1.LabelsVerified:
		d := ds(x.DatasetId)
		for _, dec := range x.Decisions {
			t := m.s.Tasks[dec.TaskId]
			if t == nil || t.Outcome == labelingv1.Outcome_OUTCOME_ACCEPTED || t.Outcome == labelingv1.Outcome_OUTCOME_UNRESOLVED {
				continue
			}
			t.Outcome, t.Wanted, t.Answer, t.Support, t.Reason = dec.Outcome, max(t.Wanted, dec.Wanted), dec.Answer, dec.Support, dec.Reason
			m.reindex(t)
			final := dec.Outcome != labelingv1.Outcome_OUTCOME_NEEDS_MORE
			unanimous := dec.Outcome == labelingv1.Outcome_OUTCOME_ACCEPTED
			for _, v := range dec.Votes {
				if !final {
					break
				}
				l := m.labeler(v.LabelerId)
				if v.Accepted {
					l.Accepted++
					t.AcceptedBy = append(t.AcceptedBy, v.LabelerId)
				} else {
					l.Rejected++
					unanimous = false
				}
			}
			if unanimous && len(dec.Votes) >= GoldMinVotes {
				t.Gold = true
				m.s.Gold = append(m.s.Gold, t.ID)
			}
			if d != nil && final {
				d.Verified++
				if dec.Outcome == labelingv1.Outcome_OUTCOME_ACCEPTED {
					d.Accepted++
				} else {
					d.Unresolved++
				}
			}
		}
	case *labelingv1.AlarmSet:
		user := e.Stream.ID
		m.labeler(user).Alarms[x.AlarmId] = labeling.Alarm{ID: x.AlarmId, Time: x.Time, Weekdays: x.Weekdays, Zone: x.TimeZone, Enabled: x.Enabled}
	case *labelingv1.AlarmRemoved:
		delete(m.labeler(e.Stream.ID).Alarms, x.AlarmId)
	case *labelingv1.MissionStarted:
		l := m.labeler(x.LabelerId)
		l.Started++
		ms := MissionSummary{ID: x.MissionId, State: "open", LocalDate: x.LocalDate, Started: x.StartedAt.AsTime(), Deadline: x.Deadline.AsTime()}
		for _, t := range x.Tasks {
			ms.Tasks = append(ms.Tasks, t.TaskId)
			if task := m.s.Tasks[t.TaskId]; task != nil && !t.Gold {
				task.Assigned++
				m.reindex(task)
			}
		}
		l.Missions = append(l.Missions, ms)
		if len(l.Missions) > MaxMissionsPerLabeler {
			l.Missions = slices.Delete(l.Missions, 0, len(l.Missions)-MaxMissionsPerLabeler)
		}
	case *labelingv1.AnswerSubmitted:
		l := m.labeler(x.LabelerId)
		if x.Gold {
			l.GoldAnswered++
			if x.Correct {
				l.GoldCorrect++
			}
			break
		}
		l.Labels++
		if t := m.s.Tasks[x.TaskId]; t != nil {
			t.Votes = append(t.Votes, Vote{Labeler: x.LabelerId, Answer: x.Answer, Mission: x.MissionId})
			t.Assigned = max(t.Assigned-1, 0)
			m.reindex(t)
			if d := ds(t.Dataset); d != nil {
				d.Labels++
			}
		}
	case *labelingv1.MissionCompleted:
		l := m.labeler(x.LabelerId)
		l.Completed++
		if ms := l.mission(x.MissionId); ms != nil {
			ms.State = "completed"
		}
	case *labelingv1.MissionExpired:
		l := m.labeler(x.LabelerId)
		l.Expired++
		if ms := l.mission(x.MissionId); ms != nil {
			ms.State = "expired"
			for _, id := range ms.Tasks {
				t := m.s.Tasks[id]
				if t == nil || t.Gold || slices.ContainsFunc(t.Votes, func(v Vote) bool { return v.Mission == x.MissionId }) {
					continue
				}
				t.Assigned = max(t.Assigned-1, 0)
				m.reindex(t)
			}
		}
	}
}

// takes reports whether t's dataset takes labels at now.
func (m *Model) takes(t *Task, now time.Time) bool {
	d := m.s.Datasets[t.Dataset]
	if d == nil || (d.State != labelingv1.State_STATE_PREPROCESSING && d.State != labelingv1.State_STATE_LABELING) {
		return false
	}
	return d.Deadline.IsZero() || now.Before(d.Deadline)
}

// Pick implements labeling.Picker: up to n tasks labelerID has not seen
// that take labels, those with the fewest labels (given or promised)
// first, then those waiting longest at that count; every GoldEvery-th
// mission one of them is a gold task. It reads the pool's buckets in
// order, so its cost is the tasks it returns and those it skips (seen by
// the labeler, or of a dataset past its deadline), not every task.
func (m *Model) Pick(labelerID string, seen map[string]bool, n int, now time.Time) []*labelingv1.MissionTask {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []*labelingv1.MissionTask
	if l := m.s.Labelers[labelerID]; l != nil && l.Started%GoldEvery == GoldEvery-1 {
		for _, id := range m.s.Gold {
			if !seen[id] {
				out = append(out, m.missionTask(m.s.Tasks[id], true))
				break
			}
		}
	}
	for _, bucket := range m.pool.buckets {
		for _, t := range bucket {
			if len(out) == n {
				return out
			}
			if t != nil && !seen[t.ID] && m.takes(t, now) {
				out = append(out, m.missionTask(t, false))
			}
		}
	}
	return out
}

func (m *Model) missionTask(t *Task, gold bool) *labelingv1.MissionTask {
	mt := &labelingv1.MissionTask{TaskId: t.ID, DatasetId: t.Dataset, Kind: t.Kind, Media: media.RefToProto(t.Media), Gold: gold}
	if d := m.s.Datasets[t.Dataset]; d != nil {
		mt.Instructions = d.Instructions
	}
	if gold {
		mt.GoldAnswer = t.Answer
	}
	return mt
}

// Dataset returns a copy of dataset id's summary (without its item and
// task lists).
func (m *Model) Dataset(id string) (Dataset, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	d := m.s.Datasets[id]
	if d == nil {
		return Dataset{}, false
	}
	c := *d
	c.ItemSHA, c.TaskIDs, c.FailedItems = nil, nil, slices.Clone(d.FailedItems)
	return c, true
}

// Datasets lists datasets newest first: owner's (every owner's when
// owner is empty), in state (any when unspecified), at most limit.
func (m *Model) Datasets(owner string, state labelingv1.State, limit int) []Dataset {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []Dataset
	for _, d := range m.s.Datasets {
		if (owner == "" || d.Owner == owner) && (state == 0 || d.State == state) {
			c := *d
			c.ItemSHA, c.TaskIDs, c.FailedItems = nil, nil, slices.Clone(d.FailedItems)
			out = append(out, c)
		}
	}
	slices.SortFunc(out, func(a, b Dataset) int { return cmp.Or(b.Created.Compare(a.Created), cmp.Compare(a.ID, b.ID)) })
	return out[:min(limit, len(out))]
}

// Labeler returns a copy of a labeler's figures.
func (m *Model) Labeler(id string) Labeler {
	m.mu.RLock()
	defer m.mu.RUnlock()
	l := m.s.Labelers[id]
	if l == nil {
		return Labeler{ID: id}
	}
	c := *l
	c.Missions, c.Alarms = slices.Clone(l.Missions), nil
	return c
}

// DueForVerification returns, per dataset, the tasks that have their
// wanted labels and are not decided on them, with each vote weighted
// by its labeler's accuracy now.
func (m *Model) DueForVerification() map[string][]labeling.DueTask {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := map[string][]labeling.DueTask{}
	for _, d := range m.s.Datasets {
		for _, id := range d.TaskIDs {
			t := m.s.Tasks[id]
			if t.Outcome == labelingv1.Outcome_OUTCOME_ACCEPTED || t.Outcome == labelingv1.Outcome_OUTCOME_UNRESOLVED || int32(len(t.Votes)) < t.Wanted {
				continue
			}
			due := labeling.DueTask{Task: t.ID, Wanted: t.Wanted}
			for _, v := range t.Votes {
				w := 0.5
				if l := m.s.Labelers[v.Labeler]; l != nil {
					w = l.Accuracy()
				}
				due.Votes = append(due.Votes, labeling.Vote{Labeler: v.Labeler, Answer: v.Answer, Weight: w})
			}
			out[d.ID] = append(out[d.ID], due)
		}
	}
	return out
}

// OpenMission is a mission the sweeper watches.
type OpenMission struct {
	Labeler, Mission string
	Deadline         time.Time
}

// Overdue returns the open missions whose deadline is before now.
func (m *Model) Overdue(now time.Time) []OpenMission {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []OpenMission
	for _, l := range m.s.Labelers {
		if n := len(l.Missions); n > 0 && l.Missions[n-1].State == "open" && l.Missions[n-1].Deadline.Before(now) {
			out = append(out, OpenMission{Labeler: l.ID, Mission: l.Missions[n-1].ID, Deadline: l.Missions[n-1].Deadline})
		}
	}
	return out
}

// Ring is an alarm ringing.
type Ring struct {
	Labeler string
	Alarm   labeling.Alarm
	At      time.Time
}

// Rings returns the alarms that ring in (from, to].
func (m *Model) Rings(from, to time.Time) []Ring {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []Ring
	for _, l := range m.s.Labelers {
		for _, a := range l.Alarms {
			if at := labeling.NextRing(a, from); !at.IsZero() && !at.After(to) {
				out = append(out, Ring{Labeler: l.ID, Alarm: a, At: at})
			}
		}
	}
	return out
}

// Exported is a verified task as exported.
type Exported struct {
	Task    *Task
	ItemSHA string
}

// Verified calls f with each decided task of dataset id in creation
// order (a copy of each), under the model's read lock in chunks of 500
// so that a long export does not hold up the model.
func (m *Model) Verified(id string, f func(Exported) error) error {
	for from := 0; ; from += 500 {
		var chunk []Exported
		m.mu.RLock()
		d := m.s.Datasets[id]
		if d == nil {
			m.mu.RUnlock()
			return fmt.Errorf("no dataset %s", id)
		}
		end := min(from+500, len(d.TaskIDs))
		for _, tid := range d.TaskIDs[from:end] {
			t := m.s.Tasks[tid]
			if t.Outcome == labelingv1.Outcome_OUTCOME_ACCEPTED || t.Outcome == labelingv1.Outcome_OUTCOME_UNRESOLVED {
				c := *t
				c.Votes, c.AcceptedBy = slices.Clone(t.Votes), slices.Clone(t.AcceptedBy)
				chunk = append(chunk, Exported{Task: &c, ItemSHA: d.ItemSHA[t.Item]})
			}
		}
		done := end >= len(d.TaskIDs)
		m.mu.RUnlock()
		for _, e := range chunk {
			if err := f(e); err != nil {
				return err
			}
		}
		if done {
			return nil
		}
	}
}

type snapshot struct {
	Pos uint64
	S   state
}

// Snapshot implements projections.Projection (JSON; map keys sorted).
func (m *Model) Snapshot() ([]byte, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return json.Marshal(snapshot{Pos: m.pos, S: m.s})
}

// Restore implements projections.Projection.
func (m *Model) Restore(data []byte) error {
	var s snapshot
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("labeling snapshot: %w", err)
	}
	if s.S.Datasets == nil || s.S.Tasks == nil || s.S.Labelers == nil {
		return fmt.Errorf("labeling snapshot: incomplete")
	}
	for _, l := range s.S.Labelers {
		if l.Alarms == nil {
			l.Alarms = map[string]labeling.Alarm{}
		}
	}
	for _, d := range s.S.Datasets {
		if d.ItemSHA == nil {
			d.ItemSHA = map[string]string{}
		}
	}
	tasks := make([]*Task, 0, len(s.S.Tasks))
	for _, t := range s.S.Tasks {
		tasks = append(tasks, t)
	}
	slices.SortFunc(tasks, func(a, b *Task) int { return cmp.Compare(a.Seq, b.Seq) })
	m.mu.Lock()
	defer m.mu.Unlock()
	m.s, m.pos, m.pool = s.S, s.Pos, newPool()
	for _, t := range tasks {
		m.reindex(t)
	}
	return nil
}
