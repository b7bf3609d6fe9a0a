package verify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Process runs a broker as a separate OS process, so that it can be killed
// with SIGKILL: only a real process death shows what survives in the page
// cache and on disk, and what a client sees when every connection drops at
// once. The same data directory and listen address are used on every start,
// so clients reconnect to the restarted broker as they would in production.
type Process struct {
	Path string   // executable: an idem binary or a re-executed test binary
	Args []string // complete arguments, including data dir and listen address
	Env  []string // extra environment, appended to os.Environ()
	// Addr is the host:port the broker listens on. Start returns once a TCP
	// connection to it succeeds (or Ready, if set, returns nil).
	Addr string
	// Ready, if set, replaces the TCP probe as the readiness check.
	Ready func(ctx context.Context) error
	// Output receives the broker's stdout and stderr; nil discards them.
	Output io.Writer
	// StartTimeout bounds one start, readiness included (default 30 s).
	StartTimeout time.Duration

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the current process has been reaped
	waitErr error
	starts  int
}

// FreeAddr returns a 127.0.0.1 address with a port that was free a moment
// ago. A broker process needs a fixed port across restarts, so it cannot
// listen on port 0 itself; the small race with other listeners is accepted.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Start starts the process and waits until it is ready. It fails if the
// process is already running, exits before it is ready, or is not ready in
// StartTimeout; in the last two cases the process is killed.
func (p *Process) Start(ctx context.Context) error {
	p.mu.Lock()
	if p.cmd != nil {
		p.mu.Unlock()
		return errors.New("verify: process already running")
	}
	cmd := exec.Command(p.Path, p.Args...)
	cmd.Env = append(os.Environ(), p.Env...)
	if p.Output != nil {
		cmd.Stdout, cmd.Stderr = p.Output, p.Output
	}
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		p.mu.Unlock()
		return fmt.Errorf("verify: start %s: %w", p.Path, err)
	}
	exited := make(chan struct{})
	p.cmd, p.exited, p.waitErr = cmd, exited, nil
	p.starts++
	p.mu.Unlock()

	// The reaper owns cmd.Wait; Kill and Stop join it through exited.
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.waitErr = err
		p.mu.Unlock()
		close(exited)
	}()

	timeout := p.StartTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ready := make(chan error, 1)
	go func() { ready <- p.waitReady(ctx) }()
	select {
	case err := <-ready:
		if err == nil {
			return nil
		}
		_ = p.Kill()
		return fmt.Errorf("verify: broker process not ready at %s: %w", p.Addr, err)
	case <-exited:
		cancel()
		<-ready
		p.mu.Lock()
		err := p.waitErr
		p.cmd = nil
		p.mu.Unlock()
		return fmt.Errorf("verify: broker process exited before it was ready: %v", err)
	}
}

func (p *Process) waitReady(ctx context.Context) error {
	if p.Ready != nil {
		return p.Ready(ctx)
	}
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "tcp", p.Addr)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last dial error: %v)", ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Kill sends SIGKILL and waits until the process is reaped. Killing a
// process that is not running is a no-op.
func (p *Process) Kill() error {
	return p.signalAndWait(syscall.SIGKILL, 0)
}

// Stop asks the process to shut down gracefully with SIGTERM and waits up to
// timeout, then kills it. It returns the process's exit error, so a test can
// assert that a graceful shutdown exits 0.
func (p *Process) Stop(timeout time.Duration) error {
	return p.signalAndWait(syscall.SIGTERM, timeout)
}

func (p *Process) signalAndWait(sig syscall.Signal, timeout time.Duration) error {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(sig)
	var err error
	if sig == syscall.SIGKILL {
		<-exited
	} else {
		select {
		case <-exited:
			p.mu.Lock()
			err = p.waitErr
			p.mu.Unlock()
		case <-time.After(timeout):
			_ = cmd.Process.Kill()
			<-exited
			err = fmt.Errorf("verify: process did not exit within %v of %v; killed", timeout, sig)
		}
	}
	p.mu.Lock()
	p.cmd = nil
	p.mu.Unlock()
	return err
}

// Running reports whether a started process has not been reaped yet.
func (p *Process) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Pid is the current process id, or 0.
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Starts counts successful and failed starts.
func (p *Process) Starts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.starts
}

// Restart implements Target: Start again, on the same arguments.
func (p *Process) Restart(ctx context.Context) error { return p.Start(ctx) }

// Pause implements Pauser with SIGSTOP: the process keeps its state and its
// sockets, and answers nothing until Resume.
func (p *Process) Pause() error {
	if pid := p.Pid(); pid != 0 {
		return syscall.Kill(pid, syscall.SIGSTOP)
	}
	return nil
}

// Resume implements Pauser with SIGCONT.
func (p *Process) Resume() error {
	if pid := p.Pid(); pid != 0 {
		return syscall.Kill(pid, syscall.SIGCONT)
	}
	return nil
}

// String names the current process ("pid 4242", or "no process").
func (p *Process) String() string {
	if pid := p.Pid(); pid != 0 {
		return fmt.Sprintf("pid %d", pid)
	}
	return "no process"
}

var (
	_ Target = (*Process)(nil)
	_ Pauser = (*Process)(nil)
)
