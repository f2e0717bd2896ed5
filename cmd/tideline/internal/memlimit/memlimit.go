// Package memlimit picks the Go heap's soft memory limit of 'tideline
// serve' (runtime/debug.SetMemoryLimit): from --memory-limit, from
// GOMEMLIMIT, or from the memory limit of the container (cgroup) the
// process runs in.
//
// A start without snapshots replays the whole history, and the collector
// lets the heap grow to twice what is live before it runs: at 10M events
// the server peaks near 5 GB where its read models hold under 2 GB. A
// limit makes the collector run before the heap passes it, trading CPU for
// memory, so that a node sized for its read models is not killed for the
// garbage of a replay.
package memlimit

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Auto and Off are --memory-limit's words; any other value is a size.
const (
	Auto = "auto"
	Off  = "off"
)

// CgroupShare is the share of a container's memory limit the heap is
// limited to under Auto: the rest is for what the Go runtime does not
// count (the process's stacks and mapped files, NATS's buffers outside
// the heap) and for the collector's lag.
const CgroupShare = 0.9

// Choice is the limit picked and where it came from.
type Choice struct {
	Bytes  int64  // 0: none
	Source string // "--memory-limit", "GOMEMLIMIT", "cgroup <file>" or "none"
}

// Choose picks the limit for flag (Auto, Off or a size), with env the
// value of GOMEMLIMIT and root the cgroup file system (/sys/fs/cgroup)
// read with /proc/self/cgroup's content selfCgroup. Under Auto, GOMEMLIMIT
// wins (the runtime already applies it, so it is reported, not set),
// then CgroupShare of the container's limit.
func Choose(flag, env, root, selfCgroup string) (Choice, error) {
	switch flag {
	case Off:
		return Choice{Source: "none"}, nil
	case Auto, "":
	default:
		n, err := ParseSize(flag)
		if err != nil {
			return Choice{}, fmt.Errorf("--memory-limit: %w", err)
		}
		return Choice{Bytes: n, Source: "--memory-limit"}, nil
	}
	switch env {
	case "":
	case Off:
		return Choice{Source: "none"}, nil
	default:
		n, err := ParseSize(env)
		if err != nil {
			return Choice{}, fmt.Errorf("GOMEMLIMIT: %w", err)
		}
		return Choice{Bytes: n, Source: "GOMEMLIMIT"}, nil
	}
	limit, file := cgroupLimit(root, selfCgroup)
	if limit <= 0 {
		return Choice{Source: "none"}, nil
	}
	return Choice{Bytes: int64(float64(limit) * CgroupShare), Source: "cgroup " + file}, nil
}

// ParseSize reads a size as GOMEMLIMIT writes it: a whole number of bytes
// with an optional unit B, KiB, MiB, GiB or TiB. It must be at least 1 MiB:
// less would have the collector run without end.
func ParseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range units {
		if rest, ok := strings.CutSuffix(num, u.suffix); ok {
			num, mult = rest, u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("want a size such as 3GiB or 512MiB (units B, KiB, MiB, GiB, TiB), 'auto' or 'off'; got %q", s)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q is too large", s)
	}
	if n*mult < 1<<20 {
		return 0, fmt.Errorf("want at least 1MiB, got %q", s)
	}
	return n * mult, nil
}

// cgroupLimit returns the memory limit of the cgroup selfCgroup names
// under root, and the file it read; 0 when there is none (or it cannot
// be read: a limit is a help, not a requirement). Version 2 keeps it in
// memory.max ("max": none), version 1 in memory/memory.limit_in_bytes
// (a huge number: none). Inside a container's cgroup namespace the path
// is "/", and the files at root are the container's own.
func cgroupLimit(root, selfCgroup string) (int64, string) {
	var v1, v2 string // the process's cgroup paths
	sc := bufio.NewScanner(strings.NewReader(selfCgroup))
	for sc.Scan() {
		// hierarchy-ID:controller-list:path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			v2 = parts[2]
		case strings.Contains(","+parts[1]+",", ",memory,"):
			v1 = parts[2]
		}
	}
	var candidates []string
	if v1 != "" {
		candidates = append(candidates, filepath.Join(root, "memory", v1, "memory.limit_in_bytes"), filepath.Join(root, "memory", "memory.limit_in_bytes"))
	}
	if v2 != "" {
		candidates = append(candidates, filepath.Join(root, v2, "memory.max"), filepath.Join(root, "memory.max"))
	}
	for _, f := range candidates {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		v := strings.TrimSpace(string(b))
		if v == "max" {
			return 0, f
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			continue
		}
		if n >= 1<<62 { // version 1's "no limit", rounded to a page
			return 0, f
		}
		return n, f
	}
	return 0, ""
}
