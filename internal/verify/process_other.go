//go:build !linux

package verify

import "syscall"

func sysProcAttr() *syscall.SysProcAttr { return nil }
