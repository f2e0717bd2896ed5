package main

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// `tideline serve --memory-limit` sets the Go heap's limit, and 'off'
// lifts even the one GOMEMLIMIT set: the runtime's own gauge on /metrics
// says so.
func TestServeMemoryLimit(t *testing.T) {
	t.Parallel()
	bin := buildTideline(t)
	for _, tc := range []struct {
		name, limit, env, logged, gauge string
	}{
		{"flag", "1GiB", "GOMEMLIMIT=512MiB", `msg="memory limit" bytes=1073741824 from=--memory-limit`, "1.073741824e+09"},
		{"GOMEMLIMIT", "auto", "GOMEMLIMIT=512MiB", `msg="memory limit" bytes=536870912 from=GOMEMLIMIT`, "5.36870912e+08"},
		{"off", "off", "GOMEMLIMIT=512MiB", "", "9.223372036854776e+18"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := spawnServeEnv(t, bin, []string{tc.env}, "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
				"--memory-limit", tc.limit, "--log-level", "info")
			s.waitServing(t, 30*time.Second)
			logs := s.logs.String()
			if tc.logged != "" && !strings.Contains(logs, tc.logged) {
				t.Errorf("no %s logged:\n%s", tc.logged, logs)
			}
			if tc.logged == "" && strings.Contains(logs, `msg="memory limit"`) {
				t.Errorf("a memory limit logged, want none:\n%s", logs)
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
			if want := "go_gc_gomemlimit_bytes " + tc.gauge + "\n"; !strings.Contains(string(body), want) {
				t.Errorf("metrics have no %q: %q", want, regexp.MustCompile(`(?m)^go_gc_gomemlimit.*$`).FindString(string(body)))
			}
			s.stop(t, 30*time.Second)
		})
	}
}
