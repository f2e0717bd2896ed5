package jetstream

import "testing"

func TestSubjectMatches(t *testing.T) {
	cases := []struct {
		pattern, subject string
		want             bool
	}{
		{"ev.steps.>", "ev.steps.user.alice", true},
		{"ev.steps.>", "ev.steps", false},
		{"ev.steps.>", "ev.stepsx.user.a", false},
		{"ev.*.user.*", "ev.steps.user.a", true},
		{"ev.*.user.*", "ev.steps.user.a.b", false},
		{"ev.*.user.*", "ev.steps.order.a", false},
		{"ev.safety.device.bike-7", "ev.safety.device.bike-7", true},
		{"ev.safety.device.bike-7", "ev.safety.device.bike-70", false},
		{">", "anything.at.all", true},
	}
	for _, tc := range cases {
		if got := subjectMatches(tc.pattern, tc.subject); got != tc.want {
			t.Errorf("subjectMatches(%q, %q) = %v, want %v", tc.pattern, tc.subject, got, tc.want)
		}
	}
}
