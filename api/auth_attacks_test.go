package api_test

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/golang-jwt/jwt/v5"
	"google.golang.org/protobuf/proto"

	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/cmd/tideline/server/servertest"
	"github.com/tideline/tideline/domain/auth"
	steppb "github.com/tideline/tideline/schemas/gen/step"
	"github.com/tideline/tideline/schemas/gen/step/stepconnect"
	"github.com/tideline/tideline/schemas/gen/tideline/admin/v1/adminv1connect"
	"github.com/tideline/tideline/schemas/gen/tideline/dashboard/v1/dashboardv1connect"
	deliveryv1 "github.com/tideline/tideline/schemas/gen/tideline/delivery/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/delivery/v1/deliveryv1connect"
	safetyv1 "github.com/tideline/tideline/schemas/gen/tideline/safety/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/safety/v1/safetyv1connect"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/steps/v1/stepsv1connect"
)

// forged are tokens an attacker can make, each claiming admin.
func forged(tb testing.TB, f *servertest.Server) map[string]string {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(f.Config.DataDir, api.KeyFile))
	if err != nil {
		tb.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		tb.Fatal(err)
	}
	priv := k.(ed25519.PrivateKey)
	pub := priv.Public().(ed25519.PublicKey)
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		tb.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	now := time.Now()
	admin := jwt.MapClaims{"role": "admin", "sub": "root", "iss": "tideline", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	with := func(edit func(jwt.MapClaims)) jwt.MapClaims {
		c := jwt.MapClaims{}
		for k, v := range admin {
			c[k] = v
		}
		edit(c)
		return c
	}
	sign := func(m jwt.SigningMethod, c jwt.Claims, key any) string {
		s, err := jwt.NewWithClaims(m, c).SignedString(key)
		if err != nil {
			tb.Fatal(err)
		}
		return s
	}
	other, err := api.LoadOrCreateTokens(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	otherAdmin, err := other.Issue(auth.Principal{Subject: "root", Role: auth.Admin}, time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	// Issue refuses a ttl that is not positive: sign it by hand.
	expired := sign(jwt.SigningMethodEdDSA, with(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() }), priv)
	walker, err := f.Tokens.Issue(auth.Principal{Subject: "cat-walker", Role: auth.Walker}, time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	revoked, err := f.Tokens.Issue(auth.Principal{Subject: "root", Role: auth.Admin}, time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := f.Tokens.Revoke(revoked); err != nil {
		tb.Fatal(err)
	}
	// The walker's token with its claims rewritten to admin, signature kept.
	parts := strings.Split(walker, ".")
	claims, _ := json.Marshal(admin)
	escalated := parts[0] + "." + base64.RawURLEncoding.EncodeToString(claims) + "." + parts[2]
	// A valid signature with one bit flipped.
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	sig[0] ^= 1
	flipped := parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig)
	return map[string]string{
		"no_token":               "",
		"garbage":                "not-a-token",
		"three_dots":             "x.y.z",
		"oversized":              strings.Repeat("a", 5000),
		"expired":                expired,
		"revoked":                revoked,
		"other_data_dir_key":     otherAdmin,
		"alg_none":               sign(jwt.SigningMethodNone, admin, jwt.UnsafeAllowNoneSignatureType),
		"hs256_public_key_raw":   sign(jwt.SigningMethodHS256, admin, []byte(pub)),
		"hs256_public_key_pem":   sign(jwt.SigningMethodHS256, admin, pubPEM),
		"claims_rewritten":       escalated,
		"signature_bit_flipped":  flipped,
		"wrong_issuer":           sign(jwt.SigningMethodEdDSA, with(func(c jwt.MapClaims) { c["iss"] = "evil" }), priv),
		"no_expiry":              sign(jwt.SigningMethodEdDSA, with(func(c jwt.MapClaims) { delete(c, "exp") }), priv),
		"unknown_role":           sign(jwt.SigningMethodEdDSA, with(func(c jwt.MapClaims) { c["role"] = "root" }), priv),
		"no_subject":             sign(jwt.SigningMethodEdDSA, with(func(c jwt.MapClaims) { delete(c, "sub") }), priv),
		"not_yet_valid":          sign(jwt.SigningMethodEdDSA, with(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Hour).Unix() }), priv),
		"basic_scheme":           "basic:" + base64.StdEncoding.EncodeToString([]byte("root:root")),
		"bearer_of_bearer_token": "Bearer " + walker,
	}
}

