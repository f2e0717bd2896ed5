package es_test

import (
	"testing"

	"github.com/tideline/tideline/domain/es"
)

func TestParseStreamID(t *testing.T) {
	for _, s := range []es.StreamID{
		{Context: "steps", Type: "user", ID: "w17-a3"},
		{Context: "delivery", Type: "order", ID: "01JABCDEF"},
		{Context: "", Type: "user", ID: ""}, // String's inverse, not a check: Validate is that
	} {
		got, err := es.ParseStreamID(s.String())
		if err != nil || got != s {
			t.Errorf("ParseStreamID(%q) = %+v, %v; want %+v", s.String(), got, err, s)
		}
	}
	for _, subject := range []string{"", "ev", "ev.", "ev.steps", "ev.steps.user", "ev.steps.user.a.b", "xx.steps.user.a", "steps.user.a", "ev.steps.user.a."} {
		if got, err := es.ParseStreamID(subject); err == nil {
			t.Errorf("ParseStreamID(%q) = %+v, want an error", subject, got)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = es.ParseStreamID("ev.steps.user.w17-a3") }); n != 0 {
		t.Errorf("ParseStreamID allocates %v times, want 0", n)
	}
}
