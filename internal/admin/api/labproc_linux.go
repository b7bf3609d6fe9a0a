package api

import "syscall"

// labRunnerAttr makes the kernel send the lab runner SIGTERM if the
// broker dies, so the runner stops its lab (and its children) instead of
// running on unowned.
func labRunnerAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
