package espeak_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tideline/tideline/adapters/espeak"
	"github.com/tideline/tideline/domain/media"
	"github.com/tideline/tideline/domain/media/mediatest"
)

func needAll(tb testing.TB) {
	tb.Helper()
	mediatest.Need(tb, "espeak-ng", "espeak-ng")
	mediatest.Need(tb, "flite", "flite")
	mediatest.Need(tb, "opusenc", "opus-tools")
	mediatest.Need(tb, "lame", "lame")
}

func TestContract(t *testing.T) {
	needAll(t)
	mediatest.Speaker(t, espeak.New(espeak.Config{}))
}

// Each fallback says what it made: espeak-ng for English without flite,
// MP3 without opusenc, WAV without either encoder.
func TestFallbacks(t *testing.T) {
	needAll(t)
	for _, tc := range []struct {
		name        string
		cfg         espeak.Config
		contentType string
	}{
		{"opus", espeak.Config{}, "audio/ogg"},
		{"espeak_english_mp3", espeak.Config{Flite: "-", Opusenc: "-"}, "audio/mpeg"},
		{"wav", espeak.Config{Opusenc: "-", Lame: "-"}, "audio/wav"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := espeak.New(tc.cfg).Speak(context.Background(), "Your order is on its way.", "en")
			if err != nil {
				t.Fatal(err)
			}
			mediatest.CheckAudio(t, a)
			if a.ContentType != tc.contentType {
				t.Fatalf("content type %q, want %q", a.ContentType, tc.contentType)
			}
		})
	}
}

func TestMissingEngineIsUnavailable(t *testing.T) {
	_, err := espeak.New(espeak.Config{ESpeak: "no-espeak-here"}).Speak(context.Background(), "안녕하세요", "ko")
	if !errors.Is(err, media.ErrUnavailable) || !strings.Contains(err.Error(), "install the Debian package espeak-ng") {
		t.Fatalf("err = %v", err)
	}
}
