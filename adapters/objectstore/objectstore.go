// Package objectstore implements media.Blobs on JetStream object stores:
// one object store bucket per blob bucket (BucketPrefix + name, e.g.
// BLOBS_story), created with file storage on the first Put to it.
package objectstore

import (
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/tideline/tideline/domain/media"
)

// BucketPrefix starts the name of every object store bucket of blobs.
const BucketPrefix = "BLOBS_"

// Config tunes Blobs.
type Config struct {
	// Replicas of each object store bucket (clustered JetStream); default 1.
	Replicas int
	// Writable, if set, is asked before a Put and before each chunk it
	// sends: an error fails the Put with media.ErrUnavailable and stores
	// nothing. The embedded server's natsserver.DiskGuard.Err reports a
	// full disk this way.
	Writable func() error
}

// Blobs stores blobs in JetStream object stores. Content type is kept in
// each object's headers (Content-Type); its size and SHA-256 are the
// object's own (nats.go computes the digest over the chunks it sends, the
// same bytes Put hashes). Safe for concurrent use.
type Blobs struct {
	js  jetstream.JetStream
	cfg Config

	mu      sync.Mutex
	buckets map[string]jetstream.ObjectStore
}

var _ media.Blobs = (*Blobs)(nil)

// New returns Blobs over nc's JetStream.
func New(nc *nats.Conn, cfg Config) (*Blobs, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("objectstore: %w", err)
	}
	cfg.Replicas = cmp.Or(cfg.Replicas, 1)
	return &Blobs{js: js, cfg: cfg, buckets: map[string]jetstream.ObjectStore{}}, nil
}

// chunkSize is what each chunk of an object holds (nats.go's default);
// Put fills every chunk but the last.
const chunkSize = 128 << 10

// Put implements media.Blobs. It streams r to the object store a chunk at
// a time; when r fails, is longer than limit, or ctx ends, the chunks
// already sent are purged and bucket/name keeps what it held before.
func (b *Blobs) Put(ctx context.Context, bucket, name, contentType string, r io.Reader, limit int64) (media.BlobRef, error) {
	body, err := media.NewPutReader(ctx, bucket, name, contentType, writableReader{r, b.writable}, limit)
	if err != nil {
		return media.BlobRef{}, err
	}
	if err := b.writable(); err != nil {
		return media.BlobRef{}, err
	}
	obs, err := b.bucket(ctx, bucket, true)
	if err != nil {
		return media.BlobRef{}, err
	}
	// nats.go purges the chunks of a failed Put with the context it was
	// given: a canceled one would leave them in the stream for good. So it
	// gets one that is not canceled (each publish then times out on its
	// own), and body ends the Put when ctx ends.
	_, err = obs.Put(context.WithoutCancel(ctx), jetstream.ObjectMeta{
		Name:    name,
		Headers: nats.Header{"Content-Type": []string{contentType}},
		Opts:    &jetstream.ObjectMetaOptions{ChunkSize: chunkSize},
	}, body)
	switch {
	case body.Err() != nil:
		return media.BlobRef{}, body.Err()
	case err != nil:
		return media.BlobRef{}, unavailable("put "+bucket+"/"+name, err)
	}
	return body.Ref(), nil
}

// Stat implements media.Blobs.
func (b *Blobs) Stat(ctx context.Context, bucket, name string) (media.BlobRef, error) {
	if err := media.ValidateBlob(bucket, name); err != nil {
		return media.BlobRef{}, err
	}
	obs, err := b.bucket(ctx, bucket, false)
	if err != nil {
		return media.BlobRef{}, err
	}
	info, err := obs.GetInfo(ctx, name)
	if err != nil {
		return media.BlobRef{}, notFound(bucket, name, err)
	}
	return ref(bucket, info)
}

// Open implements media.Blobs. Its reader is an io.ReadSeeker: seeking
// forward reads and drops what it skips, seeking back reads the object
// again from its start (the object store reads an object only in order).
func (b *Blobs) Open(ctx context.Context, bucket, name string) (io.ReadCloser, media.BlobRef, error) {
	if err := media.ValidateBlob(bucket, name); err != nil {
		return nil, media.BlobRef{}, err
	}
	obs, err := b.bucket(ctx, bucket, false)
	if err != nil {
		return nil, media.BlobRef{}, err
	}
	res, err := obs.Get(ctx, name)
	if err != nil {
		return nil, media.BlobRef{}, notFound(bucket, name, err)
	}
	info, err := res.Info()
	if err == nil {
		var r media.BlobRef
		if r, err = ref(bucket, info); err == nil {
			return &object{ctx: ctx, obs: obs, nuid: info.NUID, name: name, size: r.Size, res: res}, r, nil
		}
	}
	res.Close()
	return nil, media.BlobRef{}, err
}

