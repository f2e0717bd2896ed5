package objectstore_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tideline/tideline/adapters/natsserver/natstest"
	"github.com/tideline/tideline/adapters/objectstore"
	"github.com/tideline/tideline/domain/media"
	"github.com/tideline/tideline/domain/media/mediatest"
)

func TestContract(t *testing.T) {
	mediatest.Blobs(t, func(t *testing.T) media.Blobs {
		b, _ := start(t, objectstore.Config{})
		return b
	})
}

func start(t *testing.T, cfg objectstore.Config) (*objectstore.Blobs, *nats.Conn) {
	t.Helper()
	_, nc := natstest.Start(t)
	b, err := objectstore.New(nc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b, nc
}

// chunks returns how many messages the bucket's stream holds beside
// the objects' meta records: chunks of failed puts must not stay.
func chunks(t *testing.T, nc *nats.Conn, bucket string) uint64 {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(t.Context(), "OBJ_"+objectstore.BucketPrefix+bucket)
	if err != nil {
		t.Fatalf("bucket's stream: %v", err)
	}
	info, err := s.Info(t.Context(), jetstream.WithSubjectFilter("$O.>"))
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for subj, c := range info.State.Subjects {
		if bytes.HasPrefix([]byte(subj), []byte("$O."+objectstore.BucketPrefix+bucket+".C.")) {
			n += c
		}
	}
	return n
}

func TestFailedPutsLeaveNoChunks(t *testing.T) {
	b, nc := start(t, objectstore.Config{})
	ctx := t.Context()
	ok := mediatest.BlobData(1, 300<<10) // 3 chunks
	if _, err := b.Put(ctx, "story", "ok", "image/png", bytes.NewReader(ok), 1<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Put(ctx, "story", "big", "image/png", bytes.NewReader(mediatest.BlobData(2, 1<<20)), 512<<10); !errors.Is(err, media.ErrTooLarge) {
		t.Fatalf("too large: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	r := mediatest.CancelingReader(bytes.NewReader(mediatest.BlobData(3, 1<<20)), 400<<10, cancel)
	if _, err := b.Put(cctx, "story", "canceled", "image/png", r, 2<<20); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled: %v", err)
	}
	if got := chunks(t, nc, "story"); got != 3 {
		t.Errorf("the bucket holds %d chunks; want the 3 of the one blob stored", got)
	}
}

func TestUnwritableStoreRefusesPuts(t *testing.T) {
	full := errors.New("disk full")
	var refuse bool
	b, nc := start(t, objectstore.Config{Writable: func() error {
		if refuse {
			return full
		}
		return nil
	}})
	ctx := t.Context()
	if _, err := b.Put(ctx, "story", "before", "text/plain", bytes.NewReader([]byte("x")), 10); err != nil {
		t.Fatal(err)
	}
	refuse = true
	if _, err := b.Put(ctx, "story", "refused", "text/plain", bytes.NewReader([]byte("x")), 10); !errors.Is(err, media.ErrUnavailable) || !errors.Is(err, full) {
		t.Fatalf("Put on a full disk: %v; want ErrUnavailable wrapping the guard's error", err)
	}
	if _, err := b.Stat(ctx, "story", "refused"); !errors.Is(err, media.ErrNotFound) {
		t.Fatalf("Stat: %v; want ErrNotFound", err)
	}
	if got := chunks(t, nc, "story"); got != 1 {
		t.Errorf("the bucket holds %d chunks; want 1", got)
	}
}

func TestBucketIsAFileStoreNamedAfterTheBlobBucket(t *testing.T) {
	b, nc := start(t, objectstore.Config{})
	if _, err := b.Put(t.Context(), "story", "x", "text/plain", bytes.NewReader([]byte("x")), 10); err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	obs, err := js.ObjectStore(t.Context(), "BLOBS_story")
	if err != nil {
		t.Fatal(err)
	}
	st, err := obs.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.Storage() != jetstream.FileStorage || st.Replicas() != 1 {
		t.Errorf("bucket: storage %v, replicas %d; want file, 1", st.Storage(), st.Replicas())
	}
}
