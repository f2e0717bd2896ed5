// Package version describes the running binary from the build information
// the Go toolchain embeds: the module version, the VCS revision it was
// built from, and the Go version.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

// String returns one line naming program, its module version, the VCS
// revision (with its time, and "modified" when built from a dirty tree)
// and the Go version and platform, e.g.
//
//	tideline v0.3.0 (rev 3545a5f1c2d4, 2026-11-30T10:00:00Z) go1.26.8 linux/amd64
//
// `go run` and `go test` embed no VCS information; `go build` and
// `go install` in a git checkout do.
func String(program string) string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return fmt.Sprintf("%s (no build information) %s %s/%s", program, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	}
	return describe(program, info)
}

func describe(program string, info *debug.BuildInfo) string {
	v := info.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, at, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	var vcs []string
	if rev != "" {
		vcs = append(vcs, "rev "+rev[:min(12, len(rev))])
	}
	if at != "" {
		vcs = append(vcs, at)
	}
	if modified == "true" {
		vcs = append(vcs, "modified")
	}
	s := program + " " + v
	if len(vcs) > 0 {
		s += " (" + strings.Join(vcs, ", ") + ")"
	}
	goVersion := info.GoVersion
	if goVersion == "" {
		goVersion = runtime.Version()
	}
	return fmt.Sprintf("%s %s %s/%s", s, goVersion, runtime.GOOS, runtime.GOARCH)
}
