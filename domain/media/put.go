package media

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
)

// PutReader is what a Blobs.Put implementation sends to its store: the
// caller's reader, hashed as it is read, ended by ErrTooLarge one byte
// past the limit and by the context's error once the context ends. Each
// Read fills p unless the content ends first, so stores that write what
// one Read returns as one chunk write full chunks. Not safe for
// concurrent use.
type PutReader struct {
	ref  BlobRef // bucket, name and content type
	r    io.Reader
	left int64 // limit - bytes read
	ctx  context.Context
	sha  hash.Hash
	n    int64
	err  error
}

// NewPutReader returns the PutReader of a Put's arguments, once it has
// checked them: bucket and name (ValidateBlob), limit (not negative) and
// ctx (not ended).
func NewPutReader(ctx context.Context, bucket, name, contentType string, r io.Reader, limit int64) (*PutReader, error) {
	if err := ValidateBlob(bucket, name); err != nil {
		return nil, err
	}
	if limit < 0 {
		return nil, fmt.Errorf("%w: negative limit %d", ErrUnusable, limit)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ref := BlobRef{Bucket: bucket, Name: name, ContentType: contentType}
	return &PutReader{ref: ref, r: r, left: limit, ctx: ctx, sha: sha256.New()}, nil
}

func (p *PutReader) Read(b []byte) (int, error) {
	if p.err != nil {
		return 0, p.err
	}
	if err := p.ctx.Err(); err != nil {
		return 0, p.fail(err)
	}
	if room := p.left + 1; room > 0 && int64(len(b)) > room {
		b = b[:room]
	}
	n, err := io.ReadFull(p.r, b)
	p.sha.Write(b[:n])
	p.n += int64(n)
	if p.left -= int64(n); p.left < 0 {
		return 0, p.fail(ErrTooLarge)
	}
	switch err {
	case nil, io.EOF:
	case io.ErrUnexpectedEOF:
		err = io.EOF
	default:
		return 0, p.fail(err)
	}
	return n, err
}

func (p *PutReader) fail(err error) error {
	p.err = err
	return err
}

// Err returns the error that ended the read other than io.EOF: the
// reader's own, ErrTooLarge or the context's; nil while none did. A Put
// that sees one returns it, whatever its store said of the read's end.
func (p *PutReader) Err() error { return p.err }

// Ref returns the reference of what was read, once it was read to io.EOF.
func (p *PutReader) Ref() BlobRef {
	r := p.ref
	r.SHA256, r.Size = hex.EncodeToString(p.sha.Sum(nil)), p.n
	return r
}
