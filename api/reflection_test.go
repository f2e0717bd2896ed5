package api_test

import (
	"context"
	"net"
	"net/http"
	"testing"

	"connectrpc.com/connect"
	"connectrpc.com/grpcreflect"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/cmd/tideline/server/servertest"
	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/schemas/gen/grpc/health/v1/healthv1connect"
	"github.com/tideline/tideline/schemas/gen/step/stepconnect"
	"github.com/tideline/tideline/schemas/gen/tideline/steps/v1/stepsv1connect"
)

// bearer is an HTTP/2 cleartext client sending a bearer token on every
// request (the reflection client has no other way to carry one).
func bearer(tok string) *http.Client {
	return &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+tok)
		return h2c.Transport.RoundTrip(r)
	})}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func listServices(client *http.Client, url string) ([]protoreflect.FullName, error) {
	s := grpcreflect.NewClient(client, url).NewStream(context.Background())
	defer s.Close()
	return s.ListServices()
}

func TestReflectionModes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name             string
		mode             api.Reflection
		noToken, withTok connect.Code // 0: lists the services
	}{
		{"token", api.ReflectionToken, connect.CodeUnauthenticated, 0},
		{"open", api.ReflectionOpen, 0, 0},
		{"off", api.ReflectionOff, connect.CodeUnauthenticated, connect.CodeUnimplemented},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := start(t, servertest.API(func(d *api.Config) { d.Reflection = tc.mode }))
			tok := f.Token(t, "dev", auth.Walker)
			for _, c := range []struct {
				client *http.Client
				want   connect.Code
			}{{h2c, tc.noToken}, {bearer(tok), tc.withTok}} {
				names, err := listServices(c.client, f.URL)
				if connect.CodeOf(err) != c.want && !(c.want == 0 && err == nil) {
					t.Fatalf("list services: %v, want code %v", err, c.want)
				}
				if c.want != 0 {
					continue
				}
				want := map[protoreflect.FullName]bool{stepconnect.StepServiceName: true, stepsv1connect.StepsServiceName: true, healthv1connect.HealthName: true}
				for _, n := range names {
					delete(want, n)
				}
				if len(want) != 0 {
					t.Fatalf("reflection lists %v; missing %v", names, want)
				}
			}
		})
	}
}

func TestParseReflection(t *testing.T) {
	loop := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}
	loop6 := &net.TCPAddr{IP: net.IPv6loopback, Port: 8080}
	any := &net.TCPAddr{IP: net.IPv4zero, Port: 8080}
	public := &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 8080}
	cases := []struct {
		mode string
		addr net.Addr
		want api.Reflection
	}{
		{"auto", loop, api.ReflectionOpen},
		{"auto", loop6, api.ReflectionOpen},
		{"auto", any, api.ReflectionToken},
		{"auto", public, api.ReflectionToken},
		{"on", public, api.ReflectionOpen},
		{"token", loop, api.ReflectionToken},
		{"off", loop, api.ReflectionOff},
	}
	for _, tc := range cases {
		if got, err := api.ParseReflection(tc.mode, tc.addr); err != nil || got != tc.want {
			t.Errorf("ParseReflection(%q, %v) = %v, %v; want %v", tc.mode, tc.addr, got, err, tc.want)
		}
	}
	if _, err := api.ParseReflection("yes", loop); err == nil {
		t.Error("ParseReflection accepted \"yes\"")
	}
}
