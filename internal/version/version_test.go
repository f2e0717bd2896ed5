package version

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestDescribe(t *testing.T) {
	platform := runtime.GOOS + "/" + runtime.GOARCH
	tests := []struct {
		name string
		info debug.BuildInfo
		want string
	}{
		{"go_build_in_a_clean_checkout", debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.3.0"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "3545a5f1c2d4e5f60718293a4b5c6d7e8f901234"}, {Key: "vcs.time", Value: "2026-11-30T10:00:00Z"}, {Key: "vcs.modified", Value: "false"},
		}}, "tideline v0.3.0 (rev 3545a5f1c2d4, 2026-11-30T10:00:00Z) go1.26.8 " + platform},
		{"dirty_tree", debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20261130100000-3545a5f1c2d4+dirty"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "3545a5f1c2d4e5f6"}, {Key: "vcs.modified", Value: "true"},
		}}, "tideline v0.0.0-20261130100000-3545a5f1c2d4+dirty (rev 3545a5f1c2d4, modified) go1.26.8 " + platform},
		{"go_run_no_vcs", debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}}, "tideline (devel) go1.26.8 " + platform},
		{"empty", debug.BuildInfo{}, "tideline (devel) " + runtime.Version() + " " + platform},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := describe("tideline", &tc.info); got != tc.want {
				t.Fatalf("describe = %q\nwant       %q", got, tc.want)
			}
		})
	}
}

func TestStringNamesThisBinary(t *testing.T) {
	s := String("prog")
	if !strings.HasPrefix(s, "prog ") || !strings.Contains(s, runtime.Version()) {
		t.Fatalf("String = %q, want the program and %s", s, runtime.Version())
	}
}
