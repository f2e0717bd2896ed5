// Package s3 implements media.Blobs on an S3-compatible store (AWS S3,
// MinIO, Ceph, ...) with minio-go: every blob bucket is a key prefix of
// one S3 bucket (bucket/name).
package s3

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/tideline/tideline/domain/media"
)

// Config says where the blobs are kept.
type Config struct {
	// Endpoint is the store's URL: https://host[:port], or http:// for a
	// store on a trusted network.
	Endpoint string
	// Bucket is the S3 bucket, which must exist.
	Bucket               string
	AccessKey, SecretKey string
	// Region, when the store needs one named; default: asked of the store.
	Region string
	// PartSize is the largest blob Put sends in one request; it sends
	// larger ones in parts of this size (a multipart upload), holding at
	// most two in memory. Default and least 5 MiB, S3's smallest part.
	PartSize uint64
	// Transport, if set, carries the requests (tests).
	Transport http.RoundTripper
}

// MinPartSize is S3's smallest part of a multipart upload but the last.
const MinPartSize = 5 << 20

// partialPrefix starts the key of a blob being put. A blob bucket never
// starts with '.' (media.ValidateBlob), so it never meets a blob's key.
const partialPrefix = ".partial/"

// Blobs stores blobs in one S3 bucket. The content type is the object's;
// the SHA-256 is its user metadata "Sha256". Safe for concurrent use.
type Blobs struct {
	c        *minio.Client
	bucket   string
	partSize uint64
}

var _ media.Blobs = (*Blobs)(nil)

// New returns Blobs on cfg's store. It does not contact the store.
func New(cfg Config) (*Blobs, error) {
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("s3: endpoint %q: want https://host[:port] or http://host[:port]", cfg.Endpoint)
	}
	if cfg.Bucket == "" {
		return nil, errors.New("s3: no bucket")
	}
	c, err := minio.New(u.Host, &minio.Options{
		Creds:     credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure:    u.Scheme == "https",
		Region:    cfg.Region,
		Transport: cfg.Transport,
		// A store that is down fails a call in seconds, not minutes: the
		// media pipelines retry on ErrUnavailable themselves.
		MaxRetries: 3,
	})
	if err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	return &Blobs{c: c, bucket: cfg.Bucket, partSize: max(cfg.PartSize, MinPartSize)}, nil
}

// Put implements media.Blobs. It uploads r (in parts of Config.PartSize
// when larger) to a key of its own, then copies that object (within the store) to
// bucket/name with its SHA-256, and removes it: bucket/name appears whole
// or not at all, and a failed put (r failed or was too long, ctx ended,
// the store failed) leaves what it held before.
func (b *Blobs) Put(ctx context.Context, bucket, name, contentType string, r io.Reader, limit int64) (media.BlobRef, error) {
	body, err := media.NewPutReader(ctx, bucket, name, contentType, r, limit)
	if err != nil {
		return media.BlobRef{}, err
	}
	partial := partialPrefix + rand.Text()
	// A blob smaller than a part goes in one request; a larger one in
	// parts (on failure minio-go aborts the upload, discarding its parts,
	// even once ctx has ended).
	first, err := io.ReadAll(io.LimitReader(body, int64(b.partSize)))
	if err == nil {
		opts := minio.PutObjectOptions{ContentType: contentType, PartSize: b.partSize}
		if len(first) < int(b.partSize) {
			_, err = b.c.PutObject(ctx, b.bucket, partial, bytes.NewReader(first), int64(len(first)), opts)
		} else {
			_, err = b.c.PutObject(ctx, b.bucket, partial, io.MultiReader(bytes.NewReader(first), body), -1, opts)
		}
	}
	switch {
	case body.Err() != nil:
		return media.BlobRef{}, body.Err()
	case err != nil:
		return media.BlobRef{}, b.failed(ctx, "put "+bucket+"/"+name, err)
	}
	defer b.c.RemoveObject(context.WithoutCancel(ctx), b.bucket, partial, minio.RemoveObjectOptions{})
	ref := body.Ref()
	_, err = b.c.CopyObject(ctx,
		minio.CopyDestOptions{Bucket: b.bucket, Object: key(bucket, name), ContentType: contentType,
			UserMetadata: map[string]string{shaMeta: ref.SHA256}, ReplaceMetadata: true},
		minio.CopySrcOptions{Bucket: b.bucket, Object: partial})
	if err != nil {
		return media.BlobRef{}, b.failed(ctx, "put "+bucket+"/"+name, err)
	}
	return ref, nil
}

// Stat implements media.Blobs.
func (b *Blobs) Stat(ctx context.Context, bucket, name string) (media.BlobRef, error) {
	if err := media.ValidateBlob(bucket, name); err != nil {
		return media.BlobRef{}, err
	}
	info, err := b.c.StatObject(ctx, b.bucket, key(bucket, name), minio.StatObjectOptions{})
	if err != nil {
		return media.BlobRef{}, b.failed(ctx, "stat "+bucket+"/"+name, err)
	}
	return ref(bucket, name, info)
}

// Open implements media.Blobs. Its reader is an io.ReadSeeker: each seek
// starts a ranged GET.
func (b *Blobs) Open(ctx context.Context, bucket, name string) (io.ReadCloser, media.BlobRef, error) {
	if err := media.ValidateBlob(bucket, name); err != nil {
		return nil, media.BlobRef{}, err
	}
	obj, err := b.c.GetObject(ctx, b.bucket, key(bucket, name), minio.GetObjectOptions{})
	if err != nil {
		return nil, media.BlobRef{}, b.failed(ctx, "open "+bucket+"/"+name, err)
	}
	info, err := obj.Stat() // the first request
	var r media.BlobRef
	if err == nil {
		r, err = ref(bucket, name, info)
	} else {
		err = b.failed(ctx, "open "+bucket+"/"+name, err)
	}
	if err != nil {
		obj.Close()
		return nil, media.BlobRef{}, err
	}
	return obj, r, nil
}

const shaMeta = "Sha256" // as minio-go returns it: X-Amz-Meta-Sha256

func key(bucket, name string) string { return bucket + "/" + name }

func ref(bucket, name string, info minio.ObjectInfo) (media.BlobRef, error) {
	sha := info.UserMetadata[shaMeta]
	if sha == "" {
		return media.BlobRef{}, fmt.Errorf("s3: %s has no SHA-256 metadata: not put by Tideline: %w", key(bucket, name), media.ErrUnavailable)
	}
	return media.BlobRef{Bucket: bucket, Name: name, SHA256: sha, Size: info.Size, ContentType: info.ContentType}, nil
}

// failed maps a store error: a missing key is media.ErrNotFound, ctx's end
// its error, the rest media.ErrUnavailable.
func (b *Blobs) failed(ctx context.Context, op string, err error) error {
	if minio.ToErrorResponse(err).Code == "NoSuchKey" {
		return fmt.Errorf("s3: %s: %w", op, media.ErrNotFound)
	}
	if ctxErr := ctx.Err(); ctxErr != nil && errors.Is(err, ctxErr) {
		return fmt.Errorf("s3: %s: %w", op, err)
	}
	return fmt.Errorf("s3: %s: %w: %w", op, media.ErrUnavailable, err)
}
