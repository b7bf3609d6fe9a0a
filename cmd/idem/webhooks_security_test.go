package main

import (
	"crypto/tls"
	"crypto/x509/pkix"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/testkit"
)

// TestWebhooksServeOverSASLSSL: `idem webhooks serve -X …` consumes from a
// broker whose only way in is SASL_SSL with SCRAM, and delivers; a wrong
// password stops serve with the broker's refusal instead of a silent hang.
func TestWebhooksServeOverSASLSSL(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	if _, err := idemIn(t, "hook-secret\n", "user", "create", "hooks", "--data-dir", dir); err != nil {
		t.Fatalf("offline user create: %v", err)
	}
	ca := testkit.NewCA(t, "webhooks test CA")
	srv := ca.Issue(t, pkix.Name{CommonName: "localhost"})
	caFile := testkit.WriteFile(t, t.TempDir(), "ca.pem", ca.CertPEM)
	b := brokertest.Run(t,
		broker.WithDataDir(dir),
		broker.WithTopics("events"),
		broker.WithProperty("listeners", "SASL_SSL://127.0.0.1:0"),
		broker.WithProperty("ssl.keystore.certificate.chain", string(srv.CertPEM)),
		broker.WithProperty("ssl.keystore.key", string(srv.KeyPEM)),
		broker.WithProperty("authorizer.class.name", "idem"),
		broker.WithProperty("super.users", "User:hooks"),
	)
	addr := b.ListenerAddr("SASL_SSL")
	secure := func(pass string) []string {
		return []string{"-X", "security.protocol=SASL_SSL", "-X", "sasl.mechanism=SCRAM-SHA-512",
			"-X", "sasl.username=hooks", "-X", "sasl.password=" + pass, "-X", "ssl.ca.location=" + caFile}
	}

	// A wrong password: serve ends with the refusal.
	badStore := "sqlite:" + filepath.Join(t.TempDir(), "bad.db")
	start := time.Now()
	_, errOut, err := idem(t, "", append([]string{"webhooks", "serve", "--store", badStore, "--brokers", addr,
		"--topic", "events", "--admin-addr", ""}, secure("guess")...)...)
	if err == nil || !strings.Contains(errOut, "SASL_AUTHENTICATION_FAILED") {
		t.Fatalf("serve with a wrong password: err %v after %v, stderr:\n%s", err, time.Since(start), errOut)
	}

	store := "sqlite:" + filepath.Join(t.TempDir(), "wh.db")
	listenAddr := freeAddr(t)
	var added struct{ Secret string }
	out := runIdem(t, "webhooks", "endpoint", "add", "--store", store, "--id", "local", "--url", "http://"+listenAddr+"/hook", "--json")
	if err := json.Unmarshal([]byte(out), &added); err != nil || !strings.HasPrefix(added.Secret, "whsec_") {
		t.Fatalf("endpoint add: %v\n%s", err, out)
	}
	listen := idemBackground(t, "webhooks", "listen", "--addr", listenAddr, "--secret", added.Secret)
	idemBackground(t, append([]string{"webhooks", "serve", "--store", store, "--brokers", addr, "--topic", "events",
		"--admin-addr", "", "--retry-schedule", "100ms"}, secure("hook-secret")...)...)

	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DialTLSConfig(&tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}),
		kgo.SASL(scram.Auth{User: "hooks", Pass: "hook-secret"}.AsSha512Mechanism()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	rec := &kgo.Record{Topic: "events", Value: []byte(`{"type":"order.created","data":{"id":7}}`),
		Headers: []kgo.RecordHeader{{Key: "idempotency-key", Value: []byte("order-7")}}}
	if err := cl.ProduceSync(testkit.Context(t, 10*time.Second), rec).FirstErr(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, "the delivery consumed over SASL_SSL and verified", func() bool {
		return strings.Contains(listen.String(), "order-7  order.created        verified")
	})
}
