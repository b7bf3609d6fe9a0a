package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/internal/clientprops"
	"github.com/idem-dev/idem/internal/verify"
)

// target is the cluster under test, and the proxies in front of it.
type target struct {
	cfg     *Config
	brokers []string
	// sec is how every client connects (Config.ClientProps).
	sec     clientprops.Security
	proc    *verify.Process
	logFile *os.File

	// txnOK, or else txnWhy: whether the target completes transactions
	// (probed before the first mode if some mode needs them).
	txnOK  bool
	txnWhy string

	mu      sync.Mutex
	proxies map[string]*verify.Proxy // upstream address → proxy
}

// open starts the lab's own broker, or takes the cluster of cfg.Bootstrap
// and skips the faults that need the broker as a child process; it fills in
// the report's target and faults.
func (t *target) open(ctx context.Context, rep *Report) error {
	if len(t.cfg.ClientProps) > 0 && len(t.cfg.Bootstrap) == 0 {
		return errors.New("lab: -X client properties need --bootstrap: the lab's own broker listens in plaintext on loopback")
	}
	for name := range t.cfg.ClientProps {
		if !clientprops.IsSecurity(name) {
			return fmt.Errorf("lab: -X %s: not a client security property (security.protocol, sasl.*, ssl.*)", name)
		}
	}
	var err error
	if t.sec, err = clientprops.SecurityOf(t.cfg.ClientProps); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	if len(t.cfg.Bootstrap) > 0 {
		t.brokers = t.cfg.Bootstrap
		rep.Target = "cluster at " + strings.Join(t.cfg.Bootstrap, ",")
		if t.sec.Protocol != "PLAINTEXT" {
			rep.Target += " (" + t.sec.Protocol + ")"
		}
		for _, f := range t.cfg.Faults {
			if f.needsBrokerProcess() {
				rep.Skipped = append(rep.Skipped, f)
			} else {
				rep.Faults = append(rep.Faults, f)
			}
		}
		return t.reach(ctx)
	}
	if t.cfg.Broker == nil {
		return errors.New("lab: Config.Broker is required without Bootstrap")
	}
	if err := t.startBroker(ctx); err != nil {
		return err
	}
	rep.Target = "idem broker (child process) at " + t.brokers[0]
	rep.Faults = slices.Clone(t.cfg.Faults)
	return nil
}

// reach checks, before any mode runs, that a client can talk to the
// cluster with the properties given, so that a missing -X
// security.protocol or a wrong password is one clear error, not clients
// retrying until --duration.
func (t *target) reach(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(t.opts(kgo.RetryTimeout(10*time.Second), kgo.RequestRetries(2))...)
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	defer cl.Close()
	_, err = kadm.NewClient(cl).BrokerMetadata(ctx)
	if err == nil {
		return nil
	}
	if ctx.Err() != nil && !errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("%w (no answer within 15s)", err)
	}
	hint := ""
	if t.sec.Protocol == "PLAINTEXT" {
		hint = "; if it wants TLS or SASL, say so with -X security.protocol=… and the sasl.* and ssl.* properties"
	}
	return fmt.Errorf("lab: cannot talk to the cluster at %s over %s: %w%s", strings.Join(t.brokers, ","), t.sec.Protocol, err, hint)
}

// opts are a client's options: the seed brokers, how to connect
// (Config.ClientProps), then extra.
func (t *target) opts(extra ...kgo.Opt) []kgo.Opt {
	return append(append([]kgo.Opt{kgo.SeedBrokers(t.brokers...)}, t.sec.Opts()...), extra...)
}

// probe finds out what the target can do that some of the modes need,
// while the target is fresh.
func (t *target) probe(ctx context.Context, modes []*modeSpec) {
	if slices.ContainsFunc(modes, func(m *modeSpec) bool { return m.needsTransactions }) {
		t.txnOK, t.txnWhy = TransactionsAvailable(ctx, t.brokers, t.sec.Opts()...)
	}
}

// canRun reports whether the target can run mode m, and if not why.
func (t *target) canRun(m *modeSpec) (bool, string) {
	if m.needsTransactions && !t.txnOK {
		return false, "the target did not complete a probe transaction (" + t.txnWhy + ")"
	}
	return true, ""
}

