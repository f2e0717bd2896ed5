package main

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// `tideline serve --memory-limit` sets the Go heap's limit: the runtime's
// own gauge on /metrics says so.
func TestServeMemoryLimit(t *testing.T) {
	t.Parallel()
	bin := buildTideline(t)
	s := spawnServe(t, bin, "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--memory-limit", "1GiB", "--log-level", "info")
	s.waitServing(t, 30*time.Second)
	logs := s.logs.String()
	if !strings.Contains(logs, `msg="memory limit" bytes=1073741824 from=--memory-limit`) {
		t.Errorf("no memory limit logged:\n%s", logs)
	}
	m := regexp.MustCompile(`msg="metrics served" url=(\S+)`).FindStringSubmatch(logs)
	if m == nil {
		t.Fatalf("no metrics url logged:\n%s", logs)
	}
	res, err := http.Get(m[1])
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if want := "go_gc_gomemlimit_bytes 1.073741824e+09\n"; !strings.Contains(string(body), want) {
		t.Errorf("metrics have no %q:\n%s", want, regexp.MustCompile(`(?m)^go_gc_gomemlimit.*$`).FindString(string(body)))
	}
	s.stop(t, 30*time.Second)
}
