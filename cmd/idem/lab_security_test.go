package main

import (
	"bytes"
	"crypto/x509/pkix"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/testkit"
)

// TestLabOverSASLSSL runs `idem lab` (the real command line, its consumer
// processes too) against a broker that has only a SASL_SSL listener and an
// authorizer: with the -X properties every client of the lab gets in and
// the modes run to a verdict; without them, or with a wrong password, the
// lab stops at once with an error that says why.
func TestLabOverSASLSSL(t *testing.T) {
	if testing.Short() {
		t.Skip("runs idem lab with its worker processes")
	}
	dir := filepath.Join(t.TempDir(), "data")
	if _, err := idemIn(t, "lab-secret\n", "user", "create", "labuser", "--data-dir", dir); err != nil {
		t.Fatalf("offline user create: %v", err)
	}
	ca := testkit.NewCA(t, "lab test CA")
	srv := ca.Issue(t, pkix.Name{CommonName: "localhost"})
	caFile := testkit.WriteFile(t, t.TempDir(), "ca.pem", ca.CertPEM)
	b := brokertest.Run(t,
		broker.WithDataDir(dir),
		// Anonymous clients get in on PLAINTEXT, and the authorizer
		// refuses them everything.
		broker.WithProperty("listeners", "SASL_SSL://127.0.0.1:0,PLAINTEXT://127.0.0.1:0"),
		broker.WithProperty("ssl.keystore.certificate.chain", string(srv.CertPEM)),
		broker.WithProperty("ssl.keystore.key", string(srv.KeyPEM)),
		broker.WithProperty("authorizer.class.name", "idem"),
		broker.WithProperty("super.users", "User:labuser"),
	)
	addr, plainAddr := b.ListenerAddr("SASL_SSL"), b.ListenerAddr("PLAINTEXT")
	secure := func(pass string) []string {
		return []string{"-X", "security.protocol=SASL_SSL", "-X", "sasl.mechanism=SCRAM-SHA-256",
			"-X", "sasl.username=labuser", "-X", "sasl.password=" + pass, "-X", "ssl.ca.location=" + caFile}
	}
	lab := func(at string, extra ...string) (stdout, stderr string, took time.Duration, err error) {
		t.Helper()
		args := append([]string{"lab", "--bootstrap", at, "--scenario", "charge", "--mode", "at-least-once,exactly-once-txn",
			"--faults", "lost-ack,consumer-crash", "-n", "20", "--seed", "7", "--duration", "40s", "--json", "--dir", t.TempDir()}, extra...)
		start := time.Now()
		stdout, stderr, err = idem(t, "", args...)
		return stdout, stderr, time.Since(start), err
	}

	// Refusals first: each is one clear error, quickly, not a hang.
	for _, c := range []struct {
		name string
		at   string
		args []string
		want []string
	}{
		{"no -X", addr, nil, []string{"cannot talk to the cluster", "PLAINTEXT", "-X security.protocol"}},
		{"anonymous", plainAddr, nil, []string{"create topics", "AUTHORIZATION_FAILED"}},
		{"wrong password", addr, secure("guess"), []string{"cannot talk to the cluster", "SASL_SSL", "SASL_AUTHENTICATION_FAILED"}},
		{"not a security property", addr, []string{"-X", "client.id=x"}, []string{"not a client security property"}},
	} {
		out, errOut, took, err := lab(c.at, c.args...)
		if err == nil {
			t.Errorf("%s: idem lab succeeded:\n%s", c.name, out)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(errOut, w) {
				t.Errorf("%s: stderr lacks %q (took %v):\n%s", c.name, w, took, errOut)
			}
		}
		t.Logf("%s: failed in %v: %s", c.name, took, strings.TrimSpace(errOut))
		if took > 30*time.Second {
			t.Errorf("%s: took %v to fail", c.name, took)
		}
		if strings.Contains(errOut, "guess") || strings.Contains(out, "guess") {
			t.Errorf("%s: the password is in the output:\n%s%s", c.name, out, errOut)
		}
	}
	if _, errOut, err := idem(t, "", append([]string{"lab", "-n", "5"}, secure("lab-secret")...)...); err == nil ||
		!strings.Contains(errOut, "need --bootstrap") {
		t.Errorf("-X without --bootstrap: %v\n%s", err, errOut)
	}

	// While it runs, the worker processes' command lines and environments
	// are watched: the password reaches them on stdin only.
	stop, watched := watchWorkers(t, "lab-secret")
	out, errOut, took, err := lab(addr, secure("lab-secret")...)
	stop()
	if n := <-watched; n == 0 && runtime.GOOS == "linux" {
		t.Error("no worker process seen in /proc while the lab ran: the password check proved nothing")
	}
	if err != nil {
		t.Fatalf("idem lab over SASL_SSL: %v (took %v)\nstdout:\n%s\nstderr:\n%s", err, took, out, errOut)
	}
	var rep struct {
		Target string `json:"target"`
		Modes  []struct {
			Mode      string         `json:"mode"`
			Available bool           `json:"available"`
			Complete  bool           `json:"complete"`
			Sent      int            `json:"sent"`
			Acked     int            `json:"acknowledged"`
			Lost      int            `json:"lost"`
			Faults    map[string]int `json:"faults_injected"`
			LogOK     bool           `json:"log_ok"`
			Kept      *bool          `json:"kept"`
			Verdict   string         `json:"verdict"`
		} `json:"modes"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, out)
	}
	if !strings.Contains(rep.Target, "SASL_SSL") || len(rep.Modes) != 2 {
		t.Fatalf("report:\n%s", out)
	}
	for _, m := range rep.Modes {
		if !m.Available || !m.Complete || m.Sent != 20 || m.Acked != 20 || m.Lost != 0 || !m.LogOK || m.Kept == nil || !*m.Kept {
			t.Errorf("mode %s over SASL_SSL: %+v", m.Mode, m)
		}
		if m.Faults["lost-ack"] == 0 {
			t.Errorf("mode %s: no lost-ack injected through the TLS-terminating proxy: %+v", m.Mode, m.Faults)
		}
	}
	t.Logf("idem lab over SASL_SSL took %v:\n%s", took, out)
}

// watchWorkers polls /proc for `lab-worker` processes until stop is called
// and fails the test if one shows secret in its command line or its
// environment; watched then says how many it saw.
func watchWorkers(t *testing.T, secret string) (stop func(), watched <-chan int) {
	done, count := make(chan struct{}), make(chan int, 1)
	go func() {
		seen := map[string]bool{}
		for {
			select {
			case <-done:
				count <- len(seen)
				return
			case <-time.After(10 * time.Millisecond):
			}
			procs, _ := filepath.Glob("/proc/[0-9]*")
			for _, p := range procs {
				cmdline, err := os.ReadFile(filepath.Join(p, "cmdline"))
				if err != nil || !bytes.Contains(cmdline, []byte("lab-worker")) {
					continue
				}
				environ, err := os.ReadFile(filepath.Join(p, "environ"))
				if err != nil {
					continue
				}
				seen[p] = true
				if bytes.Contains(cmdline, []byte(secret)) || bytes.Contains(environ, []byte(secret)) {
					t.Errorf("worker %s shows the password in its command line or environment", p)
				}
			}
		}
	}()
	return func() { close(done) }, count
}
