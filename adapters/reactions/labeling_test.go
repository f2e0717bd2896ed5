package reactions_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tideline/tideline/adapters/natsserver"
	"github.com/tideline/tideline/adapters/objectstore"
	"github.com/tideline/tideline/adapters/reactions"
	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/labeling"
	"github.com/tideline/tideline/domain/media"
	"github.com/tideline/tideline/domain/media/mediatest"
	"github.com/tideline/tideline/internal/poll"
	labelingv1 "github.com/tideline/tideline/schemas/gen/tideline/labeling/v1"
)

// moodyOCR fails in its own way on pages that say so: "boom" always
// fails, "hiccup" fails on its first call only.
type moodyOCR struct {
	mu    sync.Mutex
	calls map[string]int
}

func (m *moodyOCR) Read(ctx context.Context, img []byte, langs []string) (media.Page, error) {
	page, err := mediatest.FakeOCR{}.Read(ctx, img, langs)
	if err != nil {
		return page, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls[page.Text]++
	switch {
	case strings.HasPrefix(page.Text, "boom"):
		return media.Page{}, errors.New("segmentation fault")
	case strings.HasPrefix(page.Text, "hiccup") && m.calls[page.Text] == 1:
		return media.Page{}, errors.New("temporary trouble")
	}
	return page, nil
}

// An item the engine refuses fails at once with the engine's reason; one
// whose engine fails is retried, then failed with the reason; one that
// fails once is retried and done. None is dropped, and the dataset goes
// on to labeling.
func TestPreprocessingRetriesThenFailsItems(t *testing.T) {
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
	svc := labeling.NewService(e.store, blobs, nil, nil)
	ocr := &moodyOCR{calls: map[string]int{}}
	e.engineWith(t, reactions.Config{RetryInterval: 10 * time.Millisecond, MaxRetries: 1, RedeliverDelay: 20 * time.Millisecond},
		reactions.LabelingReactions(svc, reactions.LabelingEngines{Blobs: blobs, OCR: ocr, Attempts: 2, Logger: slog.New(slog.DiscardHandler)})...)
	ctx := context.Background()
	acme, root := auth.Principal{Subject: "acme", Role: auth.Enterprise}, auth.Principal{Subject: "root", Role: auth.Admin}
	d, _, _, err := svc.CreateDataset(ctx, acme, labeling.DatasetSpec{Name: "signs", Kind: labelingv1.Kind_KIND_OCR_IMAGES})
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"good":    mediatest.TextPNG("one line\nanother line"),
		"hiccup":  mediatest.TextPNG("hiccup line"),
		"boom":    mediatest.TextPNG("boom"),
		"garbage": append([]byte("\x89PNG\r\n\x1a\n"), "not really"...),
	}
	var shas []string
	names := map[string]string{}
	for name, b := range files {
		sum := sha256.Sum256(b)
		sha := hex.EncodeToString(sum[:])
		if _, err := blobs.Put(ctx, labeling.Bucket, labeling.UploadName(d.ID, sha), "image/png", bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatal(err)
		}
		shas = append(shas, sha)
		names[labeling.ItemID(d.ID, sha)] = name
	}
	if _, _, err := svc.AddItems(ctx, acme, d.ID, shas); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Submit(ctx, acme, d.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Review(ctx, root, d.ID, true, ""); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 30*time.Second, "preprocessing to finish", func() bool {
		d, err = svc.DatasetNow(ctx, d.ID)
		if err != nil {
			t.Fatal(err)
		}
		return d.State == labelingv1.State_STATE_LABELING
	})
	if d.Tasks != 3 || d.Failed != 2 {
		t.Fatalf("%d tasks, %d failed; want 3 tasks (2 lines + 1), 2 failed", d.Tasks, d.Failed)
	}
	if ocr.calls["boom"] != 2 || ocr.calls["hiccup line"] != 2 {
		t.Fatalf("engine calls %v: want boom tried twice, hiccup twice", ocr.calls)
	}
	commits, _, err := e.store.Load(ctx, labeling.DatasetStream(d.ID), 0)
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]string{}
	for _, c := range commits {
		for _, ev := range c.Events {
			if f, ok := ev.Data.(*labelingv1.ItemFailed); ok {
				reasons[names[f.ItemId]] = f.Reason
			}
		}
	}
	if !strings.Contains(reasons["boom"], "failed 2 times: segmentation fault") || !strings.Contains(reasons["garbage"], "not a PNG or JPEG") {
		t.Fatalf("failure reasons %q", reasons)
	}
}
