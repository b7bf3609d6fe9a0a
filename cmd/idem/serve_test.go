package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/testkit"
	"github.com/idem-dev/idem/internal/verify"
)

// These tests run the real command line: the test binary re-executes itself
// as `idem` (mainEnv), so flags, exit codes, stdin/stdout and signals are
// exercised exactly as a user's shell would, without building a binary.
const mainEnv = "IDEM_CMD_TEST_MAIN"

func TestMain(m *testing.M) {
	testkit.Main(m, testkit.Role{Env: mainEnv, Run: func(string) int { main(); return 0 }})
}

// idem runs the command line with args and stdin and returns its stdout,
// stderr and exit error.
func idem(t *testing.T, stdin string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), mainEnv+"=1")
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

// mustIdem runs the command line and fails the test if it exits non-zero.
func mustIdem(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, errOut, err := idem(t, stdin, args...)
	if err != nil {
		t.Fatalf("idem %s: %v\nstderr:\n%s", strings.Join(args, " "), err, errOut)
	}
	return out
}

func TestServeExplainsBadInputInOneLine(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	notADir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notADir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	props := filepath.Join(t.TempDir(), "server.properties")
	if err := os.WriteFile(props, []byte("# ok so far\nnum.partitions=three\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		args []string
		want []string // substrings of the error line
	}{
		{"unknown flag", []string{"--no-such-flag"}, []string{"unknown flag", "--no-such-flag"}},
		{"malformed -X", []string{"-X", "num.partitions"}, []string{"-X", "name=value"}},
		{"unknown property", []string{"-X", "no.such.property=1"}, []string{"-X", "no.such.property"}},
		{"bad value", []string{"-X", "num.partitions=many"}, []string{"-X", "num.partitions", "many"}},
		{"bad value in file", []string{"--config", props}, []string{"server.properties:2", "num.partitions"}},
		{"missing config file", []string{"--config", props + ".missing"}, []string{"--config", "no such file"}},
		{"data dir not creatable", []string{"--data-dir", filepath.Join(notADir, "data")}, []string{"data dir", "not a directory"}},
		{"busy port", []string{"--kafka-addr", busy.Addr().String()}, []string{busy.Addr().String(), "address already in use"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"serve", "--data-dir", filepath.Join(t.TempDir(), "data"), "--admin-addr", ""}, c.args...)
			if c.name == "data dir not creatable" {
				args = append([]string{"serve", "--admin-addr", ""}, c.args...)
			}
			_, stderr, err := idem(t, "", args...)
			if err == nil {
				t.Fatalf("idem %v succeeded", args)
			}
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			last := lines[len(lines)-1]
			if !strings.HasPrefix(last, "idem: ") {
				t.Fatalf("last stderr line %q does not start with \"idem: \"; stderr:\n%s", last, stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(last, w) {
					t.Errorf("error line %q does not mention %q", last, w)
				}
			}
		})
	}
}

// serveChild runs `idem serve` (this test binary as main) on addr and
// adminAddr with args, under wrapper when given (prlimit …), until the test
// ends; it returns once /healthz answers 200: the Kafka port accepts
// connections into its backlog before Start has returned. It returns the
// process (to stop and restart) and its output.
func serveChild(t *testing.T, wrapper []string, addr, adminAddr string, args ...string) (*verify.Process, *bytes.Buffer) {
	t.Helper()
	argv := append([]string{os.Args[0], "serve", "--kafka-addr", addr, "--admin-addr", adminAddr}, args...)
	if len(wrapper) > 0 {
		argv = append(append([]string(nil), wrapper...), argv...)
	}
	logs := &bytes.Buffer{}
	server := &verify.Process{
		Path: argv[0], Args: argv[1:],
		Env:    []string{mainEnv + "=1"},
		Addr:   addr,
		Output: logs,
		Ready: func(ctx context.Context) error {
			for {
				resp, err := http.Get("http://" + adminAddr + "/healthz")
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						return nil
					}
				}
				select {
				case <-ctx.Done():
					return fmt.Errorf("/healthz never answered 200 (last error %v)", err)
				case <-time.After(20 * time.Millisecond):
				}
			}
		},
	}
	t.Cleanup(func() {
		_ = server.Kill()
		if t.Failed() {
			t.Logf("serve output:\n%s", logs.String())
		}
	})
	if err := server.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return server, logs
}

