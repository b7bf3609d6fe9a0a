package logstore

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// BackgroundPriority locks the calling goroutine to its OS thread and
// lowers that thread to the lowest CPU priority (nice 19) and the idle I/O
// class, so that the work it does (log cleaning) takes the processor and
// the disk only when nothing else wants them, as RocksDB runs its
// compactions. The goroutine must end while still locked: Go then
// terminates the thread instead of reusing it at low priority. It reports
// what it could not change (an unprivileged process may not be allowed
// some of it); the goroutine runs either way.
func BackgroundPriority() error {
	runtime.LockOSThread()
	tid := unix.Gettid()
	err := unix.Setpriority(unix.PRIO_PROCESS, tid, 19)
	const ioprioWhoProcess, ioprioClassIdle = 1, 3
	if _, _, errno := unix.Syscall(unix.SYS_IOPRIO_SET, ioprioWhoProcess, uintptr(tid), ioprioClassIdle<<13); errno != 0 && err == nil {
		err = errno
	}
	return err
}
