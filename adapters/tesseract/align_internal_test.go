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
		starts []int
	}{
		{"syllables_join_their_word", []string{"배달", "기사는"}, []media.Word{tok("배달", 0, .9), tok("기", 30, .8), tok("사", 40, .7), tok("는", 50, .9)},
			[]media.Word{{Text: "배달", X: 0, Y: 10, W: 10, H: 20, Confidence: .9}, {Text: "기사는", X: 30, Y: 10, W: 30, H: 20, Confidence: .7}}, []int{0, 1}},
		{"english_words_stay", []string{"the", "rider"}, []media.Word{tok("the", 0, 1), tok("rider", 20, 1)},
			[]media.Word{tok("the", 0, 1), tok("rider", 20, 1)}, []int{0, 1}},
		{"disagreement_keeps_tokens", []string{"ab"}, []media.Word{tok("a", 0, 1), tok("c", 10, 1)},
			[]media.Word{tok("a", 0, 1), tok("c", 10, 1)}, []int{0, 1}},
		{"leftover_tokens_keep_tokens", []string{"a"}, []media.Word{tok("a", 0, 1), tok("b", 10, 1)},
			[]media.Word{tok("a", 0, 1), tok("b", 10, 1)}, []int{0, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, starts := alignWords(tc.fields, tc.tokens)
			if !reflect.DeepEqual(got, tc.want) || !reflect.DeepEqual(starts, tc.starts) {
				t.Fatalf("got %+v starting at tokens %v, want %+v at %v", got, starts, tc.want, tc.starts)
			}
		})
	}
}

// tesseract's tsv of two lines of Korean (a syllable reaching above its
// line's box) and an empty line between them.
const twoLinesTSV = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n" +
	"1\t1\t0\t0\t0\t0\t0\t0\t734\t280\t-1\t\n" +
	"4\t1\t1\t1\t1\t0\t42\t44\t538\t26\t-1\t\n" +
	"5\t1\t1\t1\t1\t1\t42\t44\t50\t26\t90\t배달\n" +
	"5\t1\t1\t1\t1\t2\t103\t44\t25\t26\t80\t기\n" +
	"5\t1\t1\t1\t1\t3\t129\t39\t25\t42\t70\t사\n" +
	"4\t1\t1\t1\t2\t0\t41\t70\t100\t20\t-1\t\n" +
	"5\t1\t1\t1\t2\t1\t41\t70\t100\t20\t95\t \n" +
	"4\t1\t1\t2\t1\t0\t41\t94\t539\t26\t-1\t\n" +
	"5\t1\t1\t2\t1\t1\t41\t94\t76\t26\t60\t음식을\n"

func TestLines(t *testing.T) {
	tokens, lines := parseTSV(twoLinesTSV)
	words, starts := alignWords([]string{"배달", "기사", "음식을"}, tokens)
	got := pageLines(words, starts, lines)
	want := []media.Word{
		{Text: "배달 기사", X: 42, Y: 39, W: 538, H: 42, Confidence: (0.9 + 0.7) / 2}, // 사 reaches above the line
		{Text: "음식을", X: 41, Y: 94, W: 539, H: 26, Confidence: 0.6},
	}
	if len(got) != len(want) {
		t.Fatalf("lines %+v, want %+v", got, want)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Text != w.Text || g.X != w.X || g.Y != w.Y || g.W != w.W || g.H != w.H || g.Confidence-w.Confidence > 1e-9 || w.Confidence-g.Confidence > 1e-9 {
			t.Errorf("line %d: %+v, want %+v", i, g, w)
		}
	}
}
