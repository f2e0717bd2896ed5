package jetstream

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/minio/highwayhash"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Block files: a cheap read of an embedded stream's history.
//
// A start without snapshots reads the whole events stream. Through an
// ordered consumer the server and the client spend about 4.5 µs of CPU on
// each message (the server's delivery and reply subject, the client's
// protocol parsing and copy); on 2 cores that alone keeps the machine
// busy. On the embedded server the same messages lie in the stream's block
// files, which JetStream's file store only appends to (EVENTS denies
// delete and purge): reading them costs a quarter to a fifth of that
// (BenchmarkReadBlocks: 1.3–1.6 µs of CPU a message against 5.0–5.5).
//
// The format is nats-server's file store's (server/filestore.go, v2.15.2,
// pinned in go.mod; TestReadBlocksMatchesConsumer holds the two together).
// A block msgs/N.blk is a run of records:
//
//	total_len(4) seq(8) ts(8) subj_len(2) subj [hdr_len(4) hdr] msg hash(8)
//
// little endian; total_len's high bit says the record has headers, seq's
// two high bits mark an erased message and a delete tombstone, ts is Unix
// nanoseconds, and hash is HighwayHash-64 keyed with
// sha256("<stream>-<N>") over seq, ts, subj, hdr and msg.

// blockMessage is a blockMsg as a jetstream.Msg, so that the replay pass
// hands it on like a consumer's: Metadata gives its stream sequence, time
// and pending count; it has no reply subject and takes no acknowledgement.
type blockMessage struct {
	m       blockMsg
	subject string // m.Subject, made a string once: the pass asks for it more than once
	pending uint64
	header  nats.Header
}

var errNotConsumed = errors.New("read from the stream's files: nothing to acknowledge")

func (b *blockMessage) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{Sequence: jetstream.SequencePair{Stream: b.m.Seq}, NumPending: b.pending,
		Timestamp: time.Unix(0, b.m.Time).UTC()}, nil
}
func (b *blockMessage) Data() []byte                     { return b.m.Data }
func (b *blockMessage) Headers() nats.Header             { return b.header }
func (b *blockMessage) Subject() string                  { return b.subject }
func (b *blockMessage) Reply() string                    { return "" }
func (b *blockMessage) Ack() error                       { return errNotConsumed }
func (b *blockMessage) DoubleAck(context.Context) error  { return errNotConsumed }
func (b *blockMessage) Nak() error                       { return errNotConsumed }
func (b *blockMessage) NakWithDelay(time.Duration) error { return errNotConsumed }
func (b *blockMessage) InProgress() error                { return errNotConsumed }
func (b *blockMessage) Term() error                      { return errNotConsumed }
func (b *blockMessage) TermWithReason(string) error      { return errNotConsumed }

// makeBlockMessage makes m a jetstream.Msg with pending messages after it.
// Headers that do not parse make an error: the caller reads on from m's
// sequence through the server instead.
func makeBlockMessage(m blockMsg, pending uint64) (blockMessage, error) {
	b := blockMessage{m: m, subject: string(m.Subject), pending: pending}
	if len(m.Header) > 0 {
		h, err := nats.DecodeHeadersMsg(m.Header)
		if err != nil {
			return blockMessage{}, fmt.Errorf("%w: sequence %d: headers: %v", errBlockFormat, m.Seq, err)
		}
		b.header = h
	}
	return b, nil
}

// meta is readMessage's answer for b, without the MsgMetadata that
// Metadata allocates.
func (b *blockMessage) meta() messageMeta {
	meta := messageMeta{seq: b.m.Seq, pending: b.pending, recorded: time.Unix(0, b.m.Time).UTC()}
	meta.readStream(b.subject)
	return meta
}

// blockMsg is one message read from a block file. Subject, Header (the
// raw NATS header block, nil without headers) and Data alias the block as
// read, a buffer of its own that is never reused: they stay valid, and
// must not be changed.
type blockMsg struct {
	Seq     uint64
	Time    int64 // Unix nanoseconds
	Subject []byte
	Header  []byte
	Data    []byte
}

// errBlockFormat wraps why readBlocks stopped before a record it could not
// vouch for.
var errBlockFormat = errors.New("stream block files")

const (
	blockRecordHead = 22      // total_len, seq, ts, subj_len
	blockRecordHash = 8       // HighwayHash-64
	blockHeaderBit  = 1 << 31 // in total_len: the record has headers
	blockErasedBit  = 1 << 63 // in seq: the message was erased
	blockTombBit    = 1 << 62 // in seq: a delete tombstone, no message
	blockMaxRecord  = 32 << 20
)

