package api

import (
	"bytes"
	"compress/gzip"
	"io"
	"testing"

	"google.golang.org/protobuf/proto"

	dashboardv1 "github.com/tideline/tideline/schemas/gen/tideline/dashboard/v1"
)

// TestSharedEncodingIsTheMessages checks that a shared message is sent as
// its own encoding and gzip, the gzip computed once for every stream, and
// that messages not shared are encoded as usual.
func TestSharedEncodingIsTheMessages(t *testing.T) {
	enc := newSharedEncodings()
	codec := sharedCodec{enc}
	msg := &dashboardv1.WatchDashboardResponse{Dashboard: &dashboardv1.Dashboard{Position: 7, TimeZone: "Asia/Seoul", Date: "2026-12-02"}}
	other := &dashboardv1.WatchDashboardResponse{Dashboard: &dashboardv1.Dashboard{Position: 8}}
	if err := enc.share(msg); err != nil {
		t.Fatal(err)
	}
	gzipOf := func(raw []byte) []byte {
		t.Helper()
		c := &sharedGzip{shared: enc}
		var out bytes.Buffer
		c.Reset(&out)
		if _, err := bytes.NewBuffer(raw).WriteTo(c); err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		r, err := gzip.NewReader(bytes.NewReader(out.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		back, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(back, raw) {
			t.Fatalf("gzip round trip gives %d bytes, want %d", len(back), len(raw))
		}
		return out.Bytes()
	}
	for _, m := range []*dashboardv1.WatchDashboardResponse{msg, other} {
		raw, err := codec.MarshalAppend([]byte("prefix"), m)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := proto.Marshal(m)
		if !bytes.Equal(raw, append([]byte("prefix"), want...)) {
			t.Fatalf("codec encodes %v as %x, want %x", m, raw, want)
		}
		gzipOf(want)
	}
	raw, _ := proto.Marshal(msg)
	if shared := enc.ofRaw(raw); shared == nil || shared.gz == nil {
		t.Fatal("the shared message's gzip was not kept")
	}
	kept := enc.ofRaw(raw).gz
	if again := gzipOf(raw); !bytes.Equal(again, kept) {
		t.Fatal("the shared message was compressed again")
	}
	enc.unshare(msg)
	if enc.ofMsg(msg) != nil || enc.ofRaw(raw) != nil || len(enc.byMsg) != 0 || len(enc.byHash) != 0 {
		t.Fatal("unshare left the message shared")
	}
}

// TestAlikeAnswersShareOneEncoding checks that messages of equal content
// share one encoding, which lasts until the last of them is unshared.
func TestAlikeAnswersShareOneEncoding(t *testing.T) {
	enc := newSharedEncodings()
	alike := make([]*dashboardv1.WatchDashboardResponse, 1000)
	for i := range alike {
		alike[i] = &dashboardv1.WatchDashboardResponse{Dashboard: &dashboardv1.Dashboard{Position: 7}}
		if err := enc.share(alike[i]); err != nil {
			t.Fatal(err)
		}
	}
	other := &dashboardv1.WatchDashboardResponse{Dashboard: &dashboardv1.Dashboard{Position: 8}}
	if err := enc.share(other); err != nil {
		t.Fatal(err)
	}
	if err := enc.share(other); err != nil { // shared again: still one
		t.Fatal(err)
	}
	raw, _ := proto.Marshal(alike[0])
	one := enc.ofRaw(raw)
	if one == nil || len(enc.byHash) != 2 || one.refs != len(alike) {
		t.Fatalf("%d hashes, the shared encoding %+v: want 2 hashes and one encoding for all %d alike", len(enc.byHash), one, len(alike))
	}
	for i, m := range alike {
		if enc.ofMsg(m) != one {
			t.Fatalf("message %d does not send the one encoding", i)
		}
		enc.unshare(m)
		if left := enc.ofRaw(raw); (left != nil) != (i < len(alike)-1) {
			t.Fatalf("after unsharing %d of %d alike, their encoding is kept: %v", i+1, len(alike), left != nil)
		}
	}
	if enc.ofMsg(other) == nil {
		t.Fatal("unsharing the alike unshared another message")
	}
	enc.unshare(other)
	if len(enc.byMsg) != 0 || len(enc.byHash) != 0 {
		t.Fatalf("left %d messages and %d hashes", len(enc.byMsg), len(enc.byHash))
	}
}
