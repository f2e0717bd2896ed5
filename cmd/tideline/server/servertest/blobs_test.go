package servertest_test

import (
	"bytes"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/tideline/tideline/adapters/s3"
	"github.com/tideline/tideline/cmd/tideline/server"
	"github.com/tideline/tideline/cmd/tideline/server/servertest"
	"github.com/tideline/tideline/domain/media"
	"github.com/tideline/tideline/domain/media/mediatest"
)

// roundTrip uploads and downloads a blob through the server's signed
// URLs and checks that its Blobs holds it.
func roundTrip(t *testing.T, s *servertest.Server) {
	t.Helper()
	data := mediatest.BlobData(1, 200<<10)
	want := mediatest.BlobRef("story", "page-1.jpg", "image/jpeg", data)
	up, _, err := s.Links.UploadURL(media.Upload{Bucket: "story", Name: "page-1.jpg", ContentTypes: []string{"image/jpeg"}, MaxBytes: 1 << 20}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(up, s.URL+"/blobs/story/page-1.jpg?") {
		t.Fatalf("upload URL %s does not start with the server's URL %s", up, s.URL)
	}
	req, _ := http.NewRequest(http.MethodPut, up, bytes.NewReader(data))
	req.Header.Set("Content-Type", "image/jpeg")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload: %s", resp.Status)
	}
	if ref, err := s.Blobs.Stat(t.Context(), "story", "page-1.jpg"); err != nil || ref != want {
		t.Fatalf("stored %+v, %v; want %+v", ref, err, want)
	}
	down, _, err := s.Links.DownloadURL(want, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	resp, err = http.Get(down)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(got, data) || resp.Header.Get("ETag") != `"`+want.SHA256+`"` {
		t.Fatalf("download: %s, %d bytes, %v, ETag %s", resp.Status, len(got), err, resp.Header.Get("ETag"))
	}
	// The Connect API beside it still wants a token.
	resp, err = http.Post(s.URL+"/tideline.admin.v1.AdminService/ListProjections", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a Connect call without a token: %s; want 401", resp.Status)
	}
}

func TestBlobsThroughTheServer(t *testing.T) {
	roundTrip(t, servertest.Start(t))
}

func TestBlobsInS3ThroughTheServer(t *testing.T) {
	backend := s3mem.New()
	if err := backend.CreateBucket("tideline-blobs"); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(gofakes3.New(backend, gofakes3.WithLogger(gofakes3.DiscardLog())).Server())
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	s := servertest.Start(t, func(m *server.Main) {
		m.Config.S3 = s3.Config{Endpoint: srv.URL, Bucket: "tideline-blobs", AccessKey: "a", SecretKey: "b", Region: "us-east-1", Transport: srv.Client().Transport}
	})
	roundTrip(t, s)
	if _, ok := s.Blobs.(*s3.Blobs); !ok {
		t.Errorf("Blobs is %T; want the S3 store", s.Blobs)
	}
	if obj, err := backend.HeadObject("tideline-blobs", "story/page-1.jpg"); err != nil || obj.Size != 200<<10 {
		t.Errorf("S3 holds %+v, %v", obj, err)
	}
}