// startBroker runs the lab's own broker as a child process, so that it can
// be killed with SIGKILL and paused with SIGSTOP.
func (t *target) startBroker(ctx context.Context) error {
	addr, err := verify.FreeAddr()
	if err != nil {
		return err
	}
	dataDir := filepath.Join(t.cfg.Dir, "broker")
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return err
	}
	t.logFile, err = os.Create(filepath.Join(t.cfg.Dir, "broker.log"))
	if err != nil {
		return err
	}
	c := t.cfg.Broker(dataDir, addr)
	t.proc = &verify.Process{Path: c.Path, Args: c.Args, Env: c.Env, Addr: addr, Output: t.logFile, StartTimeout: 30 * time.Second}
	if err := t.proc.Start(ctx); err != nil {
		return fmt.Errorf("lab: start broker: %w (log in %s)", err, t.logFile.Name())
	}
	t.brokers = []string{addr}
	return nil
}

// dial routes every connection the producer makes through a proxy for the
// address it asked for, so that faults hit whichever broker it talks to.
func (t *target) dial(ctx context.Context, network, host string) (net.Conn, error) {
	p, err := t.proxyFor(host)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	return d.DialContext(ctx, network, p.Addr())
}

// proxyFor returns the proxy in front of host, starting it if needed. The
// proxy does the TLS of Config.ClientProps towards the broker, so that it
// reads the Kafka frames it must act on; its clients speak plaintext to it
// on loopback, with SASL (Security.SASLOpts).
func (t *target) proxyFor(host string) (*verify.Proxy, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.proxies == nil {
		t.proxies = map[string]*verify.Proxy{}
	}
	p := t.proxies[host]
	if p == nil {
		var err error
		var dial func(ctx context.Context, network, addr string) (net.Conn, error)
		if t.sec.TLS != nil {
			dial = t.sec.Dial
		}
		if p, err = verify.NewProxyDial(host, dial); err != nil {
			return nil, err
		}
		t.proxies[host] = p
	}
	return p, nil
}

// each applies f to every proxy, creating the seed brokers' first.
func (t *target) each(f func(*verify.Proxy)) {
	for _, b := range t.brokers {
		_, _ = t.proxyFor(b)
	}
	t.mu.Lock()
	ps := make([]*verify.Proxy, 0, len(t.proxies))
	for _, p := range t.proxies {
		ps = append(ps, p)
	}
	t.mu.Unlock()
	for _, p := range ps {
		f(p)
	}
}

// close stops the proxies and the lab's broker; it may be called twice.
func (t *target) close() {
	t.mu.Lock()
	ps := t.proxies
	t.proxies = nil
	t.mu.Unlock()
	for _, p := range ps {
		p.Close()
	}
	if t.proc != nil {
		_ = t.proc.Stop(10 * time.Second)
		t.proc = nil
	}
	if t.logFile != nil {
		t.logFile.Close()
		t.logFile = nil
	}
}

// admin runs f with an admin client, retrying while the broker restarts.
func (t *target) admin(ctx context.Context, f func(*kadm.Client) error) error {
	cl, err := kgo.NewClient(t.opts(kgo.RetryTimeout(5 * time.Second))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	return retry(ctx, func() error { return f(kadm.NewClient(cl)) })
}

// TransactionsAvailable commits one transaction to find out whether the
// target completes Kafka transactions: the exactly-once mode runs only if it
// does, and is reported unavailable (never emulated) if not; the reason is
// the second result. opts are added to the client's (how to connect).
func TransactionsAvailable(ctx context.Context, brokers []string, opts ...kgo.Opt) (bool, string) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	topic := fmt.Sprintf("idem-lab-txn-probe-%d", time.Now().UnixNano())
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.TransactionalID(topic), kgo.DefaultProduceTopic(topic),
		kgo.TransactionTimeout(10 * time.Second), kgo.RequestRetries(3), kgo.RetryTimeout(5 * time.Second)}, opts...)...)
	if err != nil {
		return false, err.Error()
	}
	defer cl.Close()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, -1, nil, topic); err != nil {
		return false, "create probe topic: " + err.Error()
	}
	defer kadm.NewClient(cl).DeleteTopics(context.Background(), topic)
	if err := cl.BeginTransaction(); err != nil {
		return false, err.Error()
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte("probe")}).FirstErr(); err != nil {
		_ = cl.EndTransaction(ctx, kgo.TryAbort)
		return false, "transactional produce: " + err.Error()
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		return false, "commit: " + err.Error()
	}
	return true, ""
}
