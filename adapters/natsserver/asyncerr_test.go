package natsserver_test

import (
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/tideline/tideline/adapters/natsserver"
	"github.com/tideline/tideline/adapters/natsserver/natstest"
	"github.com/tideline/tideline/internal/logtest"
	"github.com/tideline/tideline/internal/poll"
)

// A subscription that cannot keep up has messages dropped: with
// LogAsyncErrors the client says so in the log, naming the connection
// and the subject, not on stderr.
func TestLogAsyncErrors(t *testing.T) {
	ns, _ := natstest.Start(t)
	var out logtest.Buffer
	nc, err := natsserver.Connect(ns, "slow-reader", natsserver.LogAsyncErrors(slog.New(slog.NewTextHandler(&out, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	msgs := make(chan *nats.Msg, 1) // never read: the second message is dropped
	if _, err := nc.ChanSubscribe("slow.subject", msgs); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := nc.Publish("slow.subject", []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, "the dropped messages in the log", func() bool {
		return out.Count("slow consumer") > 0
	})
	for _, want := range []string{"level=WARN", `msg="nats client error"`, "connection=slow-reader", "subject=slow.subject"} {
		if out.Count(want) == 0 {
			t.Errorf("the log lacks %s", want)
		}
	}
}
