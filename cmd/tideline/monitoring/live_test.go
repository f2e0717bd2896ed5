package monitoring_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect"
	"gopkg.in/yaml.v3"

	"github.com/tideline/tideline/adapters/smtp/smtptest"
	"github.com/tideline/tideline/cmd/tideline/server/servertest"
	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/media/mediatest"
	"github.com/tideline/tideline/internal/freeport"
	"github.com/tideline/tideline/internal/poll"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/steps/v1/stepsv1connect"
)

// liveLag is the lag threshold of the live test's copy of the rules.
const liveLag = 2

// TestAlertDelivered is the whole chain, live: Debian's Prometheus scrapes
// a running Tideline on its API port with a metrics token; the steps
// projection stops at a commit it cannot decode and falls behind; the
// shipped lag rule (its threshold and for: shortened, as Prometheus could
// not wait a minute here; alerts_test.yml proves the shipped values) fires;
// Alertmanager e-mails it to an SMTP server and posts it to a webhook,
// both run by the test. On the way, every expression of the rules and the
// dashboard must be valid PromQL to the real Prometheus.
func TestAlertDelivered(t *testing.T) {
	mediatest.Need(t, "prometheus", "prometheus")
	mediatest.Need(t, "prometheus-alertmanager", "prometheus-alertmanager")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()

	f := servertest.Start(t)
	write(t, filepath.Join(dir, "token"), f.Token(t, "prometheus", auth.Metrics))

	mail := smtptest.Start(t, nil)
	hook := startWebhook(t)

	// The shipped rules, the lag rule made quick.
	rf := loadRules(t)
	found := false
	for i, r := range rf.Groups[0].Rules {
		if r.For != "" {
			rf.Groups[0].Rules[i].For = "1s"
		}
		if r.Alert == "TidelineProjectionLagging" {
			found = true
			if !strings.Contains(r.Expr, "tideline_projection_lag_events > 1000") {
				t.Fatalf("lag rule is %q: update the rewrite here", r.Expr)
			}
			rf.Groups[0].Rules[i].Expr = strings.Replace(r.Expr, "> 1000", fmt.Sprintf("> %d", liveLag), 1)
		}
	}
	if !found {
		t.Fatal("alerts.yml has no TidelineProjectionLagging")
	}
	rules, err := yaml.Marshal(rf)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "rules.yml"), string(rules))

	amAddr, promAddr := freeAddr(t), freeAddr(t)
	write(t, filepath.Join(dir, "alertmanager.yml"), fmt.Sprintf(`
global:
  smtp_smarthost: %q
  smtp_from: "alerts@tideline.test"
  smtp_require_tls: false
  smtp_hello: tideline.test
route:
  receiver: operators
  group_by: [alertname, instance]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: operators
    email_configs:
      - to: "ops@tideline.test"
    webhook_configs:
      - url: %q
`, net.JoinHostPort(mail.Host, fmt.Sprint(mail.Port)), hook.URL))
	write(t, filepath.Join(dir, "prometheus.yml"), fmt.Sprintf(`
global:
  scrape_interval: 500ms
  evaluation_interval: 500ms
rule_files: [%q]
alerting:
  alertmanagers:
    - static_configs:
        - targets: [%q]
scrape_configs:
  - job_name: tideline
    authorization:
      type: Bearer
      credentials_file: %q
    static_configs:
      - targets: [%q]
`, filepath.Join(dir, "rules.yml"), amAddr, filepath.Join(dir, "token"), strings.TrimPrefix(f.URL, "http://")))

	daemon(t, "prometheus-alertmanager", "--config.file="+filepath.Join(dir, "alertmanager.yml"),
		"--storage.path="+filepath.Join(dir, "am"), "--web.listen-address="+amAddr,
		"--cluster.listen-address=", "--log.level=warn")
	daemon(t, "prometheus", "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "prom"), "--web.listen-address="+promAddr, "--log.level=warn")
	prom := "http://" + promAddr

	poll.Until(t, 20*time.Second, "Prometheus to scrape Tideline with the token", func() bool {
		v, ok := query(t, prom, `up{job="tideline"}`)
		return ok && v == 1
	})
	for _, e := range exprs(t) {
		if err := validQuery(prom, e); err != nil {
			t.Errorf("%q: %v", e, err)
		}
	}

	// Stop the steps projection's progress for real: a commit it cannot
	// decode halts it, and the steps recorded after it pile up.
	if _, err := f.Store.JetStream().Publish(ctx, "ev.steps.user.nobody", []byte("\xff\xff not a commit")); err != nil {
		t.Fatal(err)
	}
	steps := stepsv1connect.NewStepsServiceClient(http.DefaultClient, f.URL)
	tok := f.Token(t, "walker-1", auth.Walker)
	for i := range liveLag + 1 {
		req := connect.NewRequest(&stepsv1.RecordStepsRequest{UserId: "walker-1", Date: time.Now().UTC().Format("2006-01-02"), Steps: int32(100 + i)})
		req.Header().Set("Authorization", "Bearer "+tok)
		if _, err := steps.RecordSteps(ctx, req); err != nil {
			t.Fatal(err)
		}
	}

	var got webhookAlert
	poll.Until(t, 25*time.Second, "the webhook to receive TidelineProjectionLagging for steps", func() bool {
		for _, a := range hook.alerts() {
			if a.Labels["alertname"] == "TidelineProjectionLagging" && a.Labels["projection"] == "steps" && a.Status == "firing" {
				got = a
				return true
			}
		}
		return false
	})
	if !strings.HasPrefix(got.Annotations["summary"], "Projection steps on ") {
		t.Errorf("webhook alert summary %q", got.Annotations["summary"])
	}
	poll.Until(t, 10*time.Second, "the e-mail of TidelineProjectionLagging", func() bool {
		for _, m := range mail.Received() {
			if slicesContain(m.To, "ops@tideline.test") && strings.Contains(string(m.Data), "TidelineProjectionLagging") {
				return true
			}
		}
		return false
	})
}

