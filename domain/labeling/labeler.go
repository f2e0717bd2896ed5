package labeling

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/tideline/tideline/domain/es"
	labelingv1 "github.com/tideline/tideline/schemas/gen/tideline/labeling/v1"
)

// Mission bounds.
const (
	DefaultMissionTasks = 3
	MaxMissionTasks     = 10
	MissionTTL          = 15 * time.Minute
	MaxAlarms           = 10
)

// LabelerStream returns the stream of a labeler.
func LabelerStream(userID string) es.StreamID {
	return es.StreamID{Context: "labeling", Type: "labeler", ID: userID}
}

// MissionID is the id of a labeler's n-th mission (from 0).
func MissionID(userID string, n int) string {
	return es.DigestID("m", userID, strconv.Itoa(n))
}

// Alarm is a wake-up alarm.
type Alarm struct {
	ID       string
	Time     string // "HH:MM"
	Weekdays []int32
	Zone     string
	Enabled  bool
}

// Mission is a labeler's open mission.
type Mission struct {
	ID        string
	AlarmID   string
	Tasks     []*labelingv1.MissionTask
	Answered  map[string]bool
	Started   time.Time
	Deadline  time.Time
	LocalDate string
}

// Labeler is a labeler's state. Its maps are never changed in place.
type Labeler struct {
	ID     string
	Alarms map[string]Alarm
	Open   *Mission
	// Seen are the tasks ever given to the labeler: never the same twice.
	Seen                        map[string]bool
	Started, Completed, Expired int
	GoldAnswered, GoldCorrect   int
}

// LabelerCommand is a command on a labeler.
type LabelerCommand interface{ isLabelerCommand() }

// SetAlarm creates or replaces an alarm (validated by ValidateAlarm).
type SetAlarm struct{ Alarm Alarm }

// RemoveAlarm deletes an alarm.
type RemoveAlarm struct{ ID string }

// StartMission opens a mission of Tasks; an expired open mission is
// recorded expired first.
type StartMission struct {
	LabelerID, AlarmID, LocalDate string
	Tasks                         []*labelingv1.MissionTask
	Now                           time.Time
}

// SubmitAnswers answers tasks of the open mission.
type SubmitAnswers struct {
	MissionID string
	Answers   []AnswerText
	Now       time.Time
}

// AnswerText is one answer.
type AnswerText struct{ TaskID, Text string }

// ExpireMission records the open mission expired when its deadline passed.
type ExpireMission struct {
	MissionID string
	Now       time.Time
}

func (SetAlarm) isLabelerCommand()      {}
func (RemoveAlarm) isLabelerCommand()   {}
func (StartMission) isLabelerCommand()  {}
func (SubmitAnswers) isLabelerCommand() {}
func (ExpireMission) isLabelerCommand() {}

// Errors of the labeler aggregate.
var (
	ErrNoSuchAlarm      = &es.Error{Kind: es.NotFound, Message: "no such alarm"}
	ErrTooManyAlarms    = &es.Error{Kind: es.FailedPrecondition, Message: fmt.Sprintf("at most %d alarms", MaxAlarms)}
	ErrMissionNotOpen   = &es.Error{Kind: es.FailedPrecondition, Message: "that mission is not open (completed, expired, or not yours)"}
	ErrMissionExpired   = &es.Error{Kind: es.FailedPrecondition, Message: "the mission expired: start a new one"}
	ErrNoTasks          = &es.Error{Kind: es.FailedPrecondition, Message: "no task is available to you now"}
	errMissionStillOpen = &es.Error{Kind: es.FailedPrecondition, Message: "a mission is open"}
)

// LabelerDecider is the labeler aggregate.
var LabelerDecider = es.Decider[Labeler, LabelerCommand]{
	Initial: func() Labeler { return Labeler{} },
	Decide:  decideLabeler,
	Evolve:  evolveLabeler,
}

// OpenAt returns the open mission if it is still running at now.
func (l Labeler) OpenAt(now time.Time) *Mission {
	if l.Open != nil && now.Before(l.Open.Deadline) {
		return l.Open
	}
	return nil
}

