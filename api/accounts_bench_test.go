package api_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/tideline/tideline/adapters/argon2id"
	"github.com/tideline/tideline/cmd/tideline/server/servertest"
	accountsv1 "github.com/tideline/tideline/schemas/gen/tideline/accounts/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/accounts/v1/accountsv1connect"
)

// fromAddress returns an accounts client whose connections come from
// 127.0.0.<n>: the per-address login limit (20 a minute) would otherwise
// bound a benchmark from one address.
func fromAddress(url string, n int) accountsv1connect.AccountServiceClient {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(n))}}
	return accountsv1connect.NewAccountServiceClient(&http.Client{Transport: &http.Transport{DialContext: d.DialContext}}, url)
}

// BenchmarkLogin measures Login over the API, Argon2id included: its
// latency one at a time (p50, p99) and the logins a second with four at
// a time, each paired with the bare Argon2id verification in the same
// run (verify-ms, verify/s), so the ratio says what the API adds.
//
//	go test ./api/ -run '^$' -bench Login -benchtime 60x
func BenchmarkLogin(b *testing.B) {
	f := servertest.Start(b, servertest.ProductionPasswords())
	const users = 8
	var clients []accountsv1connect.AccountServiceClient
	for i := range 200 {
		clients = append(clients, fromAddress(f.URL, 2+i))
	}
	for i := range users {
		if _, err := clients[i].SignUp(context.Background(), connect.NewRequest(&accountsv1.SignUpRequest{
			Email: fmt.Sprintf("u%d@example.com", i), Password: goodPassword, Role: "walker", DisplayName: fmt.Sprint("user ", i)})); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	login := func() (time.Duration, error) {
		i := int(next.Add(1))
		start := time.Now()
		_, err := clients[i%len(clients)].Login(context.Background(), connect.NewRequest(&accountsv1.LoginRequest{Email: fmt.Sprintf("u%d@example.com", i%users), Password: goodPassword}))
		return time.Since(start), err
	}
	var h argon2id.Hasher
	hash, err := h.Hash(goodPassword)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	// One at a time: latency.
	var lat, ver []time.Duration
	for range b.N {
		d, err := login()
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, d)
		start := time.Now()
		h.Verify(hash, goodPassword)
		ver = append(ver, time.Since(start))
	}
	slices.Sort(lat)
	slices.Sort(ver)
	p := func(ds []time.Duration, q float64) float64 {
		return float64(ds[int(q*float64(len(ds)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(p(lat, .5), "p50-ms")
	b.ReportMetric(p(lat, .99), "p99-ms")
	b.ReportMetric(p(ver, .5), "verify-p50-ms")
	// Four at a time: throughput, then the bare verifications the same way.
	rate := func(f func() error) float64 {
		var wg sync.WaitGroup
		var failed atomic.Value
		start := time.Now()
		var left atomic.Int64
		left.Store(int64(b.N))
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for left.Add(-1) >= 0 {
					if err := f(); err != nil {
						failed.Store(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		if err, _ := failed.Load().(error); err != nil {
			b.Fatal(err)
		}
		return float64(b.N) / time.Since(start).Seconds()
	}
	b.ReportMetric(rate(func() error { _, err := login(); return err }), "logins/s")
	b.ReportMetric(rate(func() error { h.Verify(hash, goodPassword); return nil }), "verify/s")
}
