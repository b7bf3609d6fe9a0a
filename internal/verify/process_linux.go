package verify

import "syscall"

// sysProcAttr makes the kernel kill the broker if the test process dies, so
// that an interrupted test never leaves a broker holding its port and files.
// Setpgid keeps a terminal's ^C from reaching the broker before the test does.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}
