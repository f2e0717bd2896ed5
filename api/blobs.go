package api

import (
	"cmp"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tideline/tideline/domain/media"
)

// LinksKeyFile is where a data dir keeps the key that signs blob URLs:
// 32 random bytes, in hex.
const LinksKeyFile = "keys/blob-links.key"

// BlobPath is where BlobService serves blobs: BlobPath + bucket/name.
const BlobPath = "/blobs/"

// MaxLinkTTL is the longest validity of a blob URL (S3's presigned URLs
// have the same bound).
const MaxLinkTTL = 7 * 24 * time.Hour

// BlobReadTimeout is how long an upload may send nothing before it is
// cut: the server's other timeouts do not bound a request body.
const BlobReadTimeout = 30 * time.Second

// Links signs blob URLs (media.Links) with an HMAC-SHA256 key of the data
// dir, and BlobService checks them. A URL is
//
//	{base}/blobs/{bucket}/{name}?exp={unix seconds}&sig={signature}
//
// to download (GET or HEAD), and to upload (PUT) also &ct={allowed media
// types, comma-separated; absent: any}&max={most bytes}. The signature is
// the unpadded base64url HMAC-SHA256 of
//
//	"tideline-blob-v1\n" + method + "\n" + bucket + "\n" + name + "\n" + exp + "\n" + ct + "\n" + max
//
// with the query values as they stand in the URL (ct and max empty in a
// download URL). Safe for concurrent use.
type Links struct {
	key  []byte
	base string
}

var _ media.Links = (*Links)(nil)

// Base returns what every link starts with (the server's public URL).
func (l *Links) Base() string { return l.base }

// LoadOrCreateLinks reads dataDir's blob link key, creating it (mode 0600)
// on first use, and returns Links whose URLs start with publicURL (the
// server's address as clients reach it, e.g. https://tideline.example).
func LoadOrCreateLinks(dataDir, publicURL string) (*Links, error) {
	u, err := url.Parse(publicURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("public URL %q: want http(s)://host[:port][/path]", publicURL)
	}
	path := filepath.Join(dataDir, LinksKeyFile)
	key, err := readLinksKey(path)
	if errors.Is(err, os.ErrNotExist) {
		key = make([]byte, 32)
		rand.Read(key)
		if err = createKeyFile(path, []byte(hex.EncodeToString(key)+"\n")); errors.Is(err, os.ErrExist) {
			key, err = readLinksKey(path)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("blob link key: %w", err)
	}
	return &Links{key: key, base: strings.TrimSuffix(publicURL, "/")}, nil
}

func readLinksKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) != 32 {
		return nil, fmt.Errorf("%s: want 32 bytes in hex", path)
	}
	return key, nil
}

// UploadURL implements media.Links: u.MaxBytes must be positive, each
// content type a media type without parameters, ttl at most MaxLinkTTL.
// Errors wrap media.ErrUnusable.
func (l *Links) UploadURL(u media.Upload, ttl time.Duration) (string, time.Time, error) {
	if u.MaxBytes <= 0 {
		return "", time.Time{}, fmt.Errorf("%w: upload of at most %d bytes", media.ErrUnusable, u.MaxBytes)
	}
	types := make([]string, len(u.ContentTypes))
	for i, ct := range u.ContentTypes {
		mt, params, err := mime.ParseMediaType(ct)
		if err != nil || len(params) > 0 || strings.Contains(mt, ",") {
			return "", time.Time{}, fmt.Errorf("%w: content type %q: want a media type without parameters", media.ErrUnusable, ct)
		}
		types[i] = mt
	}
	q := url.Values{"ct": {strings.Join(types, ",")}, "max": {strconv.FormatInt(u.MaxBytes, 10)}}
	if len(types) == 0 {
		q.Del("ct")
	}
	return l.url(http.MethodPut, u.Bucket, u.Name, q, ttl)
}

