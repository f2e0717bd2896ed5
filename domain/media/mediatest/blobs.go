// Package mediatest holds the contract tests of domain/media's ports: each
// runs against every implementation, from that implementation's tests
// (STYLE rule 13). It imports no adapter.
package mediatest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/tideline/tideline/domain/media"
)

// Blobs runs the contract of media.Blobs, each case on a new store that
// newBlobs returns (its cleanup is the caller's, through t.Cleanup).
func Blobs(t *testing.T, newBlobs func(t *testing.T) media.Blobs) {
	t.Run("round_trip_returns_what_was_put", func(t *testing.T) {
		b := newBlobs(t)
		data := BlobData(1, 300<<10+7) // more than one chunk or part of most stores
		want := BlobRef("story", "page-1.png", "image/png", data)
		// HalfReader: short reads, as from a network body.
		got, err := b.Put(t.Context(), "story", "page-1.png", "image/png", iotest.HalfReader(bytes.NewReader(data)), 1<<20)
		if err != nil || got != want {
			t.Fatalf("Put = %+v, %v; want %+v", got, err, want)
		}
		if got, err := b.Stat(t.Context(), "story", "page-1.png"); err != nil || got != want {
			t.Fatalf("Stat = %+v, %v; want %+v", got, err, want)
		}
		checkBlob(t, b, want, data)
	})

	t.Run("empty_blob", func(t *testing.T) {
		b := newBlobs(t)
		want := BlobRef("story", "empty", "text/plain", nil)
		if got, err := b.Put(t.Context(), "story", "empty", "text/plain", strings.NewReader(""), 10); err != nil || got != want {
			t.Fatalf("Put = %+v, %v; want %+v", got, err, want)
		}
		checkBlob(t, b, want, nil)
	})

	t.Run("blob_of_exactly_the_limit_is_stored", func(t *testing.T) {
		b := newBlobs(t)
		data := BlobData(2, 1000)
		want := BlobRef("story", "exact", "audio/ogg", data)
		if got, err := b.Put(t.Context(), "story", "exact", "audio/ogg", bytes.NewReader(data), 1000); err != nil || got != want {
			t.Fatalf("Put = %+v, %v; want %+v", got, err, want)
		}
		checkBlob(t, b, want, data)
	})

	t.Run("over_the_limit_stores_nothing", func(t *testing.T) {
		b := newBlobs(t)
		_, err := b.Put(t.Context(), "story", "big", "audio/ogg", bytes.NewReader(BlobData(3, 1001)), 1000)
		if !errors.Is(err, media.ErrTooLarge) {
			t.Fatalf("Put of 1001 bytes, limit 1000: %v; want ErrTooLarge", err)
		}
		checkNoBlob(t, b, "story", "big")
	})

	t.Run("endless_reader_is_read_only_past_the_limit", func(t *testing.T) {
		b := newBlobs(t)
		const limit = 256 << 10
		r := &blobCountingReader{r: endlessReader{}}
		_, err := b.Put(t.Context(), "story", "endlessReader", "audio/ogg", r, limit)
		if !errors.Is(err, media.ErrTooLarge) {
			t.Fatalf("Put of an endlessReader reader: %v; want ErrTooLarge", err)
		}
		if r.n > limit+64<<10 {
			t.Errorf("Put read %d bytes with a limit of %d: it must stop soon after the limit", r.n, limit)
		}
		checkNoBlob(t, b, "story", "endlessReader")
	})

	t.Run("failed_put_keeps_the_previous_blob", func(t *testing.T) {
		b := newBlobs(t)
		v1 := BlobData(4, 500)
		want := putBlob(t, b, "story", "page", "image/png", v1)
		if _, err := b.Put(t.Context(), "story", "page", "image/png", bytes.NewReader(BlobData(5, 2000)), 1000); !errors.Is(err, media.ErrTooLarge) {
			t.Fatalf("Put over the limit: %v; want ErrTooLarge", err)
		}
		boom := errors.New("boom")
		if _, err := b.Put(t.Context(), "story", "page", "image/png", io.MultiReader(bytes.NewReader(BlobData(6, 100)), iotest.ErrReader(boom)), 1000); !errors.Is(err, boom) {
			t.Fatalf("Put of a failing reader: %v; want its error", err)
		}
		checkBlob(t, b, want, v1)
	})

	t.Run("reader_error_stores_nothing", func(t *testing.T) {
		b := newBlobs(t)
		boom := errors.New("connection reset by client")
		r := io.MultiReader(bytes.NewReader(BlobData(7, 200<<10)), iotest.ErrReader(boom))
		_, err := b.Put(t.Context(), "story", "torn", "audio/ogg", r, 1<<20)
		if !errors.Is(err, boom) {
			t.Fatalf("Put of a failing reader: %v; want an error wrapping the reader's", err)
		}
		if errors.Is(err, media.ErrUnavailable) {
			t.Errorf("Put of a failing reader: %v; the store is not at fault, want no ErrUnavailable", err)
		}
		checkNoBlob(t, b, "story", "torn")
	})

	t.Run("put_replaces_an_existing_name", func(t *testing.T) {
		b := newBlobs(t)
		putBlob(t, b, "story", "page", "image/png", BlobData(8, 700))
		v2 := BlobData(9, 300)
		want := putBlob(t, b, "story", "page", "image/jpeg", v2)
		checkBlob(t, b, want, v2)
	})

	t.Run("missing_blob_is_not_found", func(t *testing.T) {
		b := newBlobs(t)
		putBlob(t, b, "story", "there", "text/plain", []byte("x"))
		for _, c := range []struct{ bucket, name string }{{"story", "missing"}, {"never-used", "missing"}} {
			checkNoBlob(t, b, c.bucket, c.name)
		}
	})

	t.Run("bad_names_are_unusable", func(t *testing.T) {
		b := newBlobs(t)
		for _, c := range []struct{ bucket, name string }{
			{"", "a"}, {"a.b", "a"}, {"a/b", "a"}, {"a b", "a"}, {strings.Repeat("b", media.MaxBucketLen+1), "a"},
			{"story", ""}, {"story", ".hidden"}, {"story", ".."}, {"story", "a/b"}, {"story", "a b"},
			{"story", "ü"}, {"story", "a%2Fb"}, {"story", "a\x00"}, {"story", strings.Repeat("n", media.MaxBlobNameLen+1)},
		} {
			if _, err := b.Put(t.Context(), c.bucket, c.name, "text/plain", strings.NewReader("x"), 10); !errors.Is(err, media.ErrUnusable) {
				t.Errorf("Put(%q, %q): %v; want ErrUnusable", c.bucket, c.name, err)
			}
			if _, err := b.Stat(t.Context(), c.bucket, c.name); !errors.Is(err, media.ErrUnusable) {
				t.Errorf("Stat(%q, %q): %v; want ErrUnusable", c.bucket, c.name, err)
			}
			if rc, _, err := b.Open(t.Context(), c.bucket, c.name); !errors.Is(err, media.ErrUnusable) {
				if rc != nil {
					rc.Close()
				}
				t.Errorf("Open(%q, %q): %v; want ErrUnusable", c.bucket, c.name, err)
			}
		}
		long := strings.Repeat("n", media.MaxBlobNameLen)
		putBlob(t, b, strings.Repeat("b", media.MaxBucketLen), long, "text/plain", []byte("longest names"))
		putBlob(t, b, "A-Z_0", "Z-a_9.tar.gz", "application/gzip", []byte("every kind of character"))
	})

	t.Run("concurrent_puts", func(t *testing.T) {
		b := newBlobs(t)
		const n = 8
		var wg sync.WaitGroup
		refs := make([]media.BlobRef, 2*n)
		errs := make([]error, 2*n)
		for i := range 2 * n {
			name := fmt.Sprintf("page-%d", i)
			if i >= n {
				name = "same" // half of them race for one name
			}
			wg.Go(func() {
				refs[i], errs[i] = b.Put(t.Context(), "story", name, "image/png", bytes.NewReader(BlobData(uint64(10+i), 100<<10+i)), 1<<20)
			})
		}
		wg.Wait()
		for i := range 2 * n {
			if errs[i] != nil {
				t.Fatalf("Put %d: %v", i, errs[i])
			}
		}
		for i := range n {
			checkBlob(t, b, refs[i], BlobData(uint64(10+i), 100<<10+i))
		}
		// The name raced for holds one of the puts whole.
		got, err := b.Stat(t.Context(), "story", "same")
		if err != nil {
			t.Fatalf("Stat: %v", err)
		}
		for i := n; i < 2*n; i++ {
			if refs[i] == got {
				checkBlob(t, b, got, BlobData(uint64(10+i), 100<<10+i))
				return
			}
		}
		t.Fatalf("after concurrent puts of one name it holds %+v, none of them", got)
	})

	t.Run("canceled_context_stores_nothing", func(t *testing.T) {
		b := newBlobs(t)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if _, err := b.Put(ctx, "story", "canceled", "image/png", bytes.NewReader(BlobData(11, 1000)), 1<<20); !errors.Is(err, context.Canceled) {
			t.Errorf("Put with a canceled context: %v; want context.Canceled", err)
		}
		checkNoBlob(t, b, "story", "canceled")

		// Canceled halfway: the reader would go on for a while.
		ctx, cancel = context.WithCancel(t.Context())
		defer cancel()
		r := CancelingReader(bytes.NewReader(BlobData(12, 8<<20)), 256<<10, cancel)
		if _, err := b.Put(ctx, "story", "halfway", "image/png", r, 16<<20); !errors.Is(err, context.Canceled) {
			t.Errorf("Put canceled halfway: %v; want context.Canceled", err)
		}
		checkNoBlob(t, b, "story", "halfway")
	})

	t.Run("seekable_content_seeks", func(t *testing.T) {
		b := newBlobs(t)
		data := BlobData(13, 300<<10)
		putBlob(t, b, "story", "audio", "audio/ogg", data)
		rc, _, err := b.Open(t.Context(), "story", "audio")
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer rc.Close()
		s, ok := rc.(io.ReadSeeker)
		if !ok {
			t.Skip("Open's reader is not an io.Seeker")
		}
		for _, c := range []struct {
			offset int64
			whence int
			at     int // where in data the next read starts
			n      int
		}{
			{200 << 10, io.SeekStart, 200 << 10, 1000},
			{-10, io.SeekEnd, len(data) - 10, 10},
			{1, io.SeekStart, 1, 5},
			{100, io.SeekCurrent, 106, 70 << 10},
			{0, io.SeekStart, 0, len(data)},
		} {
			pos, err := s.Seek(c.offset, c.whence)
			if err != nil || pos != int64(c.at) {
				t.Fatalf("Seek(%d, %d) = %d, %v; want %d", c.offset, c.whence, pos, err, c.at)
			}
			got := make([]byte, c.n)
			if _, err := io.ReadFull(s, got); err != nil || !bytes.Equal(got, data[c.at:c.at+c.n]) {
				t.Fatalf("after Seek(%d, %d): read %d bytes, %v; want data[%d:%d]", c.offset, c.whence, len(got), err, c.at, c.at+c.n)
			}
		}
	})
}

