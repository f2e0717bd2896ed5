// Package web serves the web console: the TypeScript app in src/, built
// by esbuild into dist/ (committed, like generated code, and embedded
// here). `npm run all` in this folder regenerates the Connect clients from
// schemas/proto, type-checks and rebuilds dist/; CI fails when dist/ does
// not match its sources.
package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
)

//go:embed dist
var dist embed.FS

// Prefix is where the console is served; / redirects to it.
const Prefix = "/console/"

// Config is what the console is told at start (GET /console/config.json).
type Config struct {
	// MapTiles is a tile URL template for the danger map, e.g.
	// https://tile.openstreetmap.org/{z}/{x}/{y}.png; empty: the map's cells
	// are drawn on a plain canvas with a scale (machines may be offline).
	MapTiles string `json:"mapTiles"`
	// MapAttribution is shown on the map with MapTiles (the tiles'
	// licence usually asks for one).
	MapAttribution string `json:"mapAttribution"`
	Version        string `json:"version"`
	// BlobOrigin is where blob upload and download links point (the
	// server's --public-url), which the page may PUT to and play audio
	// from besides its own origin; empty: its own origin.
	BlobOrigin string `json:"-"`
}

// file is one served file: its bytes, gzipped bytes and ETag.
type file struct {
	body  []byte
	gz    func() []byte // the body gzipped, made at the first request that takes it; nil: not worth it
	ctype string
	etag  string
}

// Handler serves the console under Prefix: the app's files (with ETags
// and gzip), config.json, and index.html for the folder itself. Every
// answer carries a Content-Security-Policy that lets the page reach only
// its own origin (and the tiles' host with MapTiles).
func Handler(c Config) (http.Handler, error) {
	if c.MapTiles != "" {
		u, err := url.Parse(strings.NewReplacer("{s}", "a", "{z}", "0", "{x}", "0", "{y}", "0", "{r}", "").Replace(c.MapTiles))
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("map tiles: want an http(s) URL template with {z}/{x}/{y}, got %q", c.MapTiles)
		}
	}
	files := map[string]*file{}
	err := fs.WalkDir(dist, "dist", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := dist.ReadFile(p)
		if err != nil {
			return err
		}
		files[strings.TrimPrefix(p, "dist/")] = newFile(b, mime.TypeByExtension(path.Ext(p)))
		return nil
	})
	if err != nil {
		return nil, err
	}
	if files["index.html"] == nil || files["app.js"] == nil {
		return nil, fmt.Errorf("web console: dist/ has no index.html or app.js: run 'npm run all' in api/web")
	}
	cfg, _ := json.Marshal(c)
	files["config.json"] = newFile(cfg, "application/json")
	blobs := ""
	if c.BlobOrigin != "" {
		u, err := url.Parse(c.BlobOrigin)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return nil, fmt.Errorf("blob origin: want an http(s) URL, got %q", c.BlobOrigin)
		}
		blobs = " " + u.Scheme + "://" + u.Host
	}
	csp := "default-src 'self'; img-src 'self' data: blob:" + blobs + "; media-src 'self' blob:" + blobs + "; style-src 'self' 'unsafe-inline'; connect-src 'self'" + blobs + "; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
	if c.MapTiles != "" {
		u, _ := url.Parse(strings.NewReplacer("{s}", "a").Replace(c.MapTiles))
		host := u.Scheme + "://" + u.Host
		if strings.Contains(c.MapTiles, "{s}") {
			host = u.Scheme + "://*." + strings.SplitN(u.Host, ".", 2)[1]
		}
		csp = strings.Replace(csp, "img-src 'self' data:", "img-src 'self' data: "+host, 1)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		name := strings.TrimPrefix(r.URL.Path, Prefix)
		if name == "" {
			name = "index.html"
		}
		f := files[name]
		if f == nil {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Type", f.ctype)
		h.Set("Cache-Control", "no-cache") // revalidated by ETag: a new build is seen at once
		h.Set("ETag", f.etag)
		h.Add("Vary", "Accept-Encoding")
		if match := r.Header.Get("If-None-Match"); match != "" && strings.Contains(match, f.etag) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		body := f.body
		if f.gz != nil && acceptsGzip(r) {
			if gz := f.gz(); gz != nil {
				h.Set("Content-Encoding", "gzip")
				body = gz
			}
		}
		h.Set("Content-Length", fmt.Sprint(len(body)))
		if r.Method == http.MethodHead {
			return
		}
		_, _ = w.Write(body)
	}), nil
}

func newFile(b []byte, ctype string) *file {
	if ctype == "" {
		ctype = "application/octet-stream"
	}
	sum := sha256.Sum256(b)
	f := &file{body: b, ctype: ctype, etag: `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`}
	// Compressing the bundle at the best level takes tens of
	// milliseconds: not at the server's start, which it would delay.
	if len(b) > 1024 {
		f.gz = sync.OnceValue(func() []byte {
			var buf bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
			_, _ = zw.Write(b)
			_ = zw.Close()
			if buf.Len() >= len(b) {
				return nil
			}
			return buf.Bytes()
		})
	}
	return f
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, q, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(enc), "gzip") && strings.TrimSpace(q) != "q=0" {
			return true
		}
	}
	return false
}
