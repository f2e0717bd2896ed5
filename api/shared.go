package api

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"hash/maphash"
	"io"
	"slices"
	"sync"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
)

// sharedEncodings holds the encoding, and the gzip of it, of the messages
// that many live streams send alike (one answer for all the watchers of a
// query), so that each is marshalled and compressed once rather than once
// per stream. Streams reach them through the handler's codec and gzip
// compressor (options); a message not shared is encoded as usual. Safe
// for concurrent use.
type sharedEncodings struct {
	mu     sync.Mutex
	seed   maphash.Seed
	byMsg  map[proto.Message]*encoding
	byHash map[uint64][]*encoding // by maphash of raw; one per distinct content
}

// encoding is one content's: the messages shared with that content (refs)
// all send it. Many live answers are alike (say, the counts of users who
// walked as much), so an encoding per message would leave thousands of
// equal ones under one hash, each sought and removed in turn.
type encoding struct {
	raw    []byte
	hash   uint64
	refs   int // messages shared with this encoding; guarded by sharedEncodings.mu
	gzOnce sync.Once
	gz     []byte
	gzErr  error
}

func newSharedEncodings() *sharedEncodings {
	return &sharedEncodings{seed: maphash.MakeSeed(), byMsg: map[proto.Message]*encoding{}, byHash: map[uint64][]*encoding{}}
}

// share encodes msg once for every stream that sends it until unshare.
// msg must not change while shared.
func (e *sharedEncodings) share(msg proto.Message) error {
	raw, err := proto.Marshal(msg)
	if err != nil {
		return fmt.Errorf("encode shared message: %w", err)
	}
	h := maphash.Bytes(e.seed, raw)
	e.mu.Lock()
	defer e.mu.Unlock()
	if old := e.byMsg[msg]; old != nil { // shared again: counted once
		e.release(old)
	}
	enc := e.findLocked(h, raw)
	if enc == nil {
		enc = &encoding{raw: raw, hash: h}
		e.byHash[h] = append(e.byHash[h], enc)
	}
	enc.refs++
	e.byMsg[msg] = enc
	return nil
}

// unshare forgets msg; streams still sending it encode it themselves.
func (e *sharedEncodings) unshare(msg proto.Message) {
	e.mu.Lock()
	defer e.mu.Unlock()
	enc := e.byMsg[msg]
	if enc == nil {
		return
	}
	delete(e.byMsg, msg)
	e.release(enc)
}

// release drops one message's hold on enc, and enc with the last.
func (e *sharedEncodings) release(enc *encoding) {
	if enc.refs--; enc.refs > 0 {
		return
	}
	list := slices.DeleteFunc(e.byHash[enc.hash], func(x *encoding) bool { return x == enc })
	if len(list) == 0 {
		delete(e.byHash, enc.hash)
	} else {
		e.byHash[enc.hash] = list
	}
}

// findLocked returns the encoding of raw, whose hash is h, if any.
func (e *sharedEncodings) findLocked(h uint64, raw []byte) *encoding {
	for _, enc := range e.byHash[h] {
		if bytes.Equal(enc.raw, raw) {
			return enc
		}
	}
	return nil
}

func (e *sharedEncodings) ofMsg(msg any) *encoding {
	m, ok := msg.(proto.Message)
	if !ok {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.byMsg[m]
}

func (e *sharedEncodings) ofRaw(raw []byte) *encoding {
	h := maphash.Bytes(e.seed, raw)
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.findLocked(h, raw)
}

// gzipped returns raw compressed, computing it once.
func (enc *encoding) gzipped() ([]byte, error) {
	enc.gzOnce.Do(func() {
		var b bytes.Buffer
		w, _ := gzipWriters.Get().(*gzip.Writer)
		if w == nil {
			w = gzip.NewWriter(&b)
		} else {
			w.Reset(&b)
		}
		defer gzipWriters.Put(w)
		if _, err := w.Write(enc.raw); err != nil {
			enc.gzErr = err
			return
		}
		enc.gzErr = w.Close()
		enc.gz = b.Bytes()
	})
	return enc.gz, enc.gzErr
}

// freshGzipLevel compresses an answer sent once (a GetDashboard's, say),
// where a shared one, compressed once for every stream that sends it,
// takes gzip's default. On a dashboard of 56 KB (1,000 orders waiting in
// about 400 zones) BestSpeed took 0.40 ms and 9.9 KB, the default 1.57 ms
// and 7.6 KB: a call's CPU weighs more than its 2 KB.
const freshGzipLevel = gzip.BestSpeed

// gzipWriters keeps gzip writers for shared encodings: each holds most of
// a megabyte.
var gzipWriters sync.Pool

// options are the handler options that make streams use the shared
// encodings: a "proto" codec and a "gzip" compressor.
func (e *sharedEncodings) options() connect.HandlerOption {
	return connect.WithHandlerOptions(
		connect.WithCodec(sharedCodec{e}),
		connect.WithCompression("gzip",
			func() connect.Decompressor { return &gzip.Reader{} },
			func() connect.Compressor { return &sharedGzip{shared: e} }),
	)
}

// sharedCodec is the binary protobuf codec, which appends a shared
// message's encoding instead of marshalling it again.
type sharedCodec struct{ shared *sharedEncodings }

func (sharedCodec) Name() string { return "proto" }

func (c sharedCodec) Marshal(msg any) ([]byte, error) { return c.MarshalAppend(nil, msg) }

func (c sharedCodec) MarshalAppend(dst []byte, msg any) ([]byte, error) {
	if enc := c.shared.ofMsg(msg); enc != nil {
		return append(dst, enc.raw...), nil
	}
	m, ok := msg.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a protobuf message", msg)
	}
	return proto.MarshalOptions{}.MarshalAppend(dst, m)
}

func (sharedCodec) MarshalStable(msg any) ([]byte, error) {
	m, ok := msg.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("%T is not a protobuf message", msg)
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(m)
}

func (sharedCodec) Unmarshal(data []byte, msg any) error {
	m, ok := msg.(proto.Message)
	if !ok {
		return fmt.Errorf("%T is not a protobuf message", msg)
	}
	if err := proto.Unmarshal(data, m); err != nil {
		return fmt.Errorf("unmarshal into %T: %w", msg, err)
	}
	return nil
}

func (sharedCodec) IsBinary() bool { return true }

// sharedGzip is a gzip compressor that takes what it is given whole, and
// writes a shared encoding's gzip, computed once, or else compresses it
// at freshGzipLevel.
type sharedGzip struct {
	shared *sharedEncodings
	dst    io.Writer
	in     bytes.Buffer
	gz     *gzip.Writer
}

func (g *sharedGzip) Reset(dst io.Writer) {
	g.dst = dst
	g.in.Reset()
}

func (g *sharedGzip) Write(p []byte) (int, error) { return g.in.Write(p) }

func (g *sharedGzip) Close() error {
	dst := g.dst
	g.dst = nil
	defer g.in.Reset()
	if dst == nil {
		return nil
	}
	if enc := g.shared.ofRaw(g.in.Bytes()); enc != nil {
		gz, err := enc.gzipped()
		if err != nil {
			return err
		}
		_, err = dst.Write(gz)
		return err
	}
	if g.gz == nil {
		g.gz, _ = gzip.NewWriterLevel(dst, freshGzipLevel) // a valid level: no error
	} else {
		g.gz.Reset(dst)
	}
	if _, err := g.gz.Write(g.in.Bytes()); err != nil {
		return err
	}
	return g.gz.Close()
}
