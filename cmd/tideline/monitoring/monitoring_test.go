package monitoring_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"gopkg.in/yaml.v3"

	"github.com/tideline/tideline/adapters/natsserver"
	"github.com/tideline/tideline/adapters/prometheus/promtest"
	"github.com/tideline/tideline/api"
	"github.com/tideline/tideline/cmd/tideline/server"
	"github.com/tideline/tideline/cmd/tideline/server/servertest"
	"github.com/tideline/tideline/domain/auth"
	"github.com/tideline/tideline/domain/media/mediatest"
	"github.com/tideline/tideline/internal/poll"
	stepsv1 "github.com/tideline/tideline/schemas/gen/tideline/steps/v1"
	"github.com/tideline/tideline/schemas/gen/tideline/steps/v1/stepsv1connect"
)

// run runs a tool and fails the test with its output unless it succeeds.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestRules checks the shipped files with the real tools: the alert rules
// (promtool check rules) and their unit tests (promtool test rules), the
// Alertmanager configuration (amtool check-config) and the Prometheus
// configuration (promtool check config, its files made to exist).
func TestRules(t *testing.T) {
	mediatest.Need(t, "promtool", "prometheus")
	mediatest.Need(t, "amtool", "prometheus-alertmanager")
	run(t, "promtool", "check", "rules", "alerts.yml")
	if out := run(t, "promtool", "test", "rules", "alerts_test.yml"); !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool test rules: %s", out)
	}
	run(t, "amtool", "check-config", "alertmanager.yml")

	dir := t.TempDir()
	cfg := read(t, "prometheus.yml")
	for from, to := range map[string]string{
		"/etc/prometheus/tideline/alerts.yml": mustAbs(t, "alerts.yml"),
		"/etc/prometheus/tideline.token":      filepath.Join(dir, "token"),
	} {
		if !strings.Contains(cfg, from) {
			t.Fatalf("prometheus.yml no longer names %s", from)
		}
		cfg = strings.ReplaceAll(cfg, from, to)
	}
	write(t, filepath.Join(dir, "token"), "x")
	write(t, filepath.Join(dir, "prometheus.yml"), cfg)
	run(t, "promtool", "check", "config", filepath.Join(dir, "prometheus.yml"))
}

// metricNames are the names of series the rules and the dashboard use.
var metricName = regexp.MustCompile(`\b(tideline_[a-z0-9_]+|go_[a-z0-9_]+|process_[a-z0-9_]+)`)

// exprs returns every PromQL expression of the rules and the dashboard.
func exprs(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, r := range loadRules(t).Groups[0].Rules {
		out = append(out, r.Expr)
	}
	var dash struct {
		Panels []struct {
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal([]byte(read(t, "grafana-dashboard.json")), &dash); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			out = append(out, tg.Expr)
		}
	}
	if len(out) < 20 {
		t.Fatalf("found %d expressions in the rules and the dashboard: the parsing above went wrong", len(out))
	}
	return out
}

// ruleFile is alerts.yml: the parts the tests read or rewrite.
type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for,omitempty"`
	Labels      map[string]string `yaml:"labels,omitempty"`
	Annotations map[string]string `yaml:"annotations,omitempty"`
}

func loadRules(t *testing.T) ruleFile {
	t.Helper()
	var rf ruleFile
	if err := yaml.Unmarshal([]byte(read(t, "alerts.yml")), &rf); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	if len(rf.Groups) != 1 || len(rf.Groups[0].Rules) == 0 {
		t.Fatalf("alerts.yml: want one group of rules, got %+v", rf)
	}
	return rf
}

// addDevice registers an edge device and waits for the server to list it.
func addDevice(t *testing.T, f *servertest.Server) {
	t.Helper()
	if _, _, err := natsserver.AddDevice(server.DeviceDir(f.Config.DataDir), "bike-1", "rider-1"); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 10*time.Second, "the device in the metrics", func() bool {
		_, ok := promtest.MustGet(t, "http://"+f.MetricsAddr()+api.MetricsPath, "").Value("tideline_edge_device_connected", map[string]string{"device": "bike-1"})
		return ok
	})
}

// edgeOnly are series a server exposes only once an edge device has sent
// it a commit; adapters/prometheus's tests cover them.
var edgeOnly = []string{"tideline_edge_device_last_commit_timestamp_seconds", "tideline_edge_device_backlog_events"}

// TestNamesExist: every metric the rules and the dashboard use is one a
// real server exposes (a renamed metric would silently never alert).
func TestNamesExist(t *testing.T) {
	f := servertest.Start(t, func(m *server.Main) {
		m.Config.MetricsListen = "127.0.0.1:0"
		m.Config.LeafListen = "127.0.0.1:0"
	})
	addDevice(t, f)
	// RPC series start with the first call of a method.
	steps := stepsv1connect.NewStepsServiceClient(http.DefaultClient, f.URL)
	req := connect.NewRequest(&stepsv1.RecordStepsRequest{UserId: "walker-1", Date: time.Now().UTC().Format("2006-01-02"), Steps: 1})
	req.Header().Set("Authorization", "Bearer "+f.Token(t, "walker-1", auth.Walker))
	if _, err := steps.RecordSteps(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	scrape := promtest.MustGet(t, "http://"+f.MetricsAddr()+api.MetricsPath, "")
	seen := map[string]bool{}
	for _, e := range exprs(t) {
		for _, name := range metricName.FindAllString(e, -1) {
			if seen[name] {
				continue
			}
			seen[name] = true
			family := strings.TrimSuffix(name, "_bucket")
			if scrape[family] == nil && !slices.Contains(edgeOnly, name) {
				t.Errorf("%s (in %q) is not exposed by the server", name, e)
			}
		}
	}
}

func read(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func write(t *testing.T, name, data string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func mustAbs(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