func TestServeAndClientCommandsEndToEnd(t *testing.T) {
	dataDir := t.TempDir()
	addr, err := verify.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	adminAddr, err := verify.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(addr)
	// A properties file sets defaults; -X overrides it.
	props := filepath.Join(t.TempDir(), "server.properties")
	if err := os.WriteFile(props, []byte("num.partitions=4\ngroup.initial.rebalance.delay.ms=0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	server, logs := serveChild(t, nil, addr, adminAddr, "--data-dir", dataDir,
		"--config", props, "-X", "num.partitions=5", "--advertised-addr", "localhost:"+port)
	b := []string{"--brokers", addr}

	// Metadata names the advertised address, not the bound one.
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		t.Fatal(err)
	}
	md, err := kadm.NewClient(cl).BrokerMetadata(context.Background())
	cl.Close()
	if err != nil || len(md.Brokers) != 1 || md.Brokers[0].Host != "localhost" || fmt.Sprint(md.Brokers[0].Port) != port {
		t.Fatalf("broker metadata %+v, %v; want localhost:%s", md.Brokers, err, port)
	}

	// Producing to a missing topic creates it with num.partitions from -X.
	mustIdem(t, "x\n", append([]string{"produce", "auto"}, b...)...)
	if out := mustIdem(t, "", append([]string{"topic", "list"}, b...)...); !regexp.MustCompile(`auto +5 +1`).MatchString(out) {
		t.Fatalf("topic list, want auto with 5 partitions (-X beats --config):\n%s", out)
	}

	mustIdem(t, "", append([]string{"topic", "create", "orders", "-p", "2"}, b...)...)
	if out := mustIdem(t, "", append([]string{"topic", "list"}, b...)...); !strings.Contains(out, "orders") || !strings.Contains(out, "2") {
		t.Fatalf("topic list:\n%s", out)
	}
	if _, _, err := idem(t, "", append([]string{"topic", "create", "orders"}, b...)...); err == nil {
		t.Fatal("creating an existing topic succeeded")
	}

	mustIdem(t, "alice:order 1\nbob:order 2\nalice:order 3\n", append([]string{"produce", "orders", "-K", ":", "-H", "src=cli"}, b...)...)

	// -X brokers= is the same as --brokers.
	out := mustIdem(t, "", "consume", "orders", "-X", "brokers="+addr, "-e", "-f", `%k=%s;%h\n`)
	got := strings.Split(strings.TrimSpace(out), "\n")
	if len(got) != 3 {
		t.Fatalf("consume -e printed %q, want 3 records", out)
	}
	for _, want := range []string{"alice=order 1;src=cli", "bob=order 2;src=cli", "alice=order 3;src=cli"} {
		if !strings.Contains(out, want) {
			t.Errorf("consume output %q lacks %q", out, want)
		}
	}

	if out := mustIdem(t, "", append([]string{"topic", "describe", "orders"}, b...)...); !strings.Contains(out, "PARTITIONS") || !strings.Contains(out, "HIGH-WATERMARK") {
		t.Fatalf("topic describe:\n%s", out)
	}

	// A group consumes two records and commits them; describe shows lag 1.
	out = mustIdem(t, "", append([]string{"consume", "orders", "-g", "cli-group", "-n", "2", "-f", `%s\n`}, b...)...)
	if n := len(strings.Split(strings.TrimSpace(out), "\n")); n != 2 {
		t.Fatalf("consume -n 2 printed %q", out)
	}
	if out := mustIdem(t, "", append([]string{"group", "list"}, b...)...); !strings.Contains(out, "cli-group") {
		t.Fatalf("group list:\n%s", out)
	}
	if out := mustIdem(t, "", append([]string{"group", "describe", "cli-group"}, b...)...); !regexp.MustCompile(`TOTAL-LAG +1\n`).MatchString(out) {
		t.Fatalf("group describe, want total lag 1:\n%s", out)
	}

	// Graceful shutdown on SIGTERM exits 0; the data survives a restart.
	if err := server.Stop(20 * time.Second); err != nil {
		t.Fatalf("SIGTERM: %v\n%s", err, logs.String())
	}
	if err := server.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	out = mustIdem(t, "", append([]string{"consume", "orders", "-e", "-f", `%p\n`}, b...)...)
	nonEmpty := map[string]bool{}
	for _, p := range strings.Fields(out) {
		nonEmpty[p] = true
	}
	if len(strings.Fields(out)) != 3 {
		t.Fatalf("after restart, consume -e printed partitions %q, want 3 records", out)
	}
	// -o -1 starts one before the end of each partition: one record per
	// partition that has any.
	if out := mustIdem(t, "", append([]string{"consume", "orders", "-e", "-o", "-1"}, b...)...); strings.Count(out, "order") != len(nonEmpty) {
		t.Fatalf("consume -o -1 printed %q, want the last record of each of %d non-empty partitions", out, len(nonEmpty))
	}
	mustIdem(t, "", append([]string{"topic", "delete", "orders"}, b...)...)
	if out := mustIdem(t, "", append([]string{"topic", "list"}, b...)...); strings.Contains(out, "orders") {
		t.Fatalf("topic still listed after delete:\n%s", out)
	}
}

