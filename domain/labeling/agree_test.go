package labeling_test

import (
	"testing"
	"time"

	"github.com/tideline/tideline/domain/labeling"
	labelingv1 "github.com/tideline/tideline/schemas/gen/tideline/labeling/v1"
)

func TestNormalize(t *testing.T) {
	for in, want := range map[string]string{
		"  Hello \t World\n": "hello world",
		"\u1112\u1161\u11ab": "한", // decomposed jamo compose (NFC)
		"ÉCOLE":              "école",
		"":                   "",
	} {
		if got := labeling.Normalize(in); got != want {
			t.Errorf("Normalize(%q) = %q, want %q", in, got, want)
		}
	}
	if s := labeling.Similarity("hello", "hallo"); s != 0.8 {
		t.Errorf("similarity %v, want 0.8", s)
	}
	if s := labeling.Similarity("station", "statoin"); s < 0.857 || s > 0.858 {
		t.Errorf("a swap of neighbours: similarity %v, want 1-1/7", s)
	}
	if s := labeling.Similarity("서울역", "서울역"); s != 1 {
		t.Errorf("similarity %v", s)
	}
}

func votes(weight float64, answers ...string) []labeling.Vote {
	var out []labeling.Vote
	for i, a := range answers {
		out = append(out, labeling.Vote{Labeler: string(rune('a' + i)), Answer: a, Weight: weight})
	}
	return out
}

func TestDecide(t *testing.T) {
	a := labeling.DefaultAgreement
	for _, tc := range []struct {
		name     string
		votes    []labeling.Vote
		wanted   int32
		outcome  labelingv1.Outcome
		answer   string
		accepted int
	}{
		{"unanimous", votes(0.5, "Seoul", "seoul", " Seoul "), 3, labelingv1.Outcome_OUTCOME_ACCEPTED, "Seoul", 3},
		{"typo_agrees", votes(0.5, "Station", "Statoin", "Station"), 3, labelingv1.Outcome_OUTCOME_ACCEPTED, "Station", 3},
		{"outlier_rejected", votes(0.5, "서울역", "서울역", "부산역"), 3, labelingv1.Outcome_OUTCOME_ACCEPTED, "서울역", 2},
		{"no_agreement_wants_more", votes(0.5, "cat", "dog", "owl"), 3, labelingv1.Outcome_OUTCOME_NEEDS_MORE, "", 0},
		{"single_label_wanted", votes(0.5, "ok"), 1, labelingv1.Outcome_OUTCOME_ACCEPTED, "ok", 1},
		{"past_max_unresolved", votes(0.5, "a1", "b2", "c3", "d4", "e5", "f6", "g7", "h8", "i9"), 9, labelingv1.Outcome_OUTCOME_UNRESOLVED, "", 0},
		{"accurate_labelers_outweigh", []labeling.Vote{{Labeler: "pro", Answer: "apple", Weight: 0.95}, {Labeler: "pro2", Answer: "apple", Weight: 0.9},
			{Labeler: "x", Answer: "pear", Weight: 0.1}, {Labeler: "y", Answer: "pear", Weight: 0.1}, {Labeler: "z", Answer: "pear", Weight: 0.1}}, 5, labelingv1.Outcome_OUTCOME_ACCEPTED, "apple", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := a.Decide("t", tc.votes, tc.wanted)
			accepted := 0
			for _, v := range d.Votes {
				if v.Accepted {
					accepted++
				}
			}
			if d.Outcome != tc.outcome || d.Answer != tc.answer || accepted != tc.accepted {
				t.Fatalf("got %v %q with %d accepted (%s), want %v %q with %d", d.Outcome, d.Answer, accepted, d.Reason, tc.outcome, tc.answer, tc.accepted)
			}
			if d.Outcome == labelingv1.Outcome_OUTCOME_NEEDS_MORE && d.Wanted != int32(len(tc.votes))+a.MoreLabels {
				t.Fatalf("wanted %d", d.Wanted)
			}
			if again := a.Decide("t", tc.votes, tc.wanted); again.Reason != d.Reason || again.Answer != d.Answer {
				t.Fatal("the same votes decided differently")
			}
		})
	}
}

func TestAlarms(t *testing.T) {
	ok := labeling.Alarm{ID: "weekday", Time: "07:30", Weekdays: []int32{1, 2, 3, 4, 5}, Zone: "Asia/Seoul", Enabled: true}
	if _, err := labeling.ValidateAlarm("alarm.", ok); err != nil {
		t.Fatal(err)
	}
	for field, a := range map[string]labeling.Alarm{
		"alarm.time":        {ID: "a", Time: "7:30"},
		"alarm.weekdays[1]": {ID: "a", Time: "07:30", Weekdays: []int32{1, 8}},
		"alarm.time_zone":   {ID: "a", Time: "07:30", Zone: "Mars/Olympus"},
		"alarm.alarm_id":    {ID: "a b", Time: "07:30"},
	} {
		_, err := labeling.ValidateAlarm("alarm.", a)
		if err == nil || !contains(err.Error(), field) {
			t.Errorf("%+v: %v, want an error naming %s", a, err, field)
		}
	}
	// Wednesday 2 Dec 2026, 07:00 in Seoul (22:00 UTC the day before).
	now := time.Date(2026, 12, 1, 22, 0, 0, 0, time.UTC)
	if got, want := labeling.NextRing(ok, now), time.Date(2026, 12, 1, 22, 30, 0, 0, time.UTC); !got.Equal(want) {
		t.Fatalf("next ring %v, want %v", got, want)
	}
	// Friday 08:00 Seoul: next is Monday 07:30.
	fri := time.Date(2026, 12, 4, 8, 0, 0, 0, time.FixedZone("KST", 9*3600))
	if got := labeling.NextRing(ok, fri); got.In(fri.Location()).Weekday() != time.Monday {
		t.Fatalf("after Friday's ring: %v", got)
	}
	off := ok
	off.Enabled = false
	if !labeling.NextRing(off, now).IsZero() {
		t.Fatal("a disabled alarm rings")
	}
	if d := labeling.LocalDate(now, "Asia/Seoul"); d != "2026-12-02" {
		t.Fatalf("local date %s", d)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}