// escalation is a caller trying what its role or subject may not.
type escalation struct {
	name string
	path string
	role auth.Role
	sub  string
	msg  proto.Message // nil: the catalogue's valid request
}

// escalations lists, for every RPC that restricts its callers, each role
// it refuses, and the requests on someone else's behalf.
func escalations() []escalation {
	var out []escalation
	others := func(allowed ...auth.Role) []auth.Role {
		var rs []auth.Role
		for _, r := range auth.Roles {
			ok := false
			for _, a := range allowed {
				ok = ok || r == a
			}
			if !ok {
				rs = append(rs, r)
			}
		}
		return rs
	}
	deny := func(path string, roles []auth.Role) {
		for _, r := range roles {
			out = append(out, escalation{name: string(r), path: path, role: r, sub: "cat-" + string(r)})
		}
	}
	deny(adminv1connect.AdminServiceListProjectionsProcedure, others(auth.Admin))
	deny(adminv1connect.AdminServiceRebuildProjectionProcedure, others(auth.Admin))
	deny(adminv1connect.AdminServiceListRejectedDeviceCommitsProcedure, others(auth.Admin))
	deny(safetyv1connect.SafetyServiceListDangerEventsProcedure, others(auth.Admin))
	deny(safetyv1connect.SafetyServiceListAlertsProcedure, others(auth.Admin))
	deny(safetyv1connect.SafetyServiceAcknowledgeAlertProcedure, others(auth.Admin))
	deny(safetyv1connect.SafetyServiceReportDangerProcedure, others(auth.Admin, auth.Service, auth.Device, auth.Rider))
	deny(dashboardv1connect.DashboardServiceGetDashboardProcedure, others(auth.Admin, auth.Enterprise))
	deny(dashboardv1connect.DashboardServiceWatchDashboardProcedure, others(auth.Admin, auth.Enterprise))
	for _, p := range []string{deliveryv1connect.DeliveryServicePlaceOrderProcedure, deliveryv1connect.DeliveryServiceCancelOrderProcedure, deliveryv1connect.DeliveryServiceRateOrderProcedure} {
		deny(p, others(auth.Admin, auth.Service))
	}
	for _, p := range []string{deliveryv1connect.DeliveryServiceAcceptOrderProcedure, deliveryv1connect.DeliveryServicePickUpOrderProcedure, deliveryv1connect.DeliveryServiceDeliverOrderProcedure} {
		deny(p, others(auth.Admin, auth.Service, auth.Rider))
	}
	deny(deliveryv1connect.DeliveryServiceGetOrderProcedure, others(auth.Admin, auth.Service, auth.Rider))
	deny(deliveryv1connect.DeliveryServiceSearchNearbyOrdersProcedure, others(auth.Admin, auth.Service, auth.Rider))
	for _, p := range []string{stepsv1connect.StepsServiceRecordStepsProcedure, stepconnect.StepServiceRecordStepsProcedure, stepconnect.StepServiceStreamUserStepsProcedure} {
		deny(p, others(auth.Admin, auth.Service, auth.Walker))
	}
	// On someone else's behalf: the catalogue's requests name cat-user,
	// cat-rider; these callers are someone else.
	day := today()
	out = append(out,
		escalation{"walker_records_another", stepsv1connect.StepsServiceRecordStepsProcedure, auth.Walker, "mallory", nil},
		escalation{"walker_records_another", stepconnect.StepServiceRecordStepsProcedure, auth.Walker, "mallory", nil},
		escalation{"walker_streams_another", stepconnect.StepServiceStreamUserStepsProcedure, auth.Walker, "mallory", &steppb.StepInput{UserId: "cat-user", Date: day, Steps: 1}},
		escalation{"rider_accepts_as_another", deliveryv1connect.DeliveryServiceAcceptOrderProcedure, auth.Rider, "mallory", nil},
		escalation{"rider_picks_up_as_another", deliveryv1connect.DeliveryServicePickUpOrderProcedure, auth.Rider, "mallory", nil},
		escalation{"rider_delivers_as_another", deliveryv1connect.DeliveryServiceDeliverOrderProcedure, auth.Rider, "mallory", nil},
		escalation{"rider_reports_another", safetyv1connect.SafetyServiceReportDangerProcedure, auth.Rider, "mallory", nil},
		escalation{"rider_places_order", deliveryv1connect.DeliveryServicePlaceOrderProcedure, auth.Rider, "cat-rider", &deliveryv1.PlaceOrderRequest{OrderId: "cat-order", StoreId: "s", Pickup: &deliveryv1.LatLng{Lat: 37.5, Lng: 127}, Dropoff: &deliveryv1.LatLng{Lat: 37.5, Lng: 127}, Amount: 1}},
		escalation{"rider_rates_own_order", deliveryv1connect.DeliveryServiceRateOrderProcedure, auth.Rider, "cat-rider", &deliveryv1.RateOrderRequest{OrderId: "cat-order", Stars: 5}},
		escalation{"device_acknowledges_alert", safetyv1connect.SafetyServiceAcknowledgeAlertProcedure, auth.Device, "bike-1", &safetyv1.AcknowledgeAlertRequest{AlertId: "alert-x"}},
		escalation{"rider_records_steps", stepsv1connect.StepsServiceRecordStepsProcedure, auth.Rider, "cat-user", &stepsv1.RecordStepsRequest{UserId: "cat-user", Date: day, Steps: 1}},
	)
	return out
}

