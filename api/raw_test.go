package api_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
)

// Raw calls build requests byte by byte, so tests can send what no
// well-behaved client would (bombs, endless bodies, malformed messages,
// wrong content types) without holding those bodies in memory, and read
// the answer in each protocol's own way.

// wire is how a raw call frames its request.
type wire int

const (
	connectUnary  wire = iota // Connect unary: the body is the message
	connectStream             // Connect streaming: enveloped messages
	grpcWire                  // gRPC: enveloped messages, status in trailers
	grpcWebWire               // gRPC-Web: enveloped messages, trailers in the body
)

func (w wire) String() string {
	return [...]string{"connect", "connect_stream", "grpc", "grpcweb"}[w]
}

// rawRequest is one call as bytes.
type rawRequest struct {
	wire   wire
	path   string // "/pkg.Service/Method"
	token  string
	codec  string // "proto" (default) or "json"
	gzip   bool   // the message is gzip-compressed (and labelled so)
	ctype  string // overrides the content type
	body   io.Reader
	length int64 // for enveloped wires: the message length in the prefix; -1: no envelope
}

// rawResult is what came back.
type rawResult struct {
	status  int // HTTP status
	code    connect.Code
	message string
}

// envelope returns the 5-byte prefix of a message of n bytes.
func envelope(compressed bool, n int64) []byte {
	p := make([]byte, 5)
	if compressed {
		p[0] = 1
	}
	binary.BigEndian.PutUint32(p[1:], uint32(n))
	return p
}

// do sends r to base over client and reads the outcome.
func (r rawRequest) do(tb testing.TB, client *http.Client, base string) rawResult {
	tb.Helper()
	codec := r.codec
	if codec == "" {
		codec = "proto"
	}
	body := r.body
	h := http.Header{}
	switch r.wire {
	case connectUnary:
		h.Set("Content-Type", "application/"+codec)
		h.Set("Connect-Protocol-Version", "1")
		if r.gzip {
			h.Set("Content-Encoding", "gzip")
		}
	case connectStream:
		h.Set("Content-Type", "application/connect+"+codec)
		h.Set("Connect-Protocol-Version", "1")
		if r.gzip {
			h.Set("Connect-Content-Encoding", "gzip")
		}
	case grpcWire, grpcWebWire:
		h.Set("Content-Type", "application/grpc+"+codec)
		if r.wire == grpcWebWire {
			h.Set("Content-Type", "application/grpc-web+"+codec)
		}
		h.Set("Te", "trailers")
		if r.gzip {
			h.Set("Grpc-Encoding", "gzip")
		}
	}
	if r.wire != connectUnary && r.length >= 0 {
		body = io.MultiReader(bytes.NewReader(envelope(r.gzip, r.length)), body)
	}
	if r.ctype != "" {
		h.Set("Content-Type", r.ctype)
	}
	if r.token != "" {
		h.Set("Authorization", "Bearer "+r.token)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+r.path, body)
	if err != nil {
		tb.Fatal(err)
	}
	req.Header = h
	resp, err := client.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", r.wire, r.path, err)
	}
	defer resp.Body.Close()
	out := rawResult{status: resp.StatusCode}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		tb.Fatalf("%s %s: read response: %v", r.wire, r.path, err)
	}
	switch {
	case resp.Header.Get("Grpc-Status") != "": // gRPC and gRPC-Web trailers-only
		out.code, out.message = grpcStatus(resp.Header)
	case r.wire == grpcWire && resp.StatusCode == http.StatusOK:
		out.code, out.message = grpcStatus(resp.Trailer)
	case r.wire == grpcWebWire && resp.StatusCode == http.StatusOK:
		out.code, out.message = grpcWebTrailers(tb, data)
	case r.wire == connectStream && resp.StatusCode == http.StatusOK:
		out.code, out.message = connectEndStream(tb, data)
	case resp.StatusCode == http.StatusOK:
		out.code = 0
	default:
		var e struct{ Code, Message string }
		if json.Unmarshal(data, &e) == nil && e.Code != "" {
			if err := out.code.UnmarshalText([]byte(e.Code)); err != nil {
				tb.Fatalf("bad code %q", e.Code)
			}
			out.message = e.Message
		} else {
			out.code = connect.CodeUnknown
			out.message = string(data)
		}
	}
	return out
}

func grpcStatus(h http.Header) (connect.Code, string) {
	n, err := strconv.Atoi(h.Get("Grpc-Status"))
	if err != nil {
		return connect.CodeUnknown, "no grpc-status"
	}
	msg, _ := url.PathUnescape(h.Get("Grpc-Message"))
	return connect.Code(n), msg
}

// envelopes splits an enveloped body into (flags, payload) pairs.
func envelopes(tb testing.TB, data []byte) (flags []byte, payloads [][]byte) {
	tb.Helper()
	for len(data) >= 5 {
		n := int(binary.BigEndian.Uint32(data[1:5]))
		if len(data) < 5+n {
			tb.Fatalf("truncated envelope")
		}
		flags = append(flags, data[0])
		payloads = append(payloads, data[5:5+n])
		data = data[5+n:]
	}
	return flags, payloads
}

func grpcWebTrailers(tb testing.TB, data []byte) (connect.Code, string) {
	flags, payloads := envelopes(tb, data)
	for i, f := range flags {
		if f&0x80 == 0 {
			continue
		}
		h := http.Header{}
		sc := bufio.NewScanner(bytes.NewReader(payloads[i]))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok {
				h.Set(strings.TrimSpace(k), strings.TrimSpace(v))
			}
		}
		return grpcStatus(h)
	}
	return 0, ""
}

func connectEndStream(tb testing.TB, data []byte) (connect.Code, string) {
	flags, payloads := envelopes(tb, data)
	for i, f := range flags {
		if f&0x02 == 0 {
			continue
		}
		var end struct {
			Error *struct{ Code, Message string }
		}
		if err := json.Unmarshal(payloads[i], &end); err != nil {
			tb.Fatalf("end of stream %q: %v", payloads[i], err)
		}
		if end.Error == nil {
			return 0, ""
		}
		var c connect.Code
		if err := c.UnmarshalText([]byte(end.Error.Code)); err != nil {
			tb.Fatalf("bad code %q", end.Error.Code)
		}
		return c, end.Error.Message
	}
	return 0, ""
}

// zeros is an endless-looking body of n zero bytes that costs no memory.
func zeros(n int64) io.Reader { return io.LimitReader(zeroReader{}, n) }

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// gzipBomb returns about mib MiB of gzip that inflates to mib GiB of
// zeros: mib*1024 copies of one gzip member of 1 MiB of zeros (gzip
// readers read concatenated members as one stream).
func gzipBomb(tb testing.TB, mib int) []byte {
	tb.Helper()
	var member bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&member, gzip.BestCompression)
	if _, err := io.Copy(zw, zeros(1<<20)); err != nil {
		tb.Fatal(err)
	}
	zw.Close()
	return bytes.Repeat(member.Bytes(), mib*1024)
}

// heapPeak samples the heap until stop is called and then returns the
// peak growth over the level at the start (after a GC). While it samples,
// the GC runs when the heap grows by a quarter (not the default double),
// so the peak counts what the server holds, not garbage awaiting a GC.
func heapPeak(tb testing.TB) (stop func() uint64) {
	tb.Helper()
	gc := debug.SetGCPercent(25)
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	peak := base
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	return sync.OnceValue(func() uint64 {
		close(done)
		wg.Wait()
		debug.SetGCPercent(gc)
		return peak - base
	})
}
