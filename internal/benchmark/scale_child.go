package benchmark

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/prometheus/procfs"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/idem-dev/idem/internal/tail"
)

// The scale scenarios measure the broker as a process: its resident memory,
// open files and CPU time are read from /proc, and startup is timed from
// exec. So the broker runs as a child process of the bench, never inside it,
// where the bench's own clients would blur every figure: `idem serve`, with
// the flags childArgs gives it.

// childArgs are the `idem serve` flags of a broker child: its data
// directory and listener, no admin server, warnings only on stderr (kept
// for the error if it dies), every property at its default: the figures
// are those of the broker as shipped.
func childArgs(dataDir, addr string) []string {
	return []string{"--data-dir", dataDir, "--kafka-addr", addr, "--admin-addr", "", "--log-level", "warn"}
}

// childBroker is a running broker child process.
type childBroker struct {
	cmd     *exec.Cmd
	addr    string
	dataDir string
	stderr  *tail.Buffer
	began   time.Time     // just before exec
	exited  chan struct{} // closed once Wait has returned
	waitErr error
}

// spawner starts broker children with one command line on one port, so a
// restarted child answers where its clients expect it.
type spawner struct {
	argv []string // command and leading arguments: [idem serve]
	env  []string // added to the bench's environment
	addr string
}

func newSpawner(cfg ScaleConfig) (*spawner, error) {
	argv := cfg.Child
	if len(argv) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find the idem executable to start a broker child: %w", err)
		}
		argv = []string{exe, "serve"}
	}
	addr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	return &spawner{argv: argv, env: cfg.ChildEnv, addr: addr}, nil
}

// freeLoopbackAddr picks a loopback port the kernel says is free. The child
// binds it again a moment later; listeners set SO_REUSEADDR, so a restart
// after kill -9 binds it too.
func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("pick a port for the broker child: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// start execs a child on dataDir and returns once it answers a Metadata
// request, with the time from exec to that answer: the broker's startup
// time as a client sees it.
func (s *spawner) start(ctx context.Context, dataDir string) (*childBroker, time.Duration, error) {
	cmd := exec.Command(s.argv[0], append(append([]string{}, s.argv[1:]...), childArgs(dataDir, s.addr)...)...)
	cmd.Env = append(os.Environ(), s.env...)
	c := &childBroker{cmd: cmd, addr: s.addr, dataDir: dataDir, stderr: tail.NewBuffer(16 << 10), exited: make(chan struct{})}
	cmd.Stderr = c.stderr
	c.began = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, 0, fmt.Errorf("start broker child %s: %w", s.argv[0], err)
	}
	go func() { c.waitErr = cmd.Wait(); close(c.exited) }()
	if err := c.awaitServing(ctx); err != nil {
		c.kill()
		return nil, 0, err
	}
	return c, time.Since(c.began), nil
}

// awaitServing polls the port every few milliseconds until a Metadata
// request is answered, the child exits or ctx ends.
func (c *childBroker) awaitServing(ctx context.Context) error {
	for {
		select {
		case <-c.exited:
			return fmt.Errorf("broker child exited before serving (%v): %s", c.waitErr, c.stderr)
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		conn, err := net.DialTimeout("tcp", c.addr, 100*time.Millisecond)
		if err != nil {
			time.Sleep(2 * time.Millisecond)
			continue
		}
		conn.Close()
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.addr))
		if err != nil {
			return err
		}
		req := kmsg.NewPtrMetadataRequest()
		req.Topics = []kmsg.MetadataRequestTopic{} // none: the answer, not its size, is timed
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err = cl.Request(rctx, req)
		cancel()
		cl.Close()
		if err == nil {
			return nil
		}
	}
}

// stop sends SIGTERM and waits for a clean exit (the broker fsyncs and
// closes its logs first).
func (c *childBroker) stop(ctx context.Context) error {
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-c.exited:
	case <-ctx.Done():
		c.kill()
		return fmt.Errorf("broker child did not stop after SIGTERM: %w", ctx.Err())
	}
	if c.waitErr != nil {
		return fmt.Errorf("broker child exited uncleanly after SIGTERM (%v): %s", c.waitErr, c.stderr)
	}
	return nil
}

// kill is kill -9: the broker gets no chance to flush or close anything.
func (c *childBroker) kill() {
	_ = c.cmd.Process.Kill()
	<-c.exited
}

// procStats is what /proc says of one process at one moment.
type procStats struct {
	RSS, HWM int64   // resident memory now and at its peak, bytes
	FDs      int     // open file descriptors
	CPU      float64 // user+system CPU seconds since exec
}

func (c *childBroker) stats() (procStats, error) {
	p, err := procfs.NewProc(c.cmd.Process.Pid)
	if err != nil {
		return procStats{}, err
	}
	st, err := p.NewStatus()
	if err != nil {
		return procStats{}, err
	}
	stat, err := p.Stat()
	if err != nil {
		return procStats{}, err
	}
	fds, err := p.FileDescriptorsLen()
	if err != nil {
		return procStats{}, err
	}
	return procStats{RSS: int64(st.VmRSS), HWM: int64(st.VmHWM), FDs: fds, CPU: stat.CPUTime()}, nil
}

// selfCPU is the bench process's own user+system CPU seconds: its clients'
// cost, set beside the broker's to show which of the two a figure measures
// on a machine with few cores.
func selfCPU() (float64, error) {
	p, err := procfs.Self()
	if err != nil {
		return 0, err
	}
	stat, err := p.Stat()
	if err != nil {
		return 0, err
	}
	return stat.CPUTime(), nil
}

// rssSampler reads the child's VmRSS every 100 ms until stopped and keeps
// the peak, so a phase can report its own peak (VmHWM only ever grows).
type rssSampler struct {
	stopc chan struct{}
	done  chan struct{}
	peak  int64
	err   error
}

func sampleRSS(c *childBroker) *rssSampler {
	s := &rssSampler{stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			st, err := c.stats()
			if err != nil {
				s.err = err
				return
			}
			s.peak = max(s.peak, st.RSS)
			select {
			case <-s.stopc:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// stop ends the sampling and returns the peak RSS seen.
func (s *rssSampler) stop() (int64, error) {
	close(s.stopc)
	<-s.done
	return s.peak, s.err
}

// scaleDataDir makes a data directory for one run under cfg.DataDir (or
// the system's temporary directory) and a function removing it.
func scaleDataDir(cfg ScaleConfig, name string) (string, func(), error) {
	dir, err := os.MkdirTemp(cfg.DataDir, "idem-bench-"+name+"-")
	if err != nil {
		return "", nil, fmt.Errorf("data directory for the broker child: %w", err)
	}
	return dir, func() { os.RemoveAll(dir) }, nil
}

// dirBytes is the size of the files under dir.
func dirBytes(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// progressf writes one line of progress when the bench has somewhere to.
func progressf(w io.Writer, format string, args ...any) {
	if w != nil {
		fmt.Fprintf(w, format+"\n", args...)
	}
}
