package lab

import "syscall"

// childAttr makes the kernel kill a worker if the lab dies, so an
// interrupted run never leaves a consumer behind.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}
