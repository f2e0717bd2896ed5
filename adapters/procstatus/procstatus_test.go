package procstatus_test

import (
	"os"
	"runtime"
	"testing"

	"github.com/tideline/tideline/adapters/procstatus"
)

func TestBytes(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("no /proc")
	}
	rss, err := procstatus.Bytes(procstatus.Self, "VmRSS")
	if err != nil || rss < 1<<20 {
		t.Fatalf("own VmRSS = %d, %v; want at least a MiB", rss, err)
	}
	byPid, err := procstatus.Bytes(os.Getpid(), "VmHWM")
	if err != nil || byPid < rss/2 {
		t.Fatalf("VmHWM by pid = %d, %v; want near VmRSS %d or above", byPid, err, rss)
	}
	if _, err := procstatus.Bytes(procstatus.Self, "NoSuchField"); err == nil {
		t.Error("a missing field gave no error")
	}
	if _, err := procstatus.Bytes(1<<30, "VmRSS"); err == nil {
		t.Error("a process that is not there gave no error")
	}
}