func decideLabeler(l Labeler, cmd LabelerCommand) ([]proto.Message, error) {
	switch c := cmd.(type) {
	case SetAlarm:
		a := c.Alarm
		if old, ok := l.Alarms[a.ID]; ok && old.Time == a.Time && slices.Equal(old.Weekdays, a.Weekdays) && old.Zone == a.Zone && old.Enabled == a.Enabled {
			return nil, nil
		}
		if _, ok := l.Alarms[a.ID]; !ok && len(l.Alarms) >= MaxAlarms {
			return nil, ErrTooManyAlarms
		}
		return []proto.Message{&labelingv1.AlarmSet{AlarmId: a.ID, Time: a.Time, Weekdays: a.Weekdays, TimeZone: a.Zone, Enabled: a.Enabled}}, nil
	case RemoveAlarm:
		if _, ok := l.Alarms[c.ID]; !ok {
			return nil, ErrNoSuchAlarm
		}
		return []proto.Message{&labelingv1.AlarmRemoved{AlarmId: c.ID}}, nil
	case StartMission:
		if l.OpenAt(c.Now) != nil {
			return nil, errMissionStillOpen
		}
		var events []proto.Message
		if l.Open != nil {
			events = append(events, l.expired())
		}
		m := &labelingv1.MissionStarted{MissionId: MissionID(c.LabelerID, l.Started), LabelerId: c.LabelerID, AlarmId: c.AlarmID, StartedAt: timestamppb.New(c.Now),
			Deadline: timestamppb.New(c.Now.Add(MissionTTL)), LocalDate: c.LocalDate}
		for _, t := range c.Tasks {
			if !l.Seen[t.TaskId] && !slices.ContainsFunc(m.Tasks, func(x *labelingv1.MissionTask) bool { return x.TaskId == t.TaskId }) {
				m.Tasks = append(m.Tasks, t)
			}
		}
		if len(m.Tasks) == 0 {
			return nil, ErrNoTasks
		}
		return append(events, m), nil
	case SubmitAnswers:
		if l.Open == nil || l.Open.ID != c.MissionID {
			return nil, ErrMissionNotOpen
		}
		if !c.Now.Before(l.Open.Deadline) {
			return nil, ErrMissionExpired
		}
		var events []proto.Message
		answered := len(l.Open.Answered)
		for i, a := range c.Answers {
			k := slices.IndexFunc(l.Open.Tasks, func(t *labelingv1.MissionTask) bool { return t.TaskId == a.TaskID })
			if k < 0 {
				return nil, es.Invalidf(fmt.Sprintf("answers[%d].task_id", i), "%q is not a task of this mission", a.TaskID)
			}
			if l.Open.Answered[a.TaskID] || slices.ContainsFunc(c.Answers[:i], func(x AnswerText) bool { return x.TaskID == a.TaskID }) {
				continue // a retried submission
			}
			t := l.Open.Tasks[k]
			e := &labelingv1.AnswerSubmitted{MissionId: l.Open.ID, LabelerId: l.ID, TaskId: t.TaskId, DatasetId: t.DatasetId,
				Answer: CleanAnswer(a.Text), Gold: t.Gold}
			if t.Gold {
				e.Correct = Similarity(Normalize(a.Text), Normalize(t.GoldAnswer)) >= DefaultAgreement.MinSimilarity
			}
			events = append(events, e)
			answered++
		}
		if len(events) > 0 && answered == len(l.Open.Tasks) {
			events = append(events, &labelingv1.MissionCompleted{MissionId: l.Open.ID, LabelerId: l.ID,
				CompletedAt: timestamppb.New(c.Now), LocalDate: l.Open.LocalDate})
		}
		return events, nil
	case ExpireMission:
		if l.Open == nil || l.Open.ID != c.MissionID || c.Now.Before(l.Open.Deadline) {
			return nil, nil
		}
		return []proto.Message{l.expired()}, nil
	}
	return nil, fmt.Errorf("labeling: unknown labeler command %T", cmd)
}

func (l Labeler) expired() *labelingv1.MissionExpired {
	return &labelingv1.MissionExpired{MissionId: l.Open.ID, LabelerId: l.ID, Answered: int32(len(l.Open.Answered))}
}

func evolveLabeler(l Labeler, ev proto.Message) Labeler {
	switch e := ev.(type) {
	case *labelingv1.AlarmSet:
		l.Alarms = es.With(l.Alarms, e.AlarmId, Alarm{ID: e.AlarmId, Time: e.Time, Weekdays: e.Weekdays, Zone: e.TimeZone, Enabled: e.Enabled})
	case *labelingv1.AlarmRemoved:
		l.Alarms = maps.Clone(l.Alarms)
		delete(l.Alarms, e.AlarmId)
	case *labelingv1.MissionStarted:
		l.ID = e.LabelerId
		l.Open = &Mission{ID: e.MissionId, AlarmID: e.AlarmId, Tasks: e.Tasks, Started: e.StartedAt.AsTime(),
			Deadline: e.Deadline.AsTime(), LocalDate: e.LocalDate}
		seen := maps.Clone(l.Seen)
		if seen == nil {
			seen = map[string]bool{}
		}
		for _, t := range e.Tasks {
			seen[t.TaskId] = true
		}
		l.Seen = seen
		l.Started++
	case *labelingv1.AnswerSubmitted:
		if l.Open != nil && l.Open.ID == e.MissionId {
			m := *l.Open
			m.Answered = es.With(m.Answered, e.TaskId, true)
			l.Open = &m
		}
		if e.Gold {
			l.GoldAnswered++
			if e.Correct {
				l.GoldCorrect++
			}
		}
	case *labelingv1.MissionCompleted:
		l.Open = nil
		l.Completed++
	case *labelingv1.MissionExpired:
		l.Open = nil
		l.Expired++
	}
	return l
}

// Accuracy is a labeler's gold accuracy, smoothed so that a newcomer
// starts at 0.5 and weighs less than a proven labeler: (correct+1) /
// (answered+2).
func Accuracy(correct, answered int) float64 {
	return float64(correct+1) / float64(answered+2)
}