// DownloadURL implements media.Links: ttl at most MaxLinkTTL. Errors wrap
// media.ErrUnusable.
func (l *Links) DownloadURL(ref media.BlobRef, ttl time.Duration) (string, time.Time, error) {
	return l.url(http.MethodGet, ref.Bucket, ref.Name, url.Values{}, ttl)
}

func (l *Links) url(method, bucket, name string, q url.Values, ttl time.Duration) (string, time.Time, error) {
	if err := media.ValidateBlob(bucket, name); err != nil {
		return "", time.Time{}, err
	}
	if ttl <= 0 || ttl > MaxLinkTTL {
		return "", time.Time{}, fmt.Errorf("%w: link valid for %s: want more than 0, at most %s", media.ErrUnusable, ttl, MaxLinkTTL)
	}
	exp := time.Now().Add(ttl).Truncate(time.Second)
	q.Set("exp", strconv.FormatInt(exp.Unix(), 10))
	q.Set("sig", l.sign(method, bucket, name, q))
	return l.base + BlobPath + bucket + "/" + name + "?" + q.Encode(), exp, nil
}

func (l *Links) sign(method, bucket, name string, q url.Values) string {
	m := hmac.New(sha256.New, l.key)
	io.WriteString(m, strings.Join([]string{"tideline-blob-v1", method, bucket, name, q.Get("exp"), q.Get("ct"), q.Get("max")}, "\n"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// check says why r may not do method on bucket/name ("" if it may).
func (l *Links) check(r *http.Request, method, bucket, name string) string {
	q := r.URL.Query()
	if q.Get("exp") == "" || q.Get("sig") == "" {
		return "not a signed URL: exp or sig missing"
	}
	if !hmac.Equal([]byte(q.Get("sig")), []byte(l.sign(method, bucket, name, q))) {
		return "bad signature"
	}
	if exp, err := strconv.ParseInt(q.Get("exp"), 10, 64); err != nil || time.Now().Unix() > exp {
		return "link expired"
	}
	return ""
}

// BlobService serves the URLs links signs, on blobs:
//
//   - PUT stores the request body as bucket/name (201 Created, the blob's
//     reference as JSON and its SHA-256 as ETag) if its Content-Type is
//     one the URL allows (else 415; absent means application/octet-stream)
//     and it has at most the URL's max bytes (else 413, nothing stored).
//     An upload URL stores one blob: once bucket/name exists, or while
//     another upload to it runs, a PUT is refused with 409 Conflict and
//     stores nothing; a PUT that failed may be retried with the same URL.
//   - GET and HEAD serve the blob with its Content-Type, Content-Length,
//     its SHA-256 as ETag and Cache-Control: private, and Range requests
//     when the store's reader seeks.
//
// A URL that is not signed, whose signature does not match, or that
// expired is refused with 403 and a short reason.
func BlobService(links *Links, blobs media.Blobs) Service {
	h := &blobHandler{links: links, blobs: blobs}
	mux := http.NewServeMux()
	mux.HandleFunc("PUT "+BlobPath+"{bucket}/{name}", h.upload)
	mux.HandleFunc("GET "+BlobPath+"{bucket}/{name}", h.download)
	return Handler(BlobPath, mux)
}

type blobHandler struct {
	links     *Links
	blobs     media.Blobs
	uploading sync.Map // bucket/name of the uploads running
}

// blobJSON is an upload's answer.
type blobJSON struct {
	Bucket      string `json:"bucket"`
	Name        string `json:"name"`
	SHA256      string `json:"sha256"`
	Size        int64  `json:"size"`
	ContentType string `json:"content_type"`
}

func (h *blobHandler) upload(w http.ResponseWriter, r *http.Request) {
	bucket, name := r.PathValue("bucket"), r.PathValue("name")
	if reason := h.links.check(r, http.MethodPut, bucket, name); reason != "" {
		http.Error(w, reason, http.StatusForbidden)
		return
	}
	q := r.URL.Query()
	max, err := strconv.ParseInt(q.Get("max"), 10, 64)
	if err != nil {
		http.Error(w, "not an upload URL", http.StatusForbidden)
		return
	}
	if r.ContentLength > max {
		http.Error(w, fmt.Sprintf("larger than the %d bytes allowed", max), http.StatusRequestEntityTooLarge)
		return
	}
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		ct = "application/octet-stream"
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		http.Error(w, "bad Content-Type", http.StatusUnsupportedMediaType)
		return
	}
	if allowed := q.Get("ct"); allowed != "" && !slices.Contains(strings.Split(allowed, ","), mt) {
		http.Error(w, fmt.Sprintf("content type %s not allowed; want one of %s", mt, allowed), http.StatusUnsupportedMediaType)
		return
	}
	key := bucket + "/" + name
	if _, running := h.uploading.LoadOrStore(key, true); running {
		http.Error(w, "an upload to this URL is running", http.StatusConflict)
		return
	}
	defer h.uploading.Delete(key)
	if _, err := h.blobs.Stat(r.Context(), bucket, name); err == nil {
		http.Error(w, "already uploaded", http.StatusConflict)
		return
	} else if !errors.Is(err, media.ErrNotFound) {
		blobError(w, r, err)
		return
	}
	body := deadlineReader{r: r.Body, rc: http.NewResponseController(w)}
	ref, err := h.blobs.Put(r.Context(), bucket, name, mime.FormatMediaType(mt, params), body, max)
	if err != nil {
		blobError(w, r, err)
		return
	}
	w.Header().Set("ETag", `"`+ref.SHA256+`"`)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(blobJSON(ref))
}

func (h *blobHandler) download(w http.ResponseWriter, r *http.Request) {
	bucket, name := r.PathValue("bucket"), r.PathValue("name")
	if reason := h.links.check(r, http.MethodGet, bucket, name); reason != "" {
		http.Error(w, reason, http.StatusForbidden)
		return
	}
	rc, ref, err := h.blobs.Open(r.Context(), bucket, name)
	if err != nil {
		blobError(w, r, err)
		return
	}
	defer rc.Close()
	hd := w.Header()
	hd.Set("Content-Type", cmp.Or(ref.ContentType, "application/octet-stream"))
	hd.Set("ETag", `"`+ref.SHA256+`"`)
	hd.Set("Cache-Control", "private")
	// Uploaded content is served from the API's origin: never sniffed
	// into HTML, never run as a page.
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Content-Security-Policy", "sandbox; default-src 'none'")
	if rs, ok := rc.(io.ReadSeeker); ok {
		http.ServeContent(w, r, "", time.Time{}, rs)
		return
	}
	hd.Set("Content-Length", strconv.FormatInt(ref.Size, 10))
	if r.Method != http.MethodHead {
		io.Copy(w, rc)
	}
}

// blobError answers a failed store call; what a store says of itself is
// logged, not sent.
func blobError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, media.ErrTooLarge):
		http.Error(w, "larger than the bytes allowed", http.StatusRequestEntityTooLarge)
	case errors.Is(err, media.ErrNotFound):
		http.Error(w, "no such blob", http.StatusNotFound)
	case errors.Is(err, media.ErrUnusable):
		http.Error(w, "bad bucket or name", http.StatusBadRequest)
	case r.Context().Err() != nil: // the client left
	case errors.Is(err, media.ErrUnavailable):
		slog.Error("blob store unavailable", "method", r.Method, "path", r.URL.Path, "err", err)
		w.Header().Set("Retry-After", "5")
		http.Error(w, "storage unavailable; retry later", http.StatusServiceUnavailable)
	case r.Method == http.MethodPut: // any other error of Put is the body's
		http.Error(w, "could not read the request body", http.StatusBadRequest)
	default:
		slog.Error("blob request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
	}
}

// deadlineReader gives each read of a request body BlobReadTimeout.
type deadlineReader struct {
	r  io.Reader
	rc *http.ResponseController
}

func (d deadlineReader) Read(p []byte) (int, error) {
	_ = d.rc.SetReadDeadline(time.Now().Add(BlobReadTimeout)) // not every connection supports it
	return d.r.Read(p)
}
