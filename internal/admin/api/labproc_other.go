//go:build !linux

package api

import "syscall"

// labRunnerAttr: only Linux can tie the runner's life to the broker's.
func labRunnerAttr() *syscall.SysProcAttr { return nil }