func slicesContain(ss []string, s string) bool {
	for _, x := range ss {
		if strings.Trim(x, "<>") == s {
			return true
		}
	}
	return false
}

// freeAddr returns a loopback address with a port free just now.
func freeAddr(t *testing.T) string {
	t.Helper()
	return freeport.Addr(t)
}

// daemon starts a program for the test's life; its output goes to the
// test's log when the test fails.
func daemon(t *testing.T, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	var out strings.Builder
	var mu sync.Mutex
	w := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return out.Write(p) })
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			mu.Lock()
			t.Logf("%s output:\n%s", name, out.String())
			mu.Unlock()
		}
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// query evaluates an instant query and returns its single value.
func query(t *testing.T, prom, q string) (float64, bool) {
	t.Helper()
	res, err := http.Get(prom + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return 0, false // not up yet
	}
	defer res.Body.Close()
	var body struct {
		Status string
		Data   struct {
			Result []struct {
				Value [2]any
			}
		}
	}
	if err := json.NewDecoder(res.Body).Decode(&body); err != nil || body.Status != "success" || len(body.Data.Result) != 1 {
		return 0, false
	}
	s, _ := body.Data.Result[0].Value[1].(string)
	var v float64
	if _, err := fmt.Sscan(s, &v); err != nil {
		return 0, false
	}
	return v, true
}

// validQuery asks Prometheus to evaluate q: an error if it cannot parse or
// run it. Grafana's variables are given their "all" values.
func validQuery(prom, q string) error {
	q = strings.ReplaceAll(q, "$instance", ".*")
	res, err := http.Get(prom + "/api/v1/query?query=" + url.QueryEscape(q))
	if err != nil {
		return err
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %s", res.StatusCode, b)
	}
	return nil
}

type webhookAlert struct {
	Status      string            `json:"status"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

type webhook struct {
	URL string
	mu  sync.Mutex
	got []webhookAlert
}

func (h *webhook) alerts() []webhookAlert {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]webhookAlert(nil), h.got...)
}

// startWebhook receives Alertmanager's webhook posts.
func startWebhook(t *testing.T) *webhook {
	t.Helper()
	h := &webhook{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Alerts []webhookAlert `json:"alerts"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		h.got = append(h.got, body.Alerts...)
		h.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	h.URL = srv.URL
	return h
}
