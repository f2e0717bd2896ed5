package textrank_test

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/tideline/tideline/adapters/textrank"
	"github.com/tideline/tideline/domain/media/mediatest"
)

func TestContract(t *testing.T) {
	mediatest.Restructurer(t, textrank.New(textrank.Config{}))
}

// The lecture turns from deliveries to safety at its seventh sentence
// ("Now let us turn to safety on the road", which shares words with both
// sides): one break falls there or after it, and the key words are the
// topics', the same at every call.
func TestLecture(t *testing.T) {
	r := textrank.New(textrank.Config{})
	for _, lang := range []string{"en", "ko"} {
		t.Run(lang, func(t *testing.T) {
			ps, err := r.Restructure(context.Background(), mediatest.Lecture[lang], lang)
			if err != nil {
				t.Fatal(err)
			}
			var sizes []int
			for _, p := range ps {
				sizes = append(sizes, len(p.Sentences))
				t.Logf("%d sentences, highlights %q", len(p.Sentences), p.Highlights)
			}
			if !reflect.DeepEqual(sizes, []int{6, 6}) && !reflect.DeepEqual(sizes, []int{7, 5}) {
				t.Errorf("paragraph sizes %v, want [6 6] or [7 5]", sizes)
			}
			again, _ := r.Restructure(context.Background(), mediatest.Lecture[lang], lang)
			if !reflect.DeepEqual(ps, again) {
				t.Fatal("two calls differ")
			}
		})
	}
}

func TestBounds(t *testing.T) {
	r := textrank.New(textrank.Config{MaxSentences: 6})
	var long []string
	for range 5 {
		long = append(long, mediatest.Lecture["en"]...)
	}
	ps, err := r.Restructure(context.Background(), long, "en")
	if err != nil {
		t.Fatal(err)
	}
	mediatest.CheckParagraphs(t, long, ps)
	for _, p := range ps {
		if len(p.Sentences) > 6 || len(p.Sentences) < 3 {
			t.Fatalf("a paragraph of %d sentences: %q", len(p.Sentences), strings.Join(p.Sentences, " "))
		}
	}
	one, _ := r.Restructure(context.Background(), long[:1], "en")
	if len(one) != 1 || len(one[0].Sentences) != 1 {
		t.Fatalf("one sentence: %+v", one)
	}
}
