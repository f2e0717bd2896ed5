package transcription_test

import (
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/tideline/tideline/domain/es"
	"github.com/tideline/tideline/domain/media"
	tr "github.com/tideline/tideline/domain/transcription"
)

var now = time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)

func run(t *testing.T, cmds ...tr.Command) (tr.Lecture, []proto.Message, error) {
	t.Helper()
	l := tr.Decider.Initial()
	var evs []proto.Message
	for i, c := range cmds {
		var err error
		evs, err = tr.Decider.Decide(l, c)
		if err != nil {
			if i == len(cmds)-1 {
				return l, nil, err
			}
			t.Fatalf("command %d %T: %v", i, c, err)
		}
		for _, e := range evs {
			l = tr.Decider.Evolve(l, e)
		}
	}
	return l, evs, nil
}

var (
	start = tr.Start{ID: "cs101-1", Owner: "kim", Title: "Intro", Lang: "en", Now: now}
	seg1  = tr.AddSegment{Start: 0, End: 2 * time.Second, Text: "hello class", Confidence: 0.8}
	seg2  = tr.AddSegment{Start: 3 * time.Second, End: 5 * time.Second, Text: "today we study graphs. they matter", Confidence: 0.7}
	end   = tr.End{Duration: 6 * time.Second}
	ask   = tr.RequestRestructure{Engine: "textrank"}
	made  = tr.RecordRestructured{Version: 1, Engine: "textrank", Paragraphs: []media.Paragraph{{Sentences: []string{"hello class"}, Highlights: []string{"class"}}}}
)

func TestLecture(t *testing.T) {
	cases := []struct {
		name   string
		cmds   []tr.Command
		events int
		kind   es.Kind // of the last command's error; Internal means none expected
		check  func(t *testing.T, l tr.Lecture)
	}{
		{"start_opens", []tr.Command{start}, 1, es.Internal, nil},
		{"start_again_continues", []tr.Command{start, seg1, start}, 0, es.Internal, nil},
		{"segments_are_numbered", []tr.Command{start, seg1, seg2}, 1, es.Internal, func(t *testing.T, l tr.Lecture) {
			if len(l.Segments) != 2 || l.Segments[1].Index != 1 || l.Duration != 5*time.Second {
				t.Errorf("segments %+v, duration %v", l.Segments, l.Duration)
			}
		}},
		{"segment_before_start", []tr.Command{seg1}, 0, es.NotFound, nil},
		{"segment_after_end", []tr.Command{start, seg1, end, seg2}, 0, es.FailedPrecondition, nil},
		{"start_after_end", []tr.Command{start, end, start}, 0, es.FailedPrecondition, nil},
		{"end_twice", []tr.Command{start, end, end}, 0, es.Internal, nil},
		{"restructure_without_transcript", []tr.Command{start, ask}, 0, es.FailedPrecondition, nil},
		{"restructure_asks_version_1", []tr.Command{start, seg1, ask}, 1, es.Internal, func(t *testing.T, l tr.Lecture) {
			if l.Requested != 1 || !l.Restructuring() {
				t.Errorf("requested %d, restructuring %v", l.Requested, l.Restructuring())
			}
		}},
		{"restructure_again_is_already", []tr.Command{start, seg1, ask, made, ask}, 0, es.Internal, nil},
		{"more_segments_make_version_2", []tr.Command{start, seg1, ask, made, seg2, ask}, 1, es.Internal, func(t *testing.T, l tr.Lecture) {
			if l.Requested != 2 || l.Latest.Version != 1 {
				t.Errorf("requested %d, latest %d", l.Requested, l.Latest.Version)
			}
		}},
		{"better_engine_makes_version_2", []tr.Command{start, seg1, ask, made, tr.RequestRestructure{Engine: "llm"}}, 1, es.Internal, nil},
		{"stale_result_is_ignored", []tr.Command{start, seg1, ask, seg2, ask, made}, 0, es.Internal, nil},
		{"failure_can_be_retried", []tr.Command{start, seg1, ask, tr.FailRestructure{Version: 1, Reason: "x"}, ask}, 1, es.Internal, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l, evs, err := run(t, tc.cmds...)
			if tc.kind != es.Internal {
				if es.KindOf(err) != tc.kind {
					t.Fatalf("err = %v, want %v", err, tc.kind)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) != tc.events {
				t.Fatalf("last command appended %d events, want %d", len(evs), tc.events)
			}
			if tc.check != nil {
				tc.check(t, l)
			}
		})
	}
}

func TestStreamsAreScopedToOwners(t *testing.T) {
	if tr.Stream("kim", "l1") == tr.Stream("lee", "l1") {
		t.Fatal("two owners' lectures of one id share a stream")
	}
	if err := tr.Stream("kim", "l1").Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestSentences(t *testing.T) {
	l, _, _ := run(t, start, seg1, seg2)
	got := l.Sentences()
	want := []string{"hello class", "today we study graphs.", "they matter"}
	if len(got) != len(want) {
		t.Fatalf("got %q", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
}
