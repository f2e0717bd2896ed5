package jetstream

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/tideline/tideline/projections"
)

// A projections.Segmented projection's snapshot is a manifest and its
// segments, each an object of the snapshot bucket. The manifest is the
// object named after the projection (where a whole snapshot would be),
// with the same metadata plus snapshotMetaFormat; it lists, in restore
// order, each segment's name, the object holding it, its size and SHA-256.
// A segment's object is "<projection>/<segment>/<random>": written once
// under a new name, never overwritten.
//
// A snapshot writes the segments the capture changed, then the manifest
// (an object store Put replaces the object at once, when its metadata
// lands), then removes the objects the new manifest no longer lists. A
// crash at any point leaves the previous manifest and its segments, or the
// new ones, whole; what the crash leaves unreferenced is removed after the
// next snapshot of a later Run.
const (
	snapshotMetaFormat = "tideline-snapshot-format"
	// snapshotMetaModelPosition is, in a kept segmented snapshot, the
	// position its Capture returned.
	snapshotMetaModelPosition = "tideline-model-position"
	segmentsFormat            = "segments-1"
)

type manifest struct {
	Format   string `json:"format"`
	Position uint64 `json:"position"` // the runner's, as in the metadata
	// ModelPosition is the position Capture returned, for RestoreSegments.
	ModelPosition uint64       `json:"model_position"`
	Segments      []segmentRef `json:"segments"`
}

type segmentRef struct {
	Name   string `json:"name"`
	Object string `json:"object"`
	Size   int    `json:"size"`
	SHA256 string `json:"sha256"` // hex
}

// captureSegments takes a capture of l.seg at pos on Run's goroutine and
// returns its upload, which may run on another goroutine: it encodes and
// writes the changed segments, then the manifest, then removes the
// objects of the previous snapshot (and orphans, and with sweep any object
// of the projection) the new manifest does not list.
//
// With toHistory (a full capture), the upload also keeps the snapshot in the
// history, its segments inline.
func (l *runLoop) captureSegments(pos uint64, toHistory bool) func(context.Context) snapshotWritten {
	modelPos, segs := l.seg.Capture(l.full)
	prev, orphans, sweep := l.stored, l.orphans, !l.swept
	return func(ctx context.Context) snapshotWritten {
		next := &manifest{Format: segmentsFormat, Position: pos, ModelPosition: modelPos}
		var encoded map[string][]byte
		if toHistory {
			encoded = map[string][]byte{}
		}
		written, err := l.writeSegments(ctx, next, segs, prev, encoded)
		if err == nil {
			var body []byte
			if body, err = json.Marshal(next); err == nil {
				err = l.writeHead(ctx, pos, segmentsFormat, body)
			}
		}
		if err != nil {
			return snapshotWritten{pos: pos, err: err, orphans: written}
		}
		keep := map[string]bool{}
		for _, s := range next.Segments {
			keep[s.Object] = true
		}
		var gone []string
		if prev != nil {
			for _, s := range prev.Segments {
				gone = append(gone, s.Object)
			}
		}
		if sweep {
			gone = append(gone, l.segmentObjects(ctx)...)
		}
		for _, obj := range append(gone, orphans...) {
			if !keep[obj] {
				if err := l.removeObject(ctx, obj); err != nil {
					l.r.log.Warn("remove snapshot segment", "object", obj, "error", err)
				}
			}
		}
		if toHistory && len(encoded) == len(next.Segments) {
			names := make([]string, len(next.Segments))
			for i, s := range next.Segments {
				names[i] = s.Name
			}
			meta := l.r.snapshotMeta(pos, historySegmentsFormat)
			meta[snapshotMetaModelPosition] = strconv.FormatUint(modelPos, 10)
			l.r.keepHistory(ctx, pos, meta, encodeInline(names, encoded))
		}
		l.r.log.Debug("wrote snapshot segments", "position", pos, "segments", len(next.Segments), "written", len(written))
		return snapshotWritten{pos: pos, man: next}
	}
}