func TestProduceAndConsumeOptions(t *testing.T) {
	b := brokertest.Run(t)
	addr := []string{"--brokers", b.Addr()}
	mustIdem(t, "", append([]string{"topic", "create", "opts", "-p", "3"}, addr...)...)

	// -p pins the partition; --acks 1 and 0 are accepted (not idempotent).
	mustIdem(t, "one\ntwo\n", append([]string{"produce", "opts", "-p", "2", "--acks", "1"}, addr...)...)
	mustIdem(t, "three\n", append([]string{"produce", "opts", "-p", "2", "-H", "a=1", "-H", "b=2"}, addr...)...)
	out := mustIdem(t, "", append([]string{"consume", "opts", "-e", "-f", `%p:%o:%s:%h\n`}, addr...)...)
	if want := "2:0:one:\n2:1:two:\n2:2:three:a=1,b=2\n"; out != want {
		t.Fatalf("consume printed %q, want %q", out, want)
	}

	// Offsets: exact, relative to start and end, and by time.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-o", "1"}, "two three"},
		{[]string{"-o", "+2"}, "three"},
		{[]string{"-o", "-1"}, "three"},
		{[]string{"-o", "end"}, ""},
		{[]string{"--time", "0"}, "one two three"},
		{[]string{"--time", time.Now().Add(time.Hour).Format(time.RFC3339)}, ""},
		{[]string{"--read-committed"}, "one two three"},
		{[]string{"--isolation-level", "read_committed", "-n", "2"}, "one two"},
	} {
		args := append([]string{"consume", "opts", "-p", "2", "-e"}, c.args...)
		if got := strings.Join(strings.Fields(mustIdem(t, "", append(args, addr...)...)), " "); got != c.want {
			t.Errorf("consume %v printed %q, want %q", c.args, got, c.want)
		}
	}

	// A record the broker rejects makes produce fail and say how many.
	mustIdem(t, "", append([]string{"topic", "create", "small", "-c", "max.message.bytes=200"}, addr...)...)
	// Random hex, so that franz-go's default snappy compression cannot
	// shrink the batch under the limit (the limit applies to the batch as
	// sent, compressed).
	big := make([]byte, 500)
	rand.Read(big)
	_, stderr, err := idem(t, hex.EncodeToString(big)+"\n", append([]string{"produce", "small"}, addr...)...)
	if err == nil || !strings.Contains(stderr, "1 of 1 records not acknowledged") || !strings.Contains(stderr, "MESSAGE_TOO_LARGE") {
		t.Errorf("producing an oversized record: err %v, stderr %q", err, stderr)
	}

	// A broker that is not there fails produce after --timeout, not never.
	dead, err := verify.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := idem(t, "x\n", "produce", "opts", "--brokers", dead, "--timeout", "1s"); err == nil || !strings.Contains(stderr, "1 of 1 records not acknowledged") {
		t.Errorf("producing to a dead broker: err %v, stderr %q", err, stderr)
	}

	// Bad client input fails with one clear line.
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"consume", "opts", "-o", "middle"}, "-o"},
		{[]string{"consume", "opts", "-f", "%x"}, "unknown code"},
		{[]string{"consume", "opts", "-g", "g", "-e"}, "cannot be used with -g"},
		{[]string{"produce", "opts", "--acks", "2"}, "--acks"},
		{[]string{"topic", "list", "-X", "bootstrap.servers=x"}, "unknown client property"},
		{[]string{"topic", "describe", "no-such-topic"}, "no-such-topic"},
	} {
		_, stderr, err := idem(t, "", append(c.args, addr...)...)
		if err == nil || !strings.Contains(stderr, c.want) {
			t.Errorf("idem %v: err %v, stderr %q; want a failure mentioning %q", c.args, err, stderr, c.want)
		}
	}
}

func TestServeHelpPropertiesListsTheRegistry(t *testing.T) {
	out := mustIdem(t, "", "serve", "--help-properties")
	for _, want := range []string{"NAME", "num.partitions", "auto.create.topics.enable", "group.initial.rebalance.delay.ms"} {
		if !strings.Contains(out, want) {
			t.Errorf("--help-properties lacks %q:\n%s", want, out)
		}
	}
}

// Transaction markers occupy offsets but are not records: consume -e must
// still find the end, and read_committed must hide an aborted transaction.
func TestConsumeExitsAtTheEndOfTransactionalData(t *testing.T) {
	b := brokertest.Run(t)
	addr := []string{"--brokers", b.Addr()}
	mustIdem(t, "", append([]string{"topic", "create", "txns", "-p", "1"}, addr...)...)
	cl := b.Client(t, kgo.TransactionalID("cli-test"), kgo.DefaultProduceTopic("txns"))
	ctx := context.Background()
	for _, txn := range []struct {
		values []string
		commit kgo.TransactionEndTry
	}{
		{[]string{"c1", "c2"}, kgo.TryCommit},
		{[]string{"a1"}, kgo.TryAbort},
		{[]string{"c3"}, kgo.TryCommit},
	} {
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for _, v := range txn.values {
			if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := cl.EndTransaction(ctx, txn.commit); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		isolation, want string
	}{
		{"read_committed", "c1 c2 c3"},
		{"read_uncommitted", "c1 c2 a1 c3"},
	} {
		out := mustIdem(t, "", append([]string{"consume", "txns", "-e", "--isolation-level", c.isolation}, addr...)...)
		if got := strings.Join(strings.Fields(out), " "); got != c.want {
			t.Errorf("consume -e --isolation-level %s printed %q, want %q", c.isolation, got, c.want)
		}
	}
}
