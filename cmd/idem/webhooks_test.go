package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/testkit"
)

// lockedBuffer collects a running command's output.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// idem runs one command of the CLI in-process and returns its output.
func runIdem(t *testing.T, args ...string) string {
	t.Helper()
	var out lockedBuffer
	cmd := newRootCmd()
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	if err := cmd.ExecuteContext(testkit.Context(t, 30*time.Second)); err != nil {
		t.Fatalf("idem %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// idemBackground starts a long-running command (serve, listen) and stops
// it when the test ends.
func idemBackground(t *testing.T, args ...string) *lockedBuffer {
	t.Helper()
	var out lockedBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	cmd := newRootCmd()
	cmd.SetArgs(args)
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("idem %s: %v\n%s", strings.Join(args, " "), err, out.String())
		}
	})
	return &out
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestWebhooksCommandsEndToEnd drives the whole CLI: an endpoint added with
// endpoint add, a dispatcher started with serve, the local receiver started
// with listen, then the attempt log, the admin API, /metrics, replay,
// disable and rotate-secret.
func TestWebhooksCommandsEndToEnd(t *testing.T) {
	b := brokertest.Run(t, broker.WithTopics("events"))
	store := "sqlite:" + filepath.Join(t.TempDir(), "wh.db")
	listenAddr, adminAddr := freeAddr(t), freeAddr(t)

	var added struct{ Secret string }
	out := runIdem(t, "webhooks", "endpoint", "add", "--store", store, "--id", "local", "--url", "http://"+listenAddr+"/hook", "--events", "order.created", "--json")
	if err := json.Unmarshal([]byte(out), &added); err != nil || !strings.HasPrefix(added.Secret, "whsec_") {
		t.Fatalf("endpoint add: %v\n%s", err, out)
	}
	listen := idemBackground(t, "webhooks", "listen", "--addr", listenAddr, "--secret", added.Secret)
	idemBackground(t, "webhooks", "serve", "--store", store, "--brokers", b.Addr(), "--topic", "events",
		"--admin-addr", adminAddr, "--retry-schedule", "100ms,200ms")

	cl := b.Client(t)
	rec := &kgo.Record{Topic: "events", Value: []byte(`{"type":"order.created","data":{"id":42}}`),
		Headers: []kgo.RecordHeader{{Key: "idempotency-key", Value: []byte("order-42")}}}
	other := &kgo.Record{Topic: "events", Value: []byte(`{"type":"order.shipped"}`)}
	if err := cl.ProduceSync(testkit.Context(t, 10*time.Second), rec, other).FirstErr(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, "listen printing the verified delivery", func() bool {
		return strings.Contains(listen.String(), "order-42  order.created        verified")
	})
	if strings.Contains(listen.String(), "order.shipped") {
		t.Fatal("an event type the endpoint did not subscribe to was delivered")
	}
	testkit.Eventually(t, 10*time.Second, "the attempt logged", func() bool {
		return strings.Contains(runIdem(t, "webhooks", "attempts", "--store", store, "--endpoint", "local"), "succeeded")
	})
	if out := runIdem(t, "webhooks", "endpoint", "list", "--store", store); !strings.Contains(out, "local") || !strings.Contains(out, "order.created") {
		t.Fatalf("endpoint list:\n%s", out)
	}
	if out := runIdem(t, "webhooks", "deliveries", "--store", store, "--status", "succeeded"); !strings.Contains(out, "order-42") {
		t.Fatalf("deliveries:\n%s", out)
	}

	// The admin API and /metrics of serve.
	resp, err := http.Get("http://" + adminAddr + "/v1/webhooks/endpoints/local")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"id": "local"`) || strings.Contains(string(body), added.Secret) {
		t.Fatalf("admin API: %d %s", resp.StatusCode, body)
	}
	resp, err = http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `idem_webhook_deliveries_total{outcome="succeeded"} 1`) {
		t.Fatalf("metrics:\n%s", body)
	}

	// Replay: the receiver sees the same webhook-id again.
	if out := runIdem(t, "webhooks", "replay", "--store", store, "--message", "order-42"); !strings.Contains(out, "1 deliveries to replay") {
		t.Fatalf("replay: %s", out)
	}
	testkit.Eventually(t, 20*time.Second, "the replayed delivery", func() bool {
		return strings.Count(listen.String(), "order-42  order.created        verified") == 2
	})

	// Rotate: deliveries still verify with the old secret meanwhile.
	if out := runIdem(t, "webhooks", "endpoint", "rotate-secret", "--store", store, "local"); !strings.Contains(out, "whsec_") {
		t.Fatalf("rotate-secret: %s", out)
	}
	runIdem(t, "webhooks", "endpoint", "disable", "--store", store, "local", "--reason", "deploying")
	if out := runIdem(t, "webhooks", "endpoint", "list", "--store", store); !strings.Contains(out, "deploying") {
		t.Fatalf("endpoint list after disable:\n%s", out)
	}
	runIdem(t, "webhooks", "endpoint", "enable", "--store", store, "local")
	time.Sleep(1100 * time.Millisecond) // serve reloads endpoints every second
	rec.Headers[0].Value = []byte("order-43")
	if err := cl.ProduceSync(testkit.Context(t, 10*time.Second), rec).FirstErr(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "a delivery after the rotation, verified with the old secret", func() bool {
		return strings.Contains(listen.String(), "order-43  order.created        verified")
	})
}

func TestWebhooksCommandsRefuseBadInput(t *testing.T) {
	store := "sqlite:" + filepath.Join(t.TempDir(), "wh.db")
	for _, args := range [][]string{
		{"webhooks", "endpoint", "list"},
		{"webhooks", "endpoint", "list", "--store", "mysql://x"},
		{"webhooks", "endpoint", "add", "--store", store, "--url", "not a url"},
		{"webhooks", "endpoint", "add", "--store", store, "--url", "http://x", "--secret", "whsec_tooshort"},
		{"webhooks", "endpoint", "disable", "--store", store, "nope"},
		{"webhooks", "replay", "--store", store},
		{"webhooks", "replay", "--store", store, "--endpoint", "x"},
		{"webhooks", "attempts", "--store", store, "--since", "last week"},
		{"webhooks", "serve", "--store", store},
		{"webhooks", "serve", "--store", store, "--topic", "t", "--retry-schedule", "1s,soon"},
		{"webhooks", "listen"},
		{"webhooks", "listen", "--secret", "whsec_x"},
	} {
		var out bytes.Buffer
		cmd := newRootCmd()
		cmd.SetArgs(args)
		cmd.SetOut(&out)
		cmd.SetErr(&out)
		if err := cmd.ExecuteContext(testkit.Context(t, 10*time.Second)); err == nil {
			t.Errorf("idem %s succeeded:\n%s", strings.Join(args, " "), out.String())
		} else {
			t.Logf("idem %s: %v", strings.Join(args, " "), err)
		}
	}
}