// writeSegments encodes and writes the segments that have an Encode and
// adds every segment to next, the unchanged ones as prev stored them. It
// returns the objects it wrote.
//
// When encoded is not nil, every segment's bytes are added to it.
func (l *runLoop) writeSegments(ctx context.Context, next *manifest, segs []projections.Segment, prev *manifest, encoded map[string][]byte) (written []string, err error) {
	stored := map[string]segmentRef{}
	if prev != nil {
		for _, s := range prev.Segments {
			stored[s.Name] = s
		}
	}
	name := l.r.p.Name()
	for _, s := range segs {
		if s.Encode == nil {
			ref, ok := stored[s.Name]
			if !ok {
				return written, fmt.Errorf("segment %s: unchanged but not in the stored snapshot", s.Name)
			}
			next.Segments = append(next.Segments, ref)
			continue
		}
		data, err := s.Encode()
		if err != nil {
			return written, fmt.Errorf("encode segment %s: %w", s.Name, err)
		}
		if encoded != nil {
			encoded[s.Name] = data
		}
		obj := name + "/" + s.Name + "/" + rand.Text()
		if err := l.put(ctx, jetstream.ObjectMeta{Name: obj, Description: "snapshot segment of projection " + name}, data); err != nil {
			return written, fmt.Errorf("write segment %s: %w", s.Name, err)
		}
		written = append(written, obj)
		sum := sha256.Sum256(data)
		next.Segments = append(next.Segments, segmentRef{Name: s.Name, Object: obj, Size: len(data), SHA256: hex.EncodeToString(sum[:])})
	}
	return written, nil
}

// restoreSegments restores l.seg from the manifest data: it fails on a
// manifest that does not decode or is not of pos, and on a segment that
// cannot be read whole or does not match its size and digest.
func (l *runLoop) restoreSegments(ctx context.Context, data []byte, pos uint64) (*manifest, error) {
	var man manifest
	if err := json.Unmarshal(data, &man); err != nil {
		return nil, fmt.Errorf("snapshot manifest: %w", err)
	}
	if man.Format != segmentsFormat || man.Position != pos {
		return nil, fmt.Errorf("snapshot manifest of format %q at position %d, metadata says %d", man.Format, man.Position, pos)
	}
	refs := make(map[string]segmentRef, len(man.Segments))
	names := make([]string, len(man.Segments))
	for i, s := range man.Segments {
		refs[s.Name], names[i] = s, s.Name
	}
	read := func(name string) ([]byte, error) {
		ref := refs[name]
		ctx, cancel := context.WithTimeout(ctx, snapshotReadTimeout)
		defer cancel()
		res, err := l.obs.Get(ctx, ref.Object)
		if errors.Is(err, jetstream.ErrObjectNotFound) {
			// The manifest names it: on a cluster, this node's replica
			// may not have it yet.
			return nil, fmt.Errorf("read %s: %w: %w", ref.Object, errRetryRead, err)
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", ref.Object, err)
		}
		data, err := readObject(res)
		if err != nil {
			return nil, err
		}
		if sum := sha256.Sum256(data); len(data) != ref.Size || hex.EncodeToString(sum[:]) != ref.SHA256 {
			return nil, fmt.Errorf("read %s: %d bytes or their digest differ from the manifest's", ref.Object, len(data))
		}
		return data, nil
	}
	err := func() (err error) {
		defer func() {
			if v := recover(); v != nil {
				err = fmt.Errorf("restore panicked: %v", v)
			}
		}()
		return l.seg.RestoreSegments(man.ModelPosition, names, read)
	}()
	if err != nil {
		return nil, err
	}
	return &man, nil
}

// segmentObjects lists the bucket's segment objects of the projection,
// and the delete markers of those deleted by other hands.
func (l *runLoop) segmentObjects(ctx context.Context) []string {
	ctx, cancel := context.WithTimeout(ctx, snapshotReadTimeout)
	defer cancel()
	infos, err := l.obs.List(ctx, jetstream.ListObjectsShowDeleted())
	if err != nil {
		if !errors.Is(err, jetstream.ErrNoObjectsFound) {
			l.r.log.Warn("list snapshot segments", "error", err)
		}
		return nil
	}
	var out []string
	for _, info := range infos {
		if strings.HasPrefix(info.Name, l.r.p.Name()+"/") {
			out = append(out, info.Name)
		}
	}
	return out
}

// removeObject deletes obj and then its delete marker, which the object
// store would keep for good: segment names are never reused.
func (l *runLoop) removeObject(ctx context.Context, obj string) error {
	ctx, cancel := context.WithTimeout(ctx, snapshotWriteTimeout)
	defer cancel()
	if err := l.obs.Delete(ctx, obj); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
		return err
	}
	bucket := l.r.opts.Bucket
	stream, err := l.r.store.js.Stream(ctx, "OBJ_"+bucket)
	if err != nil {
		return err
	}
	return stream.Purge(ctx, jetstream.WithPurgeSubject("$O."+bucket+".M."+base64.URLEncoding.EncodeToString([]byte(obj))))
}

// put writes an object, within snapshotWriteTimeout and while the store
// takes writes.
func (l *runLoop) put(ctx context.Context, meta jetstream.ObjectMeta, data []byte) error {
	ctx, cancel := context.WithTimeout(ctx, snapshotWriteTimeout)
	defer cancel()
	ctx, stop := l.r.store.whileWritable(ctx)
	defer stop()
	return l.r.uploaded.put(ctx, l.obs, meta, data)
}