// readBlocks calls fn with each message of the stream named stream whose
// directory is dir (it holds msgs/N.blk), in sequence order, from after+1
// through upTo, each record's checksum verified and each sequence the one
// after the last. It returns the last sequence it passed to fn (after when
// none). It stops without error past upTo or at the end of the files, and
// with an error wrapping errBlockFormat before a record it cannot vouch
// for: a corrupt record, one cut short in an older block, a gap, an erased
// message or a tombstone, which the stream's configuration rules out. A
// record cut short at the end of the newest block is one being written:
// it stops there without error. What it returned is then
// still good: the caller reads on from last+1 through the server, and
// nothing is skipped or given twice. An error of fn stops it and is
// returned as it is.
//
// Call it only up to a sequence that is on disk: one the server had when
// it started, or that it has since reported stored and flushed.
func readBlocks(dir, stream string, after, upTo uint64, fn func(blockMsg) error) (last uint64, err error) {
	last = after
	if upTo <= after {
		return last, nil
	}
	blocks, err := blockFiles(filepath.Join(dir, "msgs"))
	if err != nil {
		return last, err
	}
	for i, b := range blocks {
		// A block whose successor starts at or before after+1 holds
		// nothing to read. Once one block has been read the next ones
		// all follow it: none is skipped, and their heads need no look.
		if last == after && i+1 < len(blocks) {
			first, err := firstSeq(blocks[i+1].path)
			if err != nil {
				return last, err
			}
			if first != 0 && first <= last+1 {
				continue
			}
		}
		buf, err := os.ReadFile(b.path)
		if err != nil {
			return last, fmt.Errorf("%w: %v", errBlockFormat, err)
		}
		key := sha256.Sum256([]byte(stream + "-" + strconv.FormatUint(uint64(b.index), 10)))
		hh, err := highwayhash.NewDigest64(key[:])
		if err != nil {
			return last, fmt.Errorf("%w: %v", errBlockFormat, err)
		}
		var done bool
		if last, done, err = readBlock(buf, b.path, hh, last, upTo, i == len(blocks)-1, fn); err != nil || done {
			return last, err
		}
	}
	return last, nil
}

// readBlock reads one block's records after last, as readBlocks does; done
// says it passed upTo, or reached the end of the newest block (final) in
// the middle of a record: one the server is writing (a tail torn by a
// crash is cut off when the server starts), which the caller reads
// through the server.
func readBlock(buf []byte, path string, hh *highwayhash.Digest64, last, upTo uint64, final bool, fn func(blockMsg) error) (uint64, bool, error) {
	le := binary.LittleEndian
	bad := func(at int, why string) (uint64, bool, error) {
		return last, true, fmt.Errorf("%w: %s at offset %d, after sequence %d: %s", errBlockFormat, path, at, last, why)
	}
	var sum [highwayhash.Size64]byte
	for at := 0; at < len(buf); {
		if len(buf)-at < blockRecordHead+blockRecordHash {
			if final {
				return last, true, nil
			}
			return bad(at, "a record cut short")
		}
		rec := buf[at:]
		rl := le.Uint32(rec)
		hasHeader := rl&blockHeaderBit != 0
		n := int(rl &^ blockHeaderBit)
		if final && n > len(rec) && n <= blockMaxRecord {
			return last, true, nil
		}
		if n < blockRecordHead+blockRecordHash || n > blockMaxRecord || n > len(rec) {
			return bad(at, fmt.Sprintf("record length %d", n))
		}
		rec = rec[:n]
		seq := le.Uint64(rec[4:])
		if seq&(blockErasedBit|blockTombBit) != 0 {
			return bad(at, "an erased message or a delete tombstone")
		}
		slen := int(le.Uint16(rec[20:]))
		body := rec[blockRecordHead : n-blockRecordHash]
		if slen > len(body) {
			return bad(at, "subject longer than its record")
		}
		subj, rest := body[:slen], body[slen:]
		var hdr []byte
		if hasHeader {
			if len(rest) < 4 {
				return bad(at, "header length cut short")
			}
			hl := int(le.Uint32(rest))
			if hl > len(rest)-4 {
				return bad(at, "headers longer than their record")
			}
			hdr, rest = rest[4:4+hl], rest[4+hl:]
		}
		hh.Reset()
		hh.Write(rec[4:20])
		hh.Write(subj)
		hh.Write(hdr)
		hh.Write(rest)
		if !bytes.Equal(hh.Sum(sum[:0]), rec[n-blockRecordHash:]) {
			return bad(at, "checksum does not match")
		}
		at += n
		if seq <= last {
			continue // read already, or before where the caller starts
		}
		if seq > upTo {
			return last, true, nil
		}
		if seq != last+1 {
			return bad(at-n, fmt.Sprintf("sequence %d follows %d", seq, last))
		}
		if err := fn(blockMsg{Seq: seq, Time: int64(le.Uint64(rec[12:])), Subject: subj, Header: hdr, Data: rest}); err != nil {
			return last, true, err
		}
		last = seq
	}
	return last, false, nil
}

// blockFile is a msgs/N.blk file and its N.
type blockFile struct {
	path  string
	index uint32
}

// blockFiles lists dir's block files by index.
func blockFiles(dir string) ([]blockFile, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errBlockFormat, err)
	}
	var out []blockFile
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".blk")
		if !ok || e.IsDir() {
			continue
		}
		n, err := strconv.ParseUint(name, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("%w: unexpected block file %s", errBlockFormat, e.Name())
		}
		out = append(out, blockFile{path: filepath.Join(dir, e.Name()), index: uint32(n)})
	}
	slices.SortFunc(out, func(a, b blockFile) int { return int(a.index) - int(b.index) })
	return out, nil
}

// firstSeq returns the sequence of path's first record, 0 for an empty
// block.
func firstSeq(path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("%w: %v", errBlockFormat, err)
	}
	defer f.Close()
	var head [blockRecordHead]byte
	if _, err := io.ReadFull(f, head[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return 0, nil
		}
		return 0, fmt.Errorf("%w: %s: %v", errBlockFormat, path, err)
	}
	return binary.LittleEndian.Uint64(head[4:]) &^ (blockErasedBit | blockTombBit), nil
}
