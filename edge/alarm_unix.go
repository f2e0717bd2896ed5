//go:build unix

package edge

import (
	"os/exec"
	"syscall"
)

// killGroupOnCancel starts c in a process group of its own and makes
// cancelling it kill the whole group: an alarm script's children too.
func killGroupOnCancel(c *exec.Cmd) {
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.Cancel = func() error { return syscall.Kill(-c.Process.Pid, syscall.SIGKILL) }
}
