package jetstream

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/tideline/tideline/adapters/natsserver/natstest"
	"github.com/tideline/tideline/domain/es"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
)

// storedMsg is a message as the tests compare it: from the blocks or from
// a consumer.
type storedMsg struct {
	seq     uint64
	time    time.Time
	subject string
	header  nats.Header
	data    []byte
}

// blockStore is a store on an embedded server holding n commits of about
// size bytes each, over several subjects, some with an idempotency key and
// metadata (so with more headers), and the stream's directory.
func blockStore(tb testing.TB, n, size int) (*Store, *server.Server, string) {
	tb.Helper()
	ns, nc := natstest.Start(tb)
	s, err := Open(context.Background(), nc, Config{})
	if err != nil {
		tb.Fatal(err)
	}
	for i := range n {
		opts := es.AppendOptions{ExpectedVersion: es.AnyVersion}
		if i%3 == 0 {
			opts.IdempotencyKey = fmt.Sprintf("k%d", i)
			opts.Meta = es.Metadata{Actor: "walker:w", CorrelationID: fmt.Sprint("c", i)}
		}
		user := fmt.Sprintf("u%d", i%17)
		ev := &stepsv1.StepsRecorded{UserId: user + strings.Repeat("x", size+i%50), Date: "2026-12-04", Steps: int32(i)}
		if _, err := s.Append(context.Background(), es.StreamID{Context: "steps", Type: "user", ID: user}, []proto.Message{ev}, opts); err != nil {
			tb.Fatal(err)
		}
	}
	dir := filepath.Join(ns.JetStreamConfig().StoreDir, ns.GlobalAccount().GetName(), "streams", s.StreamName())
	if _, err := os.Stat(filepath.Join(dir, "msgs")); err != nil {
		tb.Fatalf("the stream's directory: %v", err)
	}
	return s, ns, dir
}

// fromBlocks reads the stream's messages after..upTo from its blocks.
func fromBlocks(tb testing.TB, dir string, after, upTo uint64) ([]storedMsg, uint64, error) {
	tb.Helper()
	var out []storedMsg
	last, err := readBlocks(dir, "EVENTS", after, upTo, func(m blockMsg) error {
		sm := storedMsg{seq: m.Seq, time: time.Unix(0, m.Time), subject: string(m.Subject), data: bytes.Clone(m.Data)}
		if m.Header != nil {
			h, err := nats.DecodeHeadersMsg(m.Header)
			if err != nil {
				return fmt.Errorf("sequence %d: headers: %w", m.Seq, err)
			}
			sm.header = h
		}
		out = append(out, sm)
		return nil
	})
	return out, last, err
}

// fromConsumer reads the stream's messages after..upTo with an ordered
// consumer.
func fromConsumer(tb testing.TB, s *Store, after, upTo uint64) []storedMsg {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cons, err := s.js.OrderedConsumer(ctx, s.StreamName(), jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: after + 1})
	if err != nil {
		tb.Fatal(err)
	}
	var out []storedMsg
	for len(out) < int(upTo-after) {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			tb.Fatal(err)
		}
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil {
				tb.Fatal(err)
			}
			if md.Sequence.Stream > upTo {
				continue
			}
			out = append(out, storedMsg{seq: md.Sequence.Stream, time: md.Timestamp, subject: m.Subject(), header: m.Headers(), data: m.Data()})
		}
		if batch.Error() != nil {
			tb.Fatal(batch.Error())
		}
	}
	return out
}

func sameMessages(t *testing.T, what string, got, want []storedMsg) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d messages from the blocks, %d from the consumer", what, len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if len(w.header) == 0 {
			w.header = nil
		}
		if g.seq != w.seq || !g.time.Equal(w.time) || g.subject != w.subject || !bytes.Equal(g.data, w.data) || !reflect.DeepEqual(g.header, w.header) {
			t.Fatalf("%s: message %d differs:\nblocks   %d %v %s %v %d B\nconsumer %d %v %s %v %d B",
				what, i, g.seq, g.time, g.subject, g.header, len(g.data), w.seq, w.time, w.subject, w.header, len(w.data))
		}
	}
}

