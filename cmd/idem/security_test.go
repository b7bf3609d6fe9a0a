package main

import (
	"bytes"
	"context"
	"crypto/x509/pkix"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/testkit"
)

// idemIn runs the command tree in-process and returns what it printed.
func idemIn(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetIn(strings.NewReader(stdin))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

// TestSecureClientPropertiesUsersAndACLs: the first administrator is
// created in a stopped broker's data directory, then the CLI talks to the
// locked-down broker over SASL_SSL with kcat's -X properties, manages
// users and ACLs, and refuses what it should.
func TestSecureClientPropertiesUsersAndACLs(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "not-yet-created")
	if _, err := idemIn(t, "root-secret\n", "user", "create", "root", "--data-dir", dir); err != nil {
		t.Fatalf("offline user create: %v", err)
	}
	if _, err := idemIn(t, "", "user", "create", "nopass", "--data-dir", dir); err == nil {
		t.Error("a user without a password was created")
	}
	ca := testkit.NewCA(t, "cli test CA")
	srv := ca.Issue(t, pkix.Name{CommonName: "localhost"})
	caFile := testkit.WriteFile(t, t.TempDir(), "ca.pem", ca.CertPEM)
	b := brokertest.Run(t,
		broker.WithDataDir(dir),
		broker.WithProperty("listeners", "SASL_SSL://127.0.0.1:0"),
		broker.WithProperty("ssl.keystore.certificate.chain", string(srv.CertPEM)),
		broker.WithProperty("ssl.keystore.key", string(srv.KeyPEM)),
		broker.WithProperty("authorizer.class.name", "idem"),
		broker.WithProperty("super.users", "User:root"),
	)
	conn := func(user, pass string) []string {
		return []string{"-X", "brokers=" + b.ListenerAddr("SASL_SSL"), "-X", "security.protocol=SASL_SSL",
			"-X", "sasl.mechanism=SCRAM-SHA-512", "-X", "sasl.username=" + user, "-X", "sasl.password=" + pass,
			"-X", "ssl.ca.location=" + caFile}
	}
	run := func(args ...string) string {
		t.Helper()
		out, err := idemIn(t, "", args...)
		if err != nil {
			t.Fatalf("idem %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	// Refusals first.
	for name, args := range map[string][]string{
		"wrong password":          append([]string{"topic", "list"}, conn("root", "guess")...),
		"SASL without a protocol": {"topic", "list", "-X", "brokers=" + b.ListenerAddr("SASL_SSL"), "-X", "sasl.username=root"},
		"unknown mechanism":       {"topic", "list", "-X", "security.protocol=SASL_SSL", "-X", "sasl.mechanism=GSSAPI"},
		"offline while running":   {"user", "list", "--data-dir", dir},
	} {
		if out, err := idemIn(t, "", args...); err == nil {
			t.Errorf("%s: succeeded:\n%s", name, out)
		}
	}
	run(append([]string{"topic", "create", "cli-secure"}, conn("root", "root-secret")...)...)
	run(append([]string{"user", "create", "bob", "-p", "bob-secret"}, conn("root", "root-secret")...)...)
	if out := run(append([]string{"user", "list"}, conn("root", "root-secret")...)...); !strings.Contains(out, "bob") || !strings.Contains(out, "root") {
		t.Errorf("user list:\n%s", out)
	}
	// bob may not describe the topic until an ACL says so.
	if out := run(append([]string{"topic", "list"}, conn("bob", "bob-secret")...)...); strings.Contains(out, "cli-secure") {
		t.Errorf("bob sees the topic without an ACL:\n%s", out)
	}
	run(append([]string{"acl", "create", "--allow-principal", "User:bob", "--operation", "describe", "--topic", "cli-secure"}, conn("root", "root-secret")...)...)
	if out := run(append([]string{"acl", "list", "--principal", "User:bob"}, conn("root", "root-secret")...)...); !strings.Contains(out, "cli-secure") || !strings.Contains(out, "DESCRIBE") {
		t.Errorf("acl list:\n%s", out)
	}
	if out := run(append([]string{"topic", "list"}, conn("bob", "bob-secret")...)...); !strings.Contains(out, "cli-secure") {
		t.Errorf("bob does not see the topic with DESCRIBE:\n%s", out)
	}
	if _, err := idemIn(t, "", append([]string{"acl", "delete"}, conn("root", "root-secret")...)...); err == nil {
		t.Error("acl delete without a filter deleted everything")
	}
	if out := run(append([]string{"acl", "delete", "--principal", "User:bob"}, conn("root", "root-secret")...)...); !strings.Contains(out, "cli-secure") {
		t.Errorf("acl delete:\n%s", out)
	}
	// idem bench takes the same security properties.
	secure := conn("root", "root-secret")[2:] // without brokers=
	if out, err := idemIn(t, "", append([]string{"bench", "--brokers", b.ListenerAddr("SASL_SSL"), "-X", "client.id=x"}, secure...)...); err == nil {
		t.Errorf("bench accepted a property that is not a security one:\n%s", out)
	}
	if out := run(append([]string{"bench", "--brokers", b.ListenerAddr("SASL_SSL"), "--records-100", "500", "--records-1k", "200",
		"--rates", "200", "--latency-duration", "300ms"}, secure...)...); !strings.Contains(out, "1 KiB") && !strings.Contains(out, "1KiB") && !strings.Contains(out, "MB/s") {
		t.Errorf("bench over SASL_SSL:\n%s", out)
	}
	run(append([]string{"user", "delete", "bob"}, conn("root", "root-secret")...)...)
	if _, err := idemIn(t, "", append([]string{"topic", "list"}, conn("bob", "bob-secret")...)...); err == nil {
		t.Error("a deleted user still logs in")
	}
}
