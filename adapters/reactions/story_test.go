package reactions_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tideline/tideline/adapters/natsserver"
	"github.com/tideline/tideline/adapters/objectstore"
	"github.com/tideline/tideline/adapters/reactions"
	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/media"
	"github.com/tideline/tideline/domain/media/mediatest"
	"github.com/tideline/tideline/domain/story"
	"github.com/tideline/tideline/internal/poll"
	storyv1 "github.com/tideline/tideline/schemas/gen/tideline/story/v1"
)

// flakyOCR is an OCR engine that is not installed for its first down
// calls, then is (the fake OCR stands in for tesseract, which is not
// what this test is about).
type flakyOCR struct {
	down  int32
	calls atomic.Int32
}

func (f *flakyOCR) Read(ctx context.Context, img []byte, langs []string) (media.Page, error) {
	if f.calls.Add(1) <= f.down {
		return media.Page{}, fmt.Errorf("%w: tesseract not found: install the Debian package tesseract-ocr", media.ErrUnavailable)
	}
	return mediatest.FakeOCR{}.Read(ctx, img, langs)
}

// While an engine is unavailable its stories wait, neither failed nor
// dropped, and go on once it is back.
func TestStoryWaitsForAnUnavailableEngine(t *testing.T) {
	e := setup(t)
	nc, err := natsserver.Connect(e.ns, "blobs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	blobs, err := objectstore.New(nc, objectstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	svc := story.NewService(e.store, blobs, nil)
	ocr := &flakyOCR{down: 3}
	e.engineWith(t, reactions.Config{RetryInterval: 10 * time.Millisecond, MaxRetries: 1, RedeliverDelay: 20 * time.Millisecond},
		reactions.StoryReactions(svc, reactions.StoryEngines{Blobs: blobs, OCR: ocr, Speaker: mediatest.FakeSpeaker{}, Links: nil})...)
	kim := auth.Principal{Subject: "kim", Role: auth.Walker}
	name := story.UploadPrefix("kim") + "page"
	if _, err := blobs.Put(context.Background(), story.Bucket, name, "image/png", bytes.NewReader(mediatest.TextPNG("once upon a time")), story.MaxImageBytes); err != nil {
		t.Fatal(err)
	}
	id, _, _, err := svc.Request(context.Background(), kim, name, []string{"en"})
	if err != nil {
		t.Fatal(err)
	}
	var st story.Story
	poll.Until(t, 30*time.Second, "the story past OCR", func() bool {
		st, _, err = svc.Story(context.Background(), id)
		if err != nil && !errors.Is(err, story.ErrStoryNotFound) {
			t.Fatal(err)
		}
		return st.Stage != storyv1.Stage_STAGE_REQUESTED
	})
	if st.Stage == storyv1.Stage_STAGE_FAILED || st.Text != "once upon a time" || ocr.calls.Load() <= ocr.down {
		t.Fatalf("after %d OCR calls (%d unavailable): %v %q %s", ocr.calls.Load(), ocr.down, st.Stage, st.Text, st.Failure)
	}
}
