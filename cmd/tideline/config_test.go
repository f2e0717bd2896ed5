package main

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigFile(t *testing.T) {
	newFS := func() (*flag.FlagSet, map[string]any) {
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		v := map[string]any{
			"listen":               fs.String("listen", "127.0.0.1:8080", ""),
			"cluster-name":         fs.String("cluster-name", "", ""),
			"cluster-secret-file":  fs.String("cluster-secret-file", "", ""),
			"routes":               fs.String("routes", "", ""),
			"replicas":             fs.Int("replicas", 0, ""),
			"dup-window":           fs.Duration("dup-window", 2*time.Minute, ""),
			"egress-allow-private": fs.Bool("egress-allow-private", false, ""),
		}
		fs.String(configFlag, "", "")
		return fs, v
	}
	write := func(t *testing.T, body string) string {
		p := filepath.Join(t.TempDir(), "tideline.yaml")
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const file = `listen: 0.0.0.0:8080
cluster:
  name: prod
  secret_file: /etc/tideline/secret
routes:
  - nats-route://a:6222
  - nats-route://b:6222
replicas: 3
dup-window: 5m
egress-allow-private: true
`
	t.Run("file_sets_every_kind_of_flag", func(t *testing.T) {
		fs, v := newFS()
		if err := fs.Parse(nil); err != nil {
			t.Fatal(err)
		}
		if err := applyConfigFile(fs, write(t, file)); err != nil {
			t.Fatal(err)
		}
		want := map[string]any{"listen": "0.0.0.0:8080", "cluster-name": "prod", "cluster-secret-file": "/etc/tideline/secret",
			"routes": "nats-route://a:6222,nats-route://b:6222", "replicas": 3, "dup-window": 5 * time.Minute, "egress-allow-private": true}
		for name, w := range want {
			var got any
			switch p := v[name].(type) {
			case *string:
				got = *p
			case *int:
				got = *p
			case *time.Duration:
				got = *p
			case *bool:
				got = *p
			}
			if got != w {
				t.Errorf("%s = %v, want %v", name, got, w)
			}
		}
	})
	t.Run("command_line_wins", func(t *testing.T) {
		fs, v := newFS()
		if err := fs.Parse([]string{"--listen", "127.0.0.1:9", "--replicas=1"}); err != nil {
			t.Fatal(err)
		}
		if err := applyConfigFile(fs, write(t, file)); err != nil {
			t.Fatal(err)
		}
		if *v["listen"].(*string) != "127.0.0.1:9" || *v["replicas"].(*int) != 1 || *v["cluster-name"].(*string) != "prod" {
			t.Errorf("listen %q replicas %d cluster-name %q, want the command line's listen and replicas, the file's name",
				*v["listen"].(*string), *v["replicas"].(*int), *v["cluster-name"].(*string))
		}
	})
	for name, c := range map[string]struct{ body, want string }{
		"unknown_key":         {"listen: x\nlisten-addr: y\n", "no such flag: listen-addr"},
		"config_in_config":    {"config: other.yaml\n", "no such flag: config"},
		"bad_value":           {"replicas: three\n", "replicas"},
		"not_a_map":           {"- a\n- b\n", "tideline.yaml"},
		"nested_beyond_value": {"cluster:\n  name:\n    deep: 1\n", "no such flag: cluster-name-deep"},
	} {
		t.Run(name, func(t *testing.T) {
			fs, _ := newFS()
			if err := fs.Parse(nil); err != nil {
				t.Fatal(err)
			}
			err := applyConfigFile(fs, write(t, c.body))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error saying %q", err, c.want)
			}
		})
	}
}

// A cluster's routes authenticate: serve refuses to start one without a
// secret, or with a guessable one.
func TestServeRefusesClusterWithoutSecret(t *testing.T) {
	short := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(short, []byte("hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		args []string
		want string
	}{
		"no_secret":      {[]string{"--cluster-name", "tl", "--cluster-listen", "127.0.0.1:0"}, "--cluster-secret-file"},
		"short_secret":   {[]string{"--cluster-name", "tl", "--cluster-listen", "127.0.0.1:0", "--cluster-secret-file", short}, "at least 16"},
		"no_listen":      {[]string{"--cluster-name", "tl", "--cluster-secret-file", short}, "--cluster-listen"},
		"route_with_pwd": {[]string{"--routes", "nats-route://u:p@a:6222"}, "credentials come from the cluster secret"},
		"replicas_alone": {[]string{"--replicas", "3"}, "needs a cluster"},
		"await_alone":    {[]string{"--await-import"}, "--await-import goes with --cluster-name"},
		"await_nats_url": {[]string{"--await-import", "--nats-url", "nats://127.0.0.1:1"}, "--await-import goes with --cluster-name"},
	} {
		t.Run(name, func(t *testing.T) {
			args := append([]string{"--data", t.TempDir()}, c.args...)
			err := serveCmd(t.Context(), args, io.Discard)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("serve %v: %v, want an error saying %q", c.args, err, c.want)
			}
		})
	}
}
