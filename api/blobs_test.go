package api_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tideline/tideline/adapters/natsserver/natstest"
	"github.com/tideline/tideline/adapters/objectstore"
	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/domain/media"
	"github.com/tideline/tideline/domain/media/mediatest"
)

// blobServer is the API serving only BlobService, over the objectstore
// adapter on an embedded nats-server, on a loopback port.
type blobServer struct {
	url   string
	dir   string // the data dir
	links *api.Links
	blobs media.Blobs
}

func startBlobServer(t *testing.T) *blobServer {
	t.Helper()
	_, nc := natstest.Start(t)
	blobs, err := objectstore.New(nc, objectstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tokens, err := api.LoadOrCreateTokens(dir)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	links, err := api.LoadOrCreateLinks(dir, base)
	if err != nil {
		t.Fatal(err)
	}
	a, err := api.New(api.Config{Tokens: tokens, CORSOrigins: []string{"https://app.example"}}, api.BlobService(links, blobs))
	if err != nil {
		t.Fatal(err)
	}
	srv := api.NewServer(a.Handler())
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return &blobServer{url: base, dir: dir, links: links, blobs: blobs}
}

func (s *blobServer) uploadURL(t *testing.T, name string, max int64, types ...string) string {
	t.Helper()
	u, _, err := s.links.UploadURL(media.Upload{Bucket: "story", Name: name, ContentTypes: types, MaxBytes: max}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func (s *blobServer) downloadURL(t *testing.T, ref media.BlobRef) string {
	t.Helper()
	u, _, err := s.links.DownloadURL(ref, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// do sends a request and returns the response with its body read.
func do(t *testing.T, method, u string, body io.Reader, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func wantStatus(t *testing.T, resp *http.Response, body []byte, code int) {
	t.Helper()
	if resp.StatusCode != code {
		t.Fatalf("%s %s: %d %q; want %d", resp.Request.Method, resp.Request.URL.Path, resp.StatusCode, body, code)
	}
}

func (s *blobServer) checkNoBlob(t *testing.T, name string) {
	t.Helper()
	if ref, err := s.blobs.Stat(t.Context(), "story", name); !errors.Is(err, media.ErrNotFound) {
		t.Fatalf("story/%s: %+v, %v; want nothing stored", name, ref, err)
	}
}

func TestBlobUploadAndDownloadThroughSignedURLs(t *testing.T) {
	s := startBlobServer(t)
	data := mediatest.BlobData(1, 300<<10)
	want := mediatest.BlobRef("story", "page-1.png", "image/png", data)
	up := s.uploadURL(t, "page-1.png", 1<<20, "image/png", "image/jpeg")
	if !strings.HasPrefix(up, s.url+"/blobs/story/page-1.png?") {
		t.Fatalf("upload URL %s", up)
	}
	resp, body := do(t, http.MethodPut, up, bytes.NewReader(data), "Content-Type", "image/png")
	wantStatus(t, resp, body, http.StatusCreated)
	var got media.BlobRef
	var j struct {
		Bucket, Name, SHA256, ContentType string
		Size                              int64
	}
	if err := json.Unmarshal(body, &j); err != nil {
		t.Fatalf("upload answer %q: %v", body, err)
	}
	got = media.BlobRef{Bucket: j.Bucket, Name: j.Name, SHA256: j.SHA256, Size: j.Size, ContentType: j.ContentType}
	if !strings.Contains(string(body), `"content_type":"image/png"`) || got.SHA256 != want.SHA256 || got.Size != want.Size || resp.Header.Get("ETag") != `"`+want.SHA256+`"` {
		t.Fatalf("upload answered %s, ETag %s; want %+v", body, resp.Header.Get("ETag"), want)
	}
	if ref, err := s.blobs.Stat(t.Context(), "story", "page-1.png"); err != nil || ref != want {
		t.Fatalf("stored %+v, %v; want %+v", ref, err, want)
	}

	down := s.downloadURL(t, want)
	resp, body = do(t, http.MethodGet, down, nil)
	wantStatus(t, resp, body, http.StatusOK)
	if !bytes.Equal(body, data) {
		t.Fatalf("downloaded %d bytes, not the %d uploaded", len(body), len(data))
	}
	for h, v := range map[string]string{
		"Content-Type":           "image/png",
		"Content-Length":         strconv.Itoa(len(data)),
		"ETag":                   `"` + want.SHA256 + `"`,
		"Cache-Control":          "private",
		"Accept-Ranges":          "bytes",
		"X-Content-Type-Options": "nosniff",
	} {
		if got := resp.Header.Get(h); got != v {
			t.Errorf("download %s: %q; want %q", h, got, v)
		}
	}

	resp, body = do(t, http.MethodHead, down, nil)
	wantStatus(t, resp, body, http.StatusOK)
	if resp.ContentLength != int64(len(data)) || len(body) != 0 {
		t.Errorf("HEAD: Content-Length %d, %d body bytes; want %d, none", resp.ContentLength, len(body), len(data))
	}
	resp, body = do(t, http.MethodGet, down, nil, "If-None-Match", `"`+want.SHA256+`"`)
	wantStatus(t, resp, body, http.StatusNotModified)
}

func TestBlobRangeRequests(t *testing.T) {
	s := startBlobServer(t)
	data := mediatest.BlobData(2, 400<<10)
	ref, err := s.blobs.Put(t.Context(), "story", "audio.ogg", "audio/ogg", bytes.NewReader(data), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	down := s.downloadURL(t, ref)
	n := len(data)
	for _, c := range []struct {
		rng, contentRange string
		from, to          int // data[from:to]
	}{
		{"bytes=1000-1999", "bytes 1000-1999/" + strconv.Itoa(n), 1000, 2000},
		{"bytes=300000-", "bytes 300000-" + strconv.Itoa(n-1) + "/" + strconv.Itoa(n), 300000, n},
		{"bytes=-10", "bytes " + strconv.Itoa(n-10) + "-" + strconv.Itoa(n-1) + "/" + strconv.Itoa(n), n - 10, n},
	} {
		resp, body := do(t, http.MethodGet, down, nil, "Range", c.rng)
		wantStatus(t, resp, body, http.StatusPartialContent)
		if got := resp.Header.Get("Content-Range"); got != c.contentRange || !bytes.Equal(body, data[c.from:c.to]) {
			t.Errorf("Range %s: Content-Range %q and %d bytes; want %q and data[%d:%d]", c.rng, got, len(body), c.contentRange, c.from, c.to)
		}
	}
	resp, body := do(t, http.MethodGet, down, nil, "Range", "bytes=500000-")
	wantStatus(t, resp, body, http.StatusRequestedRangeNotSatisfiable)
}

// tamper returns u with its query value key set to v ("" removes it).
func tamper(t *testing.T, u, key, v string) string {
	t.Helper()
	p, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	q := p.Query()
	if v == "" {
		q.Del(key)
	} else {
		q.Set(key, v)
	}
	p.RawQuery = q.Encode()
	return p.String()
}

func TestBlobURLsRefuseTampering(t *testing.T) {
	s := startBlobServer(t)
	up := s.uploadURL(t, "page.png", 1000, "image/png")
	q, _ := url.ParseQuery(up[strings.IndexByte(up, '?')+1:])
	exp, _ := strconv.ParseInt(q.Get("exp"), 10, 64)
	sig := []byte(q.Get("sig"))
	sig[3] ^= 1
	ref := media.BlobRef{Bucket: "story", Name: "page.png"}
	down := s.downloadURL(t, ref)
	for _, c := range []struct {
		name, method, url string
	}{
		{"later_expiry", http.MethodPut, tamper(t, up, "exp", strconv.FormatInt(exp+3600, 10))},
		{"no_expiry", http.MethodPut, tamper(t, up, "exp", "")},
		{"other_content_type", http.MethodPut, tamper(t, up, "ct", "text/html")},
		{"any_content_type", http.MethodPut, tamper(t, up, "ct", "")},
		{"larger_max", http.MethodPut, tamper(t, up, "max", "1000000")},
		{"no_max", http.MethodPut, tamper(t, up, "max", "")},
		{"flipped_signature", http.MethodPut, tamper(t, up, "sig", string(sig))},
		{"no_signature", http.MethodPut, tamper(t, up, "sig", "")},
		{"other_name", http.MethodPut, strings.Replace(up, "/page.png?", "/other.png?", 1)},
		{"other_bucket", http.MethodPut, strings.Replace(up, "/story/", "/labeling/", 1)},
		{"download_url_to_upload", http.MethodPut, down},
		{"upload_url_to_download", http.MethodGet, up},
		{"download_later_expiry", http.MethodGet, tamper(t, down, "exp", strconv.FormatInt(exp+3600, 10))},
		{"download_other_name", http.MethodGet, strings.Replace(down, "/page.png?", "/other.png?", 1)},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp, body := do(t, c.method, c.url, strings.NewReader("\x89PNG"), "Content-Type", "image/png")
			wantStatus(t, resp, body, http.StatusForbidden)
			if len(body) == 0 || len(body) > 100 {
				t.Errorf("403 says %q; want a short reason", body)
			}
		})
	}
	s.checkNoBlob(t, "page.png")
	s.checkNoBlob(t, "other.png")
}

// sign signs a URL as the documented format says, with the data dir's key.
func (s *blobServer) sign(t *testing.T, method, name string, q url.Values) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.dir, api.LinksKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte("tideline-blob-v1\n" + method + "\nstory\n" + name + "\n" + q.Get("exp") + "\n" + q.Get("ct") + "\n" + q.Get("max")))
	q.Set("sig", base64.RawURLEncoding.EncodeToString(m.Sum(nil)))
	return s.url + "/blobs/story/" + name + "?" + q.Encode()
}

func TestBlobURLSignatureFormatAndExpiry(t *testing.T) {
	s := startBlobServer(t)
	future := strconv.FormatInt(time.Now().Add(time.Minute).Unix(), 10)
	past := strconv.FormatInt(time.Now().Add(-time.Second).Unix(), 10)

	resp, body := do(t, http.MethodPut, s.sign(t, http.MethodPut, "expired", url.Values{"exp": {past}, "max": {"10"}}), strings.NewReader("x"))
	wantStatus(t, resp, body, http.StatusForbidden)
	if !strings.Contains(string(body), "expired") {
		t.Errorf("expired upload URL: %q; want the reason", body)
	}
	s.checkNoBlob(t, "expired")

	resp, body = do(t, http.MethodPut, s.sign(t, http.MethodPut, "signed", url.Values{"exp": {future}, "max": {"10"}, "ct": {"text/plain"}}), strings.NewReader("hello"), "Content-Type", "text/plain")
	wantStatus(t, resp, body, http.StatusCreated)
	resp, body = do(t, http.MethodGet, s.sign(t, http.MethodGet, "signed", url.Values{"exp": {future}}), nil)
	wantStatus(t, resp, body, http.StatusOK)
	if string(body) != "hello" {
		t.Errorf("downloaded %q", body)
	}
	resp, body = do(t, http.MethodGet, s.sign(t, http.MethodGet, "signed", url.Values{"exp": {past}}), nil)
	wantStatus(t, resp, body, http.StatusForbidden)
}

// hideLength hides a reader's length from net/http: it sends the body
// chunked, with no Content-Length.
type hideLength struct{ io.Reader }

func TestBlobUploadTooLargeStoresNothing(t *testing.T) {
	s := startBlobServer(t)
	up := s.uploadURL(t, "big.ogg", 100<<10, "audio/ogg")
	data := mediatest.BlobData(3, 100<<10+1)
	resp, body := do(t, http.MethodPut, up, bytes.NewReader(data), "Content-Type", "audio/ogg")
	wantStatus(t, resp, body, http.StatusRequestEntityTooLarge)
	s.checkNoBlob(t, "big.ogg")
	resp, body = do(t, http.MethodPut, up, hideLength{bytes.NewReader(data)}, "Content-Type", "audio/ogg")
	wantStatus(t, resp, body, http.StatusRequestEntityTooLarge)
	s.checkNoBlob(t, "big.ogg")
	// The URL is still good for a blob that fits.
	resp, body = do(t, http.MethodPut, up, hideLength{bytes.NewReader(data[:100<<10])}, "Content-Type", "audio/ogg")
	wantStatus(t, resp, body, http.StatusCreated)
}

func TestBlobUploadContentTypes(t *testing.T) {
	s := startBlobServer(t)
	up := s.uploadURL(t, "page", 100, "image/png", "image/jpeg")
	for _, ct := range []string{"text/html", "", "image/svg+xml", "image/png;;"} {
		resp, body := do(t, http.MethodPut, up, strings.NewReader("x"), "Content-Type", ct)
		wantStatus(t, resp, body, http.StatusUnsupportedMediaType)
	}
	s.checkNoBlob(t, "page")
	resp, body := do(t, http.MethodPut, up, strings.NewReader("x"), "Content-Type", "IMAGE/JPEG; q=1")
	wantStatus(t, resp, body, http.StatusCreated)
	if ref, err := s.blobs.Stat(t.Context(), "story", "page"); err != nil || ref.ContentType != "image/jpeg; q=1" {
		t.Errorf("stored %+v, %v; want content type image/jpeg; q=1", ref, err)
	}
	// A URL that names no type takes any, and a body without one.
	resp, body = do(t, http.MethodPut, s.uploadURL(t, "any", 100), strings.NewReader("x"))
	wantStatus(t, resp, body, http.StatusCreated)
	if ref, _ := s.blobs.Stat(t.Context(), "story", "any"); ref.ContentType != "application/octet-stream" {
		t.Errorf("stored content type %q; want application/octet-stream", ref.ContentType)
	}
}

func TestBlobUploadURLStoresOneBlob(t *testing.T) {
	s := startBlobServer(t)
	up := s.uploadURL(t, "once", 100, "text/plain")
	resp, body := do(t, http.MethodPut, up, strings.NewReader("first"), "Content-Type", "text/plain")
	wantStatus(t, resp, body, http.StatusCreated)
	resp, body = do(t, http.MethodPut, up, strings.NewReader("second"), "Content-Type", "text/plain")
	wantStatus(t, resp, body, http.StatusConflict)
	ref, err := s.blobs.Stat(t.Context(), "story", "once")
	if err != nil || ref != mediatest.BlobRef("story", "once", "text/plain", []byte("first")) {
		t.Errorf("after a replay: %+v, %v; want the first upload", ref, err)
	}
}

func TestBlobDownloadOfMissingBlob(t *testing.T) {
	s := startBlobServer(t)
	resp, body := do(t, http.MethodGet, s.downloadURL(t, media.BlobRef{Bucket: "story", Name: "missing"}), nil)
	wantStatus(t, resp, body, http.StatusNotFound)
}

func TestBlobCORS(t *testing.T) {
	s := startBlobServer(t)
	resp, body := do(t, http.MethodOptions, s.uploadURL(t, "x", 10), nil,
		"Origin", "https://app.example", "Access-Control-Request-Method", "PUT", "Access-Control-Request-Headers", "content-type")
	if resp.StatusCode/100 != 2 || resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" || !strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "PUT") {
		t.Fatalf("preflight: %d %q %v", resp.StatusCode, body, resp.Header)
	}
}

func TestLinksRefuse(t *testing.T) {
	s := startBlobServer(t)
	for name, u := range map[string]media.Upload{
		"no_size":          {Bucket: "story", Name: "a", MaxBytes: 0},
		"type_with_params": {Bucket: "story", Name: "a", MaxBytes: 1, ContentTypes: []string{"image/png; q=1"}},
		"not_a_type":       {Bucket: "story", Name: "a", MaxBytes: 1, ContentTypes: []string{"png,jpeg"}},
		"bad_name":         {Bucket: "story", Name: "../a", MaxBytes: 1},
	} {
		if _, _, err := s.links.UploadURL(u, time.Minute); !errors.Is(err, media.ErrUnusable) {
			t.Errorf("%s: %v; want ErrUnusable", name, err)
		}
	}
	for _, ttl := range []time.Duration{0, -time.Second, api.MaxLinkTTL + time.Second} {
		if _, _, err := s.links.DownloadURL(media.BlobRef{Bucket: "story", Name: "a"}, ttl); !errors.Is(err, media.ErrUnusable) {
			t.Errorf("ttl %s: %v; want ErrUnusable", ttl, err)
		}
	}
	_, exp, err := s.links.DownloadURL(media.BlobRef{Bucket: "story", Name: "a"}, time.Hour)
	if err != nil || exp.Before(time.Now().Add(time.Hour-2*time.Second)) || exp.After(time.Now().Add(time.Hour)) {
		t.Errorf("expiry %s, %v; want in an hour", exp, err)
	}
}

func TestLinksKeyIsKeptInTheDataDir(t *testing.T) {
	s := startBlobServer(t)
	st, err := os.Stat(filepath.Join(s.dir, api.LinksKeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v; want mode 0600", st, err)
	}
	again, err := api.LoadOrCreateLinks(s.dir, s.url)
	if err != nil {
		t.Fatal(err)
	}
	up, _, err := again.UploadURL(media.Upload{Bucket: "story", Name: "k", MaxBytes: 10}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	resp, body := do(t, http.MethodPut, up, strings.NewReader("x"))
	wantStatus(t, resp, body, http.StatusCreated)
	if _, err := api.LoadOrCreateLinks(t.TempDir(), "tideline.example"); err == nil {
		t.Error("a public URL without a scheme: no error")
	}
}