// The blocks hold exactly what a consumer reads, in order: every
// sequence, subject, header, payload and time, over several block files,
// whole and from the middle.
func TestReadBlocksMatchesConsumer(t *testing.T) {
	const n = 6000
	s, _, dir := blockStore(t, n, 3500) // about 21 MB: three blocks or more
	files, err := blockFiles(filepath.Join(dir, "msgs"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 3 {
		t.Fatalf("%d block files, want 3 or more for the test to mean anything", len(files))
	}
	got, last, err := fromBlocks(t, dir, 0, n)
	if err != nil || last != n {
		t.Fatalf("read the blocks to %d, error %v; want to %d", last, err, n)
	}
	sameMessages(t, "whole stream", got, fromConsumer(t, s, 0, n))

	// From the middle of one block to the middle of another.
	got, last, err = fromBlocks(t, dir, 2500, 4700)
	if err != nil || last != 4700 {
		t.Fatalf("read the blocks from 2501 to %d, error %v; want to 4700", last, err)
	}
	sameMessages(t, "2501 to 4700", got, fromConsumer(t, s, 2500, 4700))

	// Across each boundary between blocks, starting just before it, at
	// it and just after it.
	for _, f := range files[1:] {
		first, err := firstSeq(f.path)
		if err != nil {
			t.Fatal(err)
		}
		for _, after := range []uint64{first - 2, first - 1, first} {
			got, last, err := fromBlocks(t, dir, after, first+5)
			if err != nil || last != first+5 {
				t.Fatalf("read the blocks after %d to %d (%s starts at %d): to %d, error %v", after, first+5, filepath.Base(f.path), first, last, err)
			}
			sameMessages(t, fmt.Sprintf("after %d", after), got, fromConsumer(t, s, after, first+5))
		}
	}

	// Past the end: what there is.
	got, last, err = fromBlocks(t, dir, n-10, n+100)
	if err != nil || last != n || len(got) != 10 {
		t.Fatalf("read the blocks after %d up to %d: %d messages, to %d, error %v; want 10, to %d", n-10, n+100, len(got), last, err, n)
	}
}

// A damaged record stops the read just before it, with errBlockFormat, and
// every message returned before it is whole: a record cut short in an old
// block, and a flipped byte. A record cut short at the newest block's end
// (being written) ends the read there without error.
func TestReadBlocksStopsBeforeADamagedRecord(t *testing.T) {
	const n = 3000
	s, ns, dir := blockStore(t, n, 3500)
	want := fromConsumer(t, s, 0, n)
	ns.Shutdown()
	ns.WaitForShutdown()
	files, err := blockFiles(filepath.Join(dir, "msgs"))
	if err != nil {
		t.Fatal(err)
	}

	damage := func(t *testing.T, edit func(path string, b []byte) []byte, path string) string {
		t.Helper()
		copyDir := t.TempDir()
		if err := os.CopyFS(copyDir, os.DirFS(dir)); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(copyDir, "msgs", filepath.Base(path))
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, edit(p, b), 0o600); err != nil {
			t.Fatal(err)
		}
		return copyDir
	}
	check := func(t *testing.T, dir string, stopAt uint64, wantErr bool) {
		t.Helper()
		got, last, err := fromBlocks(t, dir, 0, n)
		if wantErr && !errors.Is(err, errBlockFormat) {
			t.Fatalf("error %v, want one wrapping errBlockFormat", err)
		}
		if !wantErr && err != nil {
			t.Fatalf("error %v, want none", err)
		}
		if last != stopAt-1 {
			t.Fatalf("stopped after %d, want just before the damaged record %d (%v)", last, stopAt, err)
		}
		sameMessages(t, "before the damage", got, want[:stopAt-1])
	}

	// A record cut short at the end of the newest block is one being
	// written: the read ends before it, without error.
	t.Run("torn tail", func(t *testing.T) {
		lastFile := files[len(files)-1]
		first, err := firstSeq(lastFile.path)
		if err != nil {
			t.Fatal(err)
		}
		// Cut the last record in half: the one of sequence n.
		cut := damage(t, func(_ string, b []byte) []byte {
			return b[:len(b)-len(want[n-1].data)/2]
		}, lastFile.path)
		check(t, cut, n, false)
		// The same in an older block is damage.
		cutOld := damage(t, func(_ string, b []byte) []byte { return b[:len(b)-10] }, files[0].path)
		first1, err := firstSeq(files[1].path)
		if err != nil {
			t.Fatal(err)
		}
		check(t, cutOld, first1-1, true)
		if first >= n {
			t.Fatalf("the last block starts at %d: want several records in it", first)
		}
	})
	t.Run("flipped byte", func(t *testing.T) {
		// A byte of the payload of the 100th record of the first block.
		var offset int
		buf, err := os.ReadFile(files[0].path)
		if err != nil {
			t.Fatal(err)
		}
		for range 99 {
			offset += int(binary.LittleEndian.Uint32(buf[offset:]) &^ blockHeaderBit)
		}
		flipped := damage(t, func(_ string, b []byte) []byte {
			b[offset+200] ^= 0x20
			return b
		}, files[0].path)
		check(t, flipped, 100, true)
	})
}
