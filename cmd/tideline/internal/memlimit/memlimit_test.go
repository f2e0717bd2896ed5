package memlimit

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"3GiB": 3 << 30, "512MiB": 512 << 20, "1048576": 1 << 20, "2048KiB": 2 << 20, "1TiB": 1 << 40, " 4GiB ": 4 << 30, "1048576B": 1 << 20,
	} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "3GB", "3 GiB", "-1GiB", "1.5GiB", "GiB", "1KiB", "9999999999TiB", "auto"} {
		if got, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, got)
		}
	}
}

// cgroupFS writes files under a temporary cgroup root.
func cgroupFS(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestChoose(t *testing.T) {
	const v2Self = "0::/kubepods/pod1/ctr\n"
	const v1Self = "12:pids:/\n4:memory:/docker/abc\n1:name=systemd:/\n"
	v2 := cgroupFS(t, map[string]string{"kubepods/pod1/ctr/memory.max": "4294967296\n"})
	v2Namespaced := cgroupFS(t, map[string]string{"memory.max": "2147483648\n"})
	v2None := cgroupFS(t, map[string]string{"kubepods/pod1/ctr/memory.max": "max\n"})
	v1 := cgroupFS(t, map[string]string{"memory/docker/abc/memory.limit_in_bytes": "1073741824\n"})
	v1None := cgroupFS(t, map[string]string{"memory/docker/abc/memory.limit_in_bytes": "9223372036854771712\n"})
	for _, tc := range []struct {
		name, flag, env, root, self string
		want                        int64
		source                      string
	}{
		{"flag wins", "3GiB", "1GiB", v2, v2Self, 3 << 30, "--memory-limit"},
		{"off", "off", "1GiB", v2, v2Self, 0, "none"},
		{"GOMEMLIMIT before the cgroup", "auto", "1GiB", v2, v2Self, 1 << 30, "GOMEMLIMIT"},
		{"GOMEMLIMIT off", "auto", "off", v2, v2Self, 0, "none"},
		{"cgroup v2", "auto", "", v2, v2Self, 4 << 30 * 9 / 10, "cgroup " + filepath.Join(v2, "kubepods/pod1/ctr/memory.max")},
		{"cgroup v2 in its namespace", "auto", "", v2Namespaced, "0::/\n", 2 << 30 * 9 / 10, "cgroup " + filepath.Join(v2Namespaced, "memory.max")},
		{"cgroup v2 without a limit", "auto", "", v2None, v2Self, 0, "none"},
		{"cgroup v1", "auto", "", v1, v1Self, 1 << 30 * 9 / 10, "cgroup " + filepath.Join(v1, "memory/docker/abc/memory.limit_in_bytes")},
		{"cgroup v1 without a limit", "auto", "", v1None, v1Self, 0, "none"},
		{"no cgroup files", "auto", "", t.TempDir(), v2Self, 0, "none"},
		{"not Linux", "", "", t.TempDir(), "", 0, "none"},
	} {
		got, err := Choose(tc.flag, tc.env, tc.root, tc.self)
		if err != nil || got.Bytes != tc.want || got.Source != tc.source {
			t.Errorf("%s: Choose = %+v, %v; want %d from %q", tc.name, got, err, tc.want, tc.source)
		}
	}
	for _, tc := range []struct{ flag, env, want string }{
		{"3GB", "", "--memory-limit"},
		{"auto", "lots", "GOMEMLIMIT"},
	} {
		if _, err := Choose(tc.flag, tc.env, t.TempDir(), ""); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Choose(%q, GOMEMLIMIT=%q): %v, want an error naming %s", tc.flag, tc.env, err, tc.want)
		}
	}
}
