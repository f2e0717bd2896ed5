package s3_test

import (
	"bytes"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/tideline/tideline/adapters/s3"
	"github.com/tideline/tideline/domain/media"
	"github.com/tideline/tideline/domain/media/mediatest"
)

// start runs an in-process S3 server with the bucket "blobs" and
// returns Blobs on it and the server's backend.
func start(t *testing.T) (*s3.Blobs, *s3mem.Backend) {
	t.Helper()
	backend := s3mem.New()
	if err := backend.CreateBucket("blobs"); err != nil {
		t.Fatal(err)
	}
	// TLS, as a production store: over plain HTTP minio-go signs each
	// chunk of a part (aws-chunked), which gofakes3 stores undecoded.
	srv := httptest.NewUnstartedServer(gofakes3.New(backend, gofakes3.WithLogger(gofakes3.DiscardLog())).Server())
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // gofakes3 writes some errors' headers twice
	srv.StartTLS()
	t.Cleanup(srv.Close)
	b, err := s3.New(s3.Config{Endpoint: srv.URL, Bucket: "blobs", AccessKey: "test", SecretKey: "test-secret", Region: "us-east-1", Transport: srv.Client().Transport})
	if err != nil {
		t.Fatal(err)
	}
	return b, backend
}

func TestContract(t *testing.T) {
	mediatest.Blobs(t, func(t *testing.T) media.Blobs {
		b, _ := start(t)
		return b
	})
}

// A put leaves only the blob: its partial object is removed, and a failed
// put's too.
func TestPutLeavesOnlyTheBlob(t *testing.T) {
	b, backend := start(t)
	ctx := t.Context()
	data := mediatest.BlobData(1, 6<<20) // two parts
	if _, err := b.Put(ctx, "story", "ok", "audio/ogg", bytes.NewReader(data), 8<<20); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Put(ctx, "story", "big", "audio/ogg", bytes.NewReader(data), 5<<20); !errors.Is(err, media.ErrTooLarge) {
		t.Fatalf("too large: %v", err)
	}
	list, err := backend.ListBucket("blobs", nil, gofakes3.ListBucketPage{})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range list.Contents {
		keys = append(keys, o.Key)
	}
	if len(keys) != 1 || keys[0] != "story/ok" {
		t.Errorf("the S3 bucket holds %q; want only story/ok", keys)
	}
}

func TestStoreDownIsUnavailable(t *testing.T) {
	srv := httptest.NewServer(nil)
	srv.Close()
	b, err := s3.New(s3.Config{Endpoint: srv.URL, Bucket: "blobs", AccessKey: "a", SecretKey: "b", Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Stat(t.Context(), "story", "x"); !errors.Is(err, media.ErrUnavailable) {
		t.Errorf("Stat on a store that is down: %v; want ErrUnavailable", err)
	}
	if _, err := b.Put(t.Context(), "story", "x", "text/plain", bytes.NewReader([]byte("x")), 10); !errors.Is(err, media.ErrUnavailable) {
		t.Errorf("Put on a store that is down: %v; want ErrUnavailable", err)
	}
}

func TestBadEndpoints(t *testing.T) {
	for _, e := range []string{"", "s3.example.com", "ftp://s3.example.com", "https://", "https://s3.example.com/path"} {
		if _, err := s3.New(s3.Config{Endpoint: e, Bucket: "b"}); err == nil {
			t.Errorf("New(endpoint %q): no error", e)
		}
	}
}
