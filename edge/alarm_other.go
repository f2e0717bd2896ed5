//go:build !unix

package edge

import "os/exec"

// killGroupOnCancel leaves exec's default: cancelling kills the command
// itself (no process groups here).
func killGroupOnCancel(*exec.Cmd) {}
