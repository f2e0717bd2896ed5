package natsserver_test

import (
	"testing"
	"time"

	"github.com/nats-io/nkeys"
	"github.com/tideline/tideline/internal/poll"
)

// A device the hub refuses retries every 100 ms; the hub logs it once.
func TestRefusedDeviceLoggedOnce(t *testing.T) {
	h := startHub(t)
	kp, _ := nkeys.CreateUser()
	seed, _ := kp.Seed()
	startLeaf(t, h, "x", seed)
	poll.Until(t, 10*time.Second, "5 refusals", func() bool { return h.devices.Refused() >= 5 })
	if n := h.logs.Count("edge device refused"); n != 1 {
		t.Fatalf("%d refusals logged %d times, want once", h.devices.Refused(), n)
	}
	if n := h.logs.Count("refusals=1"); n != 1 {
		t.Fatalf("the refusal line does not count it: %d", n)
	}
}
