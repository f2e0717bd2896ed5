package tesseract

import (
	"reflect"
	"testing"

	"github.com/tideline/tideline/domain/media"
)

func TestAlignWords(t *testing.T) {
	tok := func(s string, x int, c float64) media.Word {
		return media.Word{Text: s, X: x, Y: 10, W: 10, H: 20, Confidence: c}
	}
	for _, tc := range []struct {
		name   string
		fields []string
		tokens []media.Word
		want   []media.Word
	}{
		{"syllables_join_their_word", []string{"배달", "기사는"}, []media.Word{tok("배달", 0, .9), tok("기", 30, .8), tok("사", 40, .7), tok("는", 50, .9)},
			[]media.Word{{Text: "배달", X: 0, Y: 10, W: 10, H: 20, Confidence: .9}, {Text: "기사는", X: 30, Y: 10, W: 30, H: 20, Confidence: .7}}},
		{"english_words_stay", []string{"the", "rider"}, []media.Word{tok("the", 0, 1), tok("rider", 20, 1)},
			[]media.Word{tok("the", 0, 1), tok("rider", 20, 1)}},
		{"disagreement_keeps_tokens", []string{"ab"}, []media.Word{tok("a", 0, 1), tok("c", 10, 1)},
			[]media.Word{tok("a", 0, 1), tok("c", 10, 1)}},
		{"leftover_tokens_keep_tokens", []string{"a"}, []media.Word{tok("a", 0, 1), tok("b", 10, 1)},
			[]media.Word{tok("a", 0, 1), tok("b", 10, 1)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := alignWords(tc.fields, tc.tokens); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
