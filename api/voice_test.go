package api_test

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"connectrpc.com/connect"

	"github.com/tideline/tideline/cmd/tideline/server/servertest"
	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/media/mediatest"
	deliveryv1 "github.com/tideline/tideline/schemas/gen/tideline/delivery/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/delivery/v1/deliveryv1connect"
)

// say returns text spoken by espeak-ng's voice at wpm words a minute, as
// the WAV a rider's phone would send.
func say(tb testing.TB, voice string, wpm int, text string) []byte {
	tb.Helper()
	mediatest.Need(tb, "espeak-ng", "espeak-ng")
	out, err := exec.Command("espeak-ng", "--stdout", "-v", voice, "-s", fmt.Sprint(wpm), text).Output()
	if err != nil {
		tb.Fatalf("espeak-ng %q: %v", text, err)
	}
	return out
}

func needVoice(tb testing.TB) {
	tb.Helper()
	mediatest.Need(tb, "pocketsphinx_continuous", "pocketsphinx")
	mediatest.NeedFile(tb, "/usr/share/pocketsphinx/model/en-us/en-us", "pocketsphinx-en-us")
}

func placeOrder(tb testing.TB, f *servertest.Server, c deliveryv1connect.DeliveryServiceClient, id string) {
	tb.Helper()
	shop := f.Token(tb, "shop", auth.Service)
	if _, err := c.PlaceOrder(context.Background(), withToken(&deliveryv1.PlaceOrderRequest{OrderId: id, StoreId: "s1",
		Pickup: &deliveryv1.LatLng{Lat: 37.5663, Lng: 126.9779}, Dropoff: &deliveryv1.LatLng{Lat: 37.4979, Lng: 127.0276}, Amount: 15000}, shop)); err != nil {
		tb.Fatal(err)
	}
}

// A rider runs an order's lifecycle by voice, in Korean and English;
// speech that is no command runs nothing.
func TestVoiceCommands(t *testing.T) {
	needVoice(t)
	t.Parallel()
	f := start(t)
	c := deliveryv1connect.NewDeliveryServiceClient(h2c, f.URL)
	kim := f.Token(t, "kim", auth.Rider)
	placeOrder(t, f, c, "o-voice")
	ctx := context.Background()
	for _, step := range []struct {
		voice, lang, text, intent string
		status                    deliveryv1.OrderStatus
	}{
		{"en-us", "en", "accept order", "accept", deliveryv1.OrderStatus_ORDER_STATUS_ACCEPTED},
		{"ko", "ko", "픽업 완료", "pick_up", deliveryv1.OrderStatus_ORDER_STATUS_PICKED_UP},
		{"ko", "", "배달 완료", "deliver", deliveryv1.OrderStatus_ORDER_STATUS_DELIVERED},
	} {
		res, err := c.VoiceCommand(ctx, withToken(&deliveryv1.VoiceCommandRequest{OrderId: "o-voice", Lang: step.lang, Audio: say(t, step.voice, 150, step.text)}, kim))
		if err != nil {
			t.Fatalf("%q: %v", step.text, err)
		}
		if res.Msg.Intent != step.intent || res.Msg.Order.Status != step.status || res.Msg.Order.RiderId != "kim" {
			t.Fatalf("%q: heard %q as %q, order %v", step.text, res.Msg.Heard, res.Msg.Intent, res.Msg.Order)
		}
	}
	placeOrder(t, f, c, "o-noise")
	last := f.Last(t)
	for _, tc := range []struct {
		name string
		req  *deliveryv1.VoiceCommandRequest
		code connect.Code
		want string
	}{
		{"off_grammar", &deliveryv1.VoiceCommandRequest{OrderId: "o-noise", Lang: "en", Audio: say(t, "en-us", 150, "the weather is nice today")}, connect.CodeInvalidArgument, "not understood"},
		{"not_a_wav", &deliveryv1.VoiceCommandRequest{OrderId: "o-noise", Audio: []byte("hello")}, connect.CodeInvalidArgument, "audio"},
		{"no_audio", &deliveryv1.VoiceCommandRequest{OrderId: "o-noise"}, connect.CodeInvalidArgument, "audio"},
		{"unknown_language", &deliveryv1.VoiceCommandRequest{OrderId: "o-noise", Lang: "fr", Audio: say(t, "en-us", 150, "accept")}, connect.CodeInvalidArgument, "lang"},
		{"for_another_rider", &deliveryv1.VoiceCommandRequest{OrderId: "o-noise", RiderId: "lee", Audio: say(t, "en-us", 150, "accept")}, connect.CodePermissionDenied, ""},
		{"bad_order_id", &deliveryv1.VoiceCommandRequest{OrderId: "o.1", Audio: say(t, "en-us", 150, "accept")}, connect.CodeInvalidArgument, "order_id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.VoiceCommand(ctx, withToken(tc.req, kim))
			if connect.CodeOf(err) != tc.code || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %v naming %q", err, tc.code, tc.want)
			}
		})
	}
	if f.Last(t) != last {
		t.Error("refused voice commands appended")
	}
}