// BlobData returns n reproducible pseudo-random bytes of seed.
func BlobData(seed uint64, n int) []byte {
	b := make([]byte, n)
	var s [32]byte
	s[0], s[1] = byte(seed), byte(seed>>8)
	rand.NewChaCha8(s).Read(b)
	return b
}

// BlobRef is the reference of data stored as bucket/name.
func BlobRef(bucket, name, contentType string, data []byte) media.BlobRef {
	sum := sha256.Sum256(data)
	return media.BlobRef{Bucket: bucket, Name: name, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(data)), ContentType: contentType}
}

func putBlob(t *testing.T, b media.Blobs, bucket, name, contentType string, data []byte) media.BlobRef {
	t.Helper()
	want := BlobRef(bucket, name, contentType, data)
	got, err := b.Put(t.Context(), bucket, name, contentType, bytes.NewReader(data), int64(len(data)))
	if err != nil || got != want {
		t.Fatalf("Put(%s/%s) = %+v, %v; want %+v", bucket, name, got, err, want)
	}
	return got
}

// checkBlob checks that Stat and Open return want and Open data.
func checkBlob(t *testing.T, b media.Blobs, want media.BlobRef, data []byte) {
	t.Helper()
	if got, err := b.Stat(t.Context(), want.Bucket, want.Name); err != nil || got != want {
		t.Fatalf("Stat = %+v, %v; want %+v", got, err, want)
	}
	rc, got, err := b.Open(t.Context(), want.Bucket, want.Name)
	if err != nil || got != want {
		t.Fatalf("Open = %+v, %v; want %+v", got, err, want)
	}
	defer rc.Close()
	content, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(content, data) {
		t.Fatalf("Open read %d bytes, %v; want the %d put", len(content), err, len(data))
	}
}

