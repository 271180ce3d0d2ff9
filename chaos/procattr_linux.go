package chaos

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel kill a relay when the checker dies, even by kill -9, so that
// no relay outlives its run.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
