package web

import (
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, path string, hdr ...string) *http.Response {
	t.Helper()
	r := httptest.NewRequest(method, path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Result()
}

func TestServesTheBuiltConsole(t *testing.T) {
	h, err := Handler(Config{MapTiles: "https://{s}.tile.example.org/{z}/{x}/{y}.png", BlobOrigin: "https://blobs.example:8443/base", Version: "v1"})
	if err != nil {
		t.Fatal(err)
	}
	res := get(t, h, http.MethodGet, Prefix)
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 || !strings.Contains(string(body), `src="app.js"`) || res.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("index: %d %s %q", res.StatusCode, res.Header.Get("Content-Type"), body)
	}
	csp := res.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'self'", "connect-src 'self' https://blobs.example:8443;", "media-src 'self' blob: https://blobs.example:8443;", "img-src 'self' data: https://*.tile.example.org blob: https://blobs.example:8443;", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	// The bundle, gzipped for those who take it, and revalidated by ETag.
	res = get(t, h, http.MethodGet, Prefix+"app.js", "Accept-Encoding", "br, gzip")
	if res.Header.Get("Content-Encoding") != "gzip" || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/javascript") {
		t.Fatalf("app.js: %v", res.Header)
	}
	zr, err := gzip.NewReader(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := io.ReadAll(zr)
	plain := get(t, h, http.MethodGet, Prefix+"app.js")
	pb, _ := io.ReadAll(plain.Body)
	if plain.Header.Get("Content-Encoding") != "" || string(pb) != string(js) || len(js) < 10000 {
		t.Fatalf("gzip and plain differ (%d, %d bytes)", len(js), len(pb))
	}
	if res := get(t, h, http.MethodGet, Prefix+"app.js", "If-None-Match", plain.Header.Get("ETag")); res.StatusCode != http.StatusNotModified {
		t.Fatalf("revalidation: %d", res.StatusCode)
	}
	var c Config
	if err := json.NewDecoder(get(t, h, http.MethodGet, Prefix+"config.json").Body).Decode(&c); err != nil || c.MapTiles == "" || c.Version != "v1" {
		t.Fatalf("config: %+v, %v", c, err)
	}
	if res := get(t, h, http.MethodGet, Prefix+"../web.go"); res.StatusCode != http.StatusNotFound {
		t.Fatalf("a file outside dist: %d", res.StatusCode)
	}
	if res := get(t, h, http.MethodPost, Prefix); res.StatusCode != http.StatusMethodNotAllowed || res.Header.Get("Allow") != "GET, HEAD" {
		t.Fatalf("POST: %d", res.StatusCode)
	}
}

func TestRefusesBadURLs(t *testing.T) {
	for _, c := range []Config{{MapTiles: "tile.example.org/{z}/{x}/{y}.png"}, {MapTiles: "ftp://x/{z}"}, {BlobOrigin: "blobs.example"}} {
		if _, err := Handler(c); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
}