// checkNoBlob checks that Stat and Open find no bucket/name.
func checkNoBlob(t *testing.T, b media.Blobs, bucket, name string) {
	t.Helper()
	if ref, err := b.Stat(t.Context(), bucket, name); !errors.Is(err, media.ErrNotFound) {
		t.Fatalf("Stat(%s/%s) = %+v, %v; want ErrNotFound", bucket, name, ref, err)
	}
	rc, _, err := b.Open(t.Context(), bucket, name)
	if rc != nil {
		rc.Close()
	}
	if !errors.Is(err, media.ErrNotFound) {
		t.Fatalf("Open(%s/%s): %v; want ErrNotFound", bucket, name, err)
	}
}

type endlessReader struct{}

func (endlessReader) Read(p []byte) (int, error) { return len(p), nil }

type blobCountingReader struct {
	r io.Reader
	n int64
}

func (c *blobCountingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// CancelingReader returns a reader of r that calls cancel once it has
// given after bytes, and goes on giving.
func CancelingReader(r io.Reader, after int, cancel context.CancelFunc) io.Reader {
	return &cancelingReader{r: r, after: after, cancel: cancel}
}

type cancelingReader struct {
	r      io.Reader
	after  int
	cancel context.CancelFunc
}

func (c *cancelingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.after -= n; c.after <= 0 {
		c.cancel()
	}
	return n, err
}
