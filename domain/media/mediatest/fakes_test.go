package mediatest_test

import (
	"context"
	"testing"

	"github.com/tideline/tideline/domain/media"
	"github.com/tideline/tideline/domain/media/mediatest"
	"github.com/tideline/tideline/domain/media/wav"
)

func TestFakeOCR(t *testing.T) {
	text := "배달 완료\ndelivered at the door"
	mediatest.OCR(t, mediatest.FakeOCR{}, mediatest.Image{Data: mediatest.TextPNG(text), Text: text, Langs: []string{"ko", "en"}})
}

func TestFakeSpeaker(t *testing.T) {
	mediatest.Speaker(t, mediatest.FakeSpeaker{})
}

func TestFakeTranscriber(t *testing.T) {
	text := "Pick up the order. Then ride to the customer!"
	mediatest.Transcriber(t, mediatest.FakeTranscriber{}, mediatest.Speech{PCM: mediatest.FakeSpeech(text), Lang: "en", Text: text})
}

func TestFakeCommandRecognizer(t *testing.T) {
	g := media.Grammar{Lang: "ko", Phrases: map[string]string{"baedal wallyo": "DELIVERED", "pikeop": "PICK_UP"}}
	mediatest.CommandRecognizer(t, mediatest.FakeCommandRecognizer{}, g, mediatest.Speech{PCM: mediatest.FakeSpeech("baedal wallyo"), Lang: "ko", Text: "baedal wallyo"})
	c, err := mediatest.FakeCommandRecognizer{}.Recognize(context.Background(), mediatest.FakeSpeech("open the window"), g)
	if err != nil || c.Intent != "" {
		t.Fatalf("off-grammar phrase: %+v, %v", c, err)
	}
}

// A pipeline's test speaks with the fake speaker and hears the same text
// back from the fake transcriber, through the WAV it was given.
func TestFakeSpeechRoundTrip(t *testing.T) {
	text := "배달이 완료되었습니다. Thank you!"
	a, err := mediatest.FakeSpeaker{}.Speak(context.Background(), text, "ko")
	if err != nil {
		t.Fatal(err)
	}
	_, pcm, err := wav.Decode(a.Data)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := mediatest.FakeTranscriber{}.Transcribe(context.Background(), pcm, "ko")
	if err != nil || tr.Text() != text || len(tr.Segments) != 2 {
		t.Fatalf("heard %q in %d segments, %v; said %q", tr.Text(), len(tr.Segments), err, text)
	}
}

func TestWordErrorRate(t *testing.T) {
	for _, tc := range []struct {
		ref, hyp string
		want     float64
	}{
		{"he was not an ill disposed young man", "he was not an illness those young man", 2.0 / 8},
		{"Hello, world.", "hello world", 0},
		{"배달 기사는 주문을", "배달 기사는", 1.0 / 3},
		{"", "", 0},
	} {
		if got := mediatest.WordErrorRate(tc.ref, tc.hyp); got != tc.want {
			t.Errorf("WordErrorRate(%q, %q) = %v, want %v", tc.ref, tc.hyp, got, tc.want)
		}
	}
}