// TestAuthAttacks: forged, expired, foreign and malformed tokens on every
// RPC are Unauthenticated, and every role escalation is PermissionDenied;
// none appends an event.
func TestAuthAttacks(t *testing.T) {
	t.Parallel()
	f := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	protos := []*clients{newClients(f.URL), newClients(f.URL, connect.WithGRPC()), newClients(f.URL, connect.WithGRPCWeb())}
	specs := map[string]rpcSpec{}
	for _, s := range catalogue() {
		specs[s.path] = s
	}
	before := f.Last(t)
	tried, refused := 0, 0
	check := func(t *testing.T, err error, want connect.Code) {
		tried++
		if connect.CodeOf(err) != want {
			t.Fatalf("got %v, want %v", err, want)
		}
		if after := f.Last(t); after != before {
			t.Fatalf("appended %d commits", after-before)
		}
		refused++
	}
	n := 0
	for name, tok := range forged(t, f) {
		for _, s := range catalogue() {
			c := protos[n%len(protos)]
			n++
			t.Run("token_"+name+s.path, func(t *testing.T) {
				var hdr map[string]string
				if rest, ok := strings.CutPrefix(tok, "basic:"); ok {
					tok, hdr = "", map[string]string{"Authorization": "Basic " + rest}
				}
				if rest, ok := strings.CutPrefix(tok, "Bearer "); ok {
					tok, hdr = "", map[string]string{"Authorization": "Bearer Bearer " + rest}
				}
				check(t, s.call(ctx, c, tok, hdr, s.valid()), connect.CodeUnauthenticated)
			})
		}
	}
	for _, e := range escalations() {
		s := specs[e.path]
		c := protos[n%len(protos)]
		n++
		t.Run("escalation_"+e.name+e.path, func(t *testing.T) {
			m := e.msg
			if m == nil {
				m = s.valid()
			}
			check(t, s.call(ctx, c, f.Token(t, e.sub, e.role), nil, m), connect.CodePermissionDenied)
		})
	}
	t.Logf("auth attacks: %d tried, %d refused, %d events appended", tried, refused, f.Last(t)-before)
}
