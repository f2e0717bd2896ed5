package mediatest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/tideline/tideline/domain/media"
)

// NotifyChannel is a notification channel run by a test (an SMTP server, a
// webhook), with the Notifier under test pointed at it.
type NotifyChannel struct {
	Notifier media.Notifier
	// To reaches the channel; its other fields are empty.
	To media.Recipient
	// Delivered returns what reached a person so far, one string per
	// message accepted: what they read, subject and body, decoded.
	Delivered func() []string
	// Refuse makes the channel refuse what comes next: for good
	// (permanent) or for now.
	Refuse func(permanent bool)
	// Down makes the channel unreachable.
	Down func()
}

// Notifier runs the contract of media.Notifier, each case on a new
// NotifyChannel that newChannel returns.
func Notifier(t *testing.T, newChannel func(t *testing.T) NotifyChannel) {
	msg := func(c NotifyChannel) media.Message {
		return media.Message{
			To:      c.To,
			Subject: "Your story is ready",
			Text:    "The pages of \"Moon\" are read aloud. 달님 안녕",
			Links: []media.Link{
				{Title: "Listen", URL: "https://tideline.example/blobs/story/moon.ogg?exp=1&sig=a"},
				{Title: "Pages", URL: "https://tideline.example/blobs/story/moon.pdf?exp=1&sig=b"},
			},
		}
	}

	t.Run("delivers_subject_text_and_links", func(t *testing.T) {
		c := newChannel(t)
		m := msg(c)
		if err := c.Notifier.Notify(t.Context(), m); err != nil {
			t.Fatalf("Notify: %v", err)
		}
		got := c.Delivered()
		if len(got) != 1 {
			t.Fatalf("delivered %d messages; want 1", len(got))
		}
		for _, want := range []string{m.Subject, m.Text, "Listen", m.Links[0].URL, "Pages", m.Links[1].URL} {
			if !strings.Contains(got[0], want) {
				t.Errorf("delivered %q; want it to contain %q", got[0], want)
			}
		}
	})

	t.Run("no_address_is_unusable", func(t *testing.T) {
		c := newChannel(t)
		m := msg(c)
		m.To = media.Recipient{}
		if err := c.Notifier.Notify(t.Context(), m); !errors.Is(err, media.ErrUnusable) {
			t.Errorf("Notify without an address: %v; want ErrUnusable", err)
		}
		checkDelivered(t, c, 0)
	})

	for _, c := range []struct {
		name          string
		permanent     bool
		want, wantNot error
	}{
		{"permanent_refusal_is_unusable", true, media.ErrUnusable, media.ErrUnavailable},
		{"refusal_for_now_is_unavailable", false, media.ErrUnavailable, media.ErrUnusable},
	} {
		t.Run(c.name, func(t *testing.T) {
			ch := newChannel(t)
			ch.Refuse(c.permanent)
			if err := ch.Notifier.Notify(t.Context(), msg(ch)); !errors.Is(err, c.want) || errors.Is(err, c.wantNot) {
				t.Errorf("Notify refused (permanent: %t): %v; want %v only", c.permanent, err, c.want)
			}
			checkDelivered(t, ch, 0)
		})
	}

	t.Run("channel_down_is_unavailable", func(t *testing.T) {
		c := newChannel(t)
		c.Down()
		if err := c.Notifier.Notify(t.Context(), msg(c)); !errors.Is(err, media.ErrUnavailable) {
			t.Errorf("Notify with the channel down: %v; want ErrUnavailable", err)
		}
	})

	t.Run("canceled_context_delivers_nothing", func(t *testing.T) {
		c := newChannel(t)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if err := c.Notifier.Notify(ctx, msg(c)); err == nil {
			t.Error("Notify with a canceled context: no error")
		}
		checkDelivered(t, c, 0)
	})

	t.Run("concurrent_notifications", func(t *testing.T) {
		c := newChannel(t)
		const n = 5
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() {
				m := msg(c)
				m.Subject = fmt.Sprintf("message %d", i)
				errs[i] = c.Notifier.Notify(t.Context(), m)
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		got := strings.Join(checkDelivered(t, c, n), "\n")
		for i := range n {
			if !strings.Contains(got, fmt.Sprintf("message %d", i)) {
				t.Errorf("message %d was not delivered", i)
			}
		}
	})
}

func checkDelivered(t *testing.T, c NotifyChannel, n int) []string {
	t.Helper()
	got := c.Delivered()
	if len(got) != n {
		t.Fatalf("delivered %d messages; want %d: %q", len(got), n, got)
	}
	return got
}
