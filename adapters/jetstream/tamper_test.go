package jetstream_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	tljs "github.com/tideline/tideline/adapters/jetstream"
	"github.com/tideline/tideline/adapters/natsserver/natstest"
)

// Someone with full rights changed EVENTS so events could be deleted,
// purged, rolled up, aged out or sourced from elsewhere. Opening the store puts the facts-only
// configuration back before anything else runs, and the old events stay.
func TestOpenRestoresTamperedStream(t *testing.T) {
	_, nc := natstest.Start(t)
	ctx := context.Background()
	raw, _ := jetstream.New(nc)
	if _, err := raw.CreateStream(ctx, jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"other.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.CreateStream(ctx, jetstream.StreamConfig{Name: "EVENTS", Subjects: []string{"ev.>"},
		Storage: jetstream.FileStorage, AllowRollup: true, MaxAge: time.Hour, MaxMsgs: 1000,
		Discard: jetstream.DiscardOld, Sources: []*jetstream.StreamSource{{Name: "OTHER"}}}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := raw.Publish(ctx, "ev.steps.user.alice", []byte("fact")); err != nil {
			t.Fatal(err)
		}
	}

	s, err := tljs.Open(ctx, nc, tljs.Config{})
	if err != nil {
		t.Fatalf("open over a tampered stream: %v", err)
	}
	st, err := s.JetStream().Stream(ctx, "EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	if !cfg.DenyDelete || !cfg.DenyPurge || cfg.AllowRollup || cfg.MaxAge != 0 || cfg.MaxMsgs != -1 ||
		cfg.Discard != jetstream.DiscardNew || len(cfg.Sources) != 0 {
		t.Fatalf("after Open: deny delete %v, deny purge %v, rollup %v, max age %v, max msgs %d, discard %v, sources %d",
			cfg.DenyDelete, cfg.DenyPurge, cfg.AllowRollup, cfg.MaxAge, cfg.MaxMsgs, cfg.Discard, len(cfg.Sources))
	}
	if err := st.DeleteMsg(ctx, 1); err == nil {
		t.Error("DeleteMsg succeeded after Open")
	}
	if err := st.Purge(ctx); err == nil {
		t.Error("Purge succeeded after Open")
	}
	rollup := nats.NewMsg("ev.steps.user.alice")
	rollup.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupAll)
	if _, err := raw.PublishMsg(ctx, rollup); err == nil {
		t.Error("a rollup publish was accepted after Open")
	}
	if info, _ := st.Info(ctx); info.State.Msgs != 3 {
		t.Errorf("EVENTS holds %d events, want the 3 written before", info.State.Msgs)
	}
}

// A change JetStream cannot undo (per-message TTLs, once allowed, stay
// allowed: any publisher could then make events expire) stops Open: the
// server does not run on such a stream.
func TestOpenRefusesStreamWithMessageTTLs(t *testing.T) {
	_, nc := natstest.Start(t)
	ctx := context.Background()
	raw, _ := jetstream.New(nc)
	if _, err := raw.CreateStream(ctx, jetstream.StreamConfig{Name: "EVENTS", Subjects: []string{"ev.>"}, AllowMsgTTL: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := tljs.Open(ctx, nc, tljs.Config{}); err == nil {
		t.Fatal("Open accepted an EVENTS stream whose events can be given a TTL")
	}
}
