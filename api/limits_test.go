package api_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"testing"

	"connectrpc.com/connect"

	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/schemas/gen/step/stepconnect"
	"github.com/tideline/tideline/schemas/gen/tideline/steps/v1/stepsv1connect"
)

// TestBodiesBoundedBeforeAndAfterAuth sends gzip bombs and 100 MiB
// bodies to a unary, a server-streaming and a client-streaming RPC over
// every protocol. Without a token each is Unauthenticated before its
// body is read; with one, ResourceExhausted once the message or body
// passes the 1 MiB limit. The process's heap grows by less than 64 MiB
// throughout and nothing is appended.
func TestBodiesBoundedBeforeAndAfterAuth(t *testing.T) {
	f := start(t)
	tok := f.Token(t, "alice", auth.Walker)
	bomb := gzipBomb(t, 1)           // ~1 MiB inflating to 1 GiB
	smallBomb := bomb[:len(bomb)/16] // ~64 KiB inflating to 64 MiB: passes the raw cap, not the inflated one
	const huge = 100 << 20
	before, err := f.Store.LastPosition(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	http1 := &http.Client{}
	peak := heapPeak(t)
	type body struct {
		name   string
		gzip   bool
		bytes  []byte // or huge zeros when nil
		length int64
	}
	bodies := []body{
		{"gzip_bomb_1GiB", true, bomb, int64(len(bomb))},
		{"gzip_bomb_64MiB", true, smallBomb, int64(len(smallBomb))},
		{"plain_100MiB", false, nil, huge},
	}
	procs := []struct {
		path  string
		wires []wire
	}{
		{stepsv1connect.StepsServiceRecordStepsProcedure, []wire{connectUnary, grpcWire, grpcWebWire}},
		{stepsv1connect.StepsServiceWatchLeaderboardProcedure, []wire{connectStream, grpcWire, grpcWebWire}},
		{stepconnect.StepServiceStreamUserStepsProcedure, []wire{connectStream, grpcWire}},
	}
	n := 0
	for _, p := range procs {
		for _, w := range p.wires {
			for _, b := range bodies {
				for _, withToken := range []bool{false, true} {
					name := fmt.Sprintf("%s/%s/%s/token=%v", p.path, w, b.name, withToken)
					t.Run(name, func(t *testing.T) {
						r := rawRequest{wire: w, path: p.path, gzip: b.gzip, length: b.length, body: zeros(b.length)}
						if b.bytes != nil {
							r.body = bytes.NewReader(b.bytes)
						}
						want := connect.CodeUnauthenticated
						if withToken {
							r.token, want = tok, connect.CodeResourceExhausted
						}
						got := r.do(t, h2c, f.URL)
						if got.code != want {
							t.Fatalf("code %v (HTTP %d, %q), want %v", got.code, got.status, got.message, want)
						}
					})
					n++
				}
			}
		}
	}
	t.Run("http1_connect_unary_100MiB_no_token", func(t *testing.T) {
		r := rawRequest{wire: connectUnary, path: stepsv1connect.StepsServiceRecordStepsProcedure, body: zeros(huge)}
		if got := r.do(t, http1, f.URL); got.code != connect.CodeUnauthenticated {
			t.Fatalf("code %v (HTTP %d, %q)", got.code, got.status, got.message)
		}
	})
	t.Run("http1_connect_unary_100MiB_token", func(t *testing.T) {
		r := rawRequest{wire: connectUnary, path: stepsv1connect.StepsServiceRecordStepsProcedure, token: tok, body: zeros(huge)}
		if got := r.do(t, http1, f.URL); got.code != connect.CodeResourceExhausted {
			t.Fatalf("code %v (HTTP %d, %q)", got.code, got.status, got.message)
		}
	})
	grown := peak()
	t.Logf("%d oversized calls; heap grew by at most %.1f MiB", n+2, float64(grown)/(1<<20))
	if grown > 64<<20 {
		t.Errorf("heap grew by %.1f MiB, want < 64 MiB", float64(grown)/(1<<20))
	}
	after, err := f.Store.LastPosition(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Errorf("oversized calls appended %d commits", after-before)
	}
}