// bucket returns bucket's object store, creating it when create is set;
// without, a bucket never created is media.ErrNotFound.
func (b *Blobs) bucket(ctx context.Context, bucket string, create bool) (jetstream.ObjectStore, error) {
	b.mu.Lock()
	obs, ok := b.buckets[bucket]
	b.mu.Unlock()
	if ok {
		return obs, nil
	}
	var err error
	if create {
		obs, err = b.js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket:      BucketPrefix + bucket,
			Description: "tideline blobs of bucket " + bucket,
			Storage:     jetstream.FileStorage,
			Replicas:    b.cfg.Replicas,
		})
	} else {
		obs, err = b.js.ObjectStore(ctx, BucketPrefix+bucket)
	}
	if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("%w: bucket %s", media.ErrNotFound, bucket)
	}
	if err != nil {
		return nil, unavailable("bucket "+bucket, err)
	}
	b.mu.Lock()
	b.buckets[bucket] = obs
	b.mu.Unlock()
	return obs, nil
}

func (b *Blobs) writable() error {
	if b.cfg.Writable == nil {
		return nil
	}
	if err := b.cfg.Writable(); err != nil {
		return unavailable("store not writable", err)
	}
	return nil
}

func ref(bucket string, info *jetstream.ObjectInfo) (media.BlobRef, error) {
	sum, err := jetstream.DecodeObjectDigest(info.Digest)
	if err != nil {
		return media.BlobRef{}, unavailable("object "+bucket+"/"+info.Name+" digest", err)
	}
	return media.BlobRef{Bucket: bucket, Name: info.Name, SHA256: hex.EncodeToString(sum), Size: int64(info.Size), ContentType: info.Headers.Get("Content-Type")}, nil
}

func notFound(bucket, name string, err error) error {
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("%w: %s/%s", media.ErrNotFound, bucket, name)
	}
	return unavailable("get "+bucket+"/"+name, err)
}

func unavailable(op string, err error) error {
	return fmt.Errorf("objectstore: %s: %w: %w", op, media.ErrUnavailable, err)
}

// writableReader fails once the store is not writable.
type writableReader struct {
	r        io.Reader
	writable func() error
}

func (w writableReader) Read(p []byte) (int, error) {
	if err := w.writable(); err != nil {
		return 0, err
	}
	return w.r.Read(p)
}

// object reads an object, seeking as its io.Seeker says.
type object struct {
	ctx  context.Context
	obs  jetstream.ObjectStore
	nuid string // the version opened: a reopen after a replace fails
	name string
	size int64
	res  jetstream.ObjectResult // reads from pos on
	pos  int64
	off  int64 // where the next Read starts
}

func (o *object) Read(p []byte) (int, error) {
	if o.off >= o.size {
		return 0, io.EOF
	}
	if o.off < o.pos {
		o.res.Close()
		res, err := o.obs.Get(o.ctx, o.name)
		if err != nil {
			return 0, unavailable("reopen "+o.name, err)
		}
		if info, err := res.Info(); err != nil || info.NUID != o.nuid {
			res.Close()
			return 0, fmt.Errorf("objectstore: %s was replaced while read: %w", o.name, media.ErrUnavailable)
		}
		o.res, o.pos = res, 0
	}
	if o.off > o.pos {
		n, err := io.CopyN(io.Discard, o.res, o.off-o.pos)
		if o.pos += n; err != nil {
			return 0, err
		}
	}
	n, err := o.res.Read(p)
	o.pos += int64(n)
	o.off = o.pos
	return n, err
}

func (o *object) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekCurrent:
		offset += o.off
	case io.SeekEnd:
		offset += o.size
	}
	if offset < 0 {
		return 0, errors.New("objectstore: seek before the start")
	}
	o.off = offset
	return offset, nil
}

func (o *object) Close() error { return o.res.Close() }
