package pocketsphinx

import "testing"

func TestRomanised(t *testing.T) {
	for _, tc := range []struct{ word, want string }{
		{"baedal", "B EH D AA L"},
		{"wallyo", "W AA L Y OW"},
		{"jeonhwa", "JH AH N HH W AA"},
		{"annae", "AA N EH"},
		{"bisang", "B IY S AA NG"},
		{"geojeol", "G AH JH AH L"},
		{"ppalli", "P AA L IY"},
		{"oeguk", "W EH G UW K"},
	} {
		if got, ok := romanised(tc.word); !ok || got != tc.want {
			t.Errorf("romanised(%q) = %q, %v; want %q", tc.word, got, ok, tc.want)
		}
	}
	for _, w := range []string{"fax", "zoo", "2"} {
		if got, ok := romanised(w); ok {
			t.Errorf("romanised(%q) = %q, want none", w, got)
		}
	}
}

// An utterance the decoder printed without a hypothesis (its words are
// only silence) makes no segment and is not glued to the one before.
func TestParseTranscript(t *testing.T) {
	out := "he was not\n<s> 0.000 0.060 0.99\nhe 0.210 0.320 0.9\nwas(2) 0.330 0.540 0.8\n[NOISE] 0.55 0.6 0.5\nnot 0.550 0.970 0.7\n</s> 0.98 1.2 1.0\n" +
		"<s> 2.000 2.100 1.0\n<sil> 2.1 3.0 1.0\n</s> 3.0 3.1 1.0\n" +
		"even\n<s> 4.0 4.1 1.0\neven 4.2 4.5 0.5\n</s> 4.5 4.6 1.0\n"
	tr := parseTranscript([]byte(out))
	if len(tr.Segments) != 2 || tr.Text() != "he was not even" {
		t.Fatalf("segments %+v", tr.Segments)
	}
	s := tr.Segments[0]
	if s.Start.Seconds() != 0.21 || s.End.Seconds() != 0.97 || s.Confidence < 0.79 || s.Confidence > 0.81 {
		t.Fatalf("first segment %+v", s)
	}
}
