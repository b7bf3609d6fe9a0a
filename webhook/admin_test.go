package webhook_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/idem-dev/idem/internal/testkit"
	"github.com/idem-dev/idem/webhook"
	"github.com/idem-dev/idem/webhook/webhookprom"
)

func call(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAdminAPIAndMetrics(t *testing.T) {
	eachStore(t, func(t *testing.T, kind string) {
		reg := prometheus.NewRegistry()
		var m *webhookprom.Metrics
		r := newRig(t, kind, withConfig(func(c *webhook.Config) {
			c.Retries = []time.Duration{50 * time.Millisecond}
			c.OnAttempt = func(a webhook.AttemptResult) { m.Observe(a) }
		}))
		var err error
		if m, err = webhookprom.New(reg, r.store); err != nil {
			t.Fatal(err)
		}
		api := httptest.NewServer(webhook.AdminHandler(r.store, nil))
		defer api.Close()
		s := newSink(t)
		s.respond = func(rc receipt, _ int) (int, http.Header, time.Duration) {
			if rc.endpoint == "broken" {
				return 500, nil, 0
			}
			return 204, nil, 0
		}

		code, body := call(t, "POST", api.URL+"/v1/webhooks/endpoints", `{"id":"good","url":"`+s.srv.URL+`/good","event_types":["a"]}`)
		var added struct {
			Endpoint webhook.EndpointView
			Secret   string
		}
		if code != 201 || json.Unmarshal([]byte(body), &added) != nil || !strings.HasPrefix(added.Secret, "whsec_") || added.Endpoint.Secrets != 1 {
			t.Fatalf("add: %d %s", code, body)
		}
		if strings.Contains(body, added.Secret) && strings.Count(body, added.Secret) != 1 {
			t.Fatal("the secret appears in the endpoint view")
		}
		s.url("good", added.Secret, nil)
		if code, body := call(t, "POST", api.URL+"/v1/webhooks/endpoints", `{"id":"broken","url":"`+s.srv.URL+`/broken"}`); code != 201 {
			t.Fatalf("add broken: %d %s", code, body)
		}
		for _, c := range []struct {
			method, path, body string
			status             int
		}{
			{"POST", "/v1/webhooks/endpoints", `{"url":"ftp://x"}`, 400},
			{"POST", "/v1/webhooks/endpoints", `{"url":"http://x","secret":"whsec_short"}`, 400},
			{"POST", "/v1/webhooks/endpoints", `{"url":"http://x","bogus":1}`, 400},
			{"POST", "/v1/webhooks/endpoints", `{"id":"good","url":"http://x"}`, 409},
			{"GET", "/v1/webhooks/endpoints/nope", "", 404},
			{"POST", "/v1/webhooks/endpoints/nope/disable", "", 404},
			{"POST", "/v1/webhooks/replay", `{}`, 400},
			{"POST", "/v1/webhooks/replay", `{"endpoint_id":"good"}`, 400},
			{"GET", "/v1/webhooks/attempts?since=yesterday", "", 400},
			{"GET", "/v1/webhooks/attempts?limit=-1", "", 400},
		} {
			code, body := call(t, c.method, api.URL+c.path, c.body)
			if code != c.status || !strings.Contains(body, `"detail"`) {
				t.Errorf("%s %s %s: %d %s, want %d problem", c.method, c.path, c.body, code, body, c.status)
			}
		}
		r.produce(event{typ: "a", idemKey: "m1"}, event{typ: "b", idemKey: "m2"})
		testkit.Eventually(t, 20*time.Second, "m1 at good, both dead at broken", func() bool {
			return len(s.succeeded("good")) == 1 && len(r.deliveries(webhook.DeliveryFilter{EndpointID: "broken", Status: webhook.StatusDead})) == 2
		})
		if !s.receipts("good")[0].verified {
			t.Fatal("delivery to good does not verify with the secret the API returned")
		}
		code, body = call(t, "GET", api.URL+"/v1/webhooks/attempts?endpoint=broken&outcome=dead", "")
		var atts []webhook.Attempt
		if code != 200 || json.Unmarshal([]byte(body), &atts) != nil || len(atts) != 2 || atts[0].StatusCode != 500 {
			t.Fatalf("attempts: %d %s", code, body)
		}
		code, body = call(t, "GET", api.URL+"/v1/webhooks/deliveries?endpoint=broken&status=dead", "")
		if code != 200 || strings.Count(body, `"status": "dead"`) != 2 {
			t.Fatalf("deliveries: %d %s", code, body)
		}
		if n := counterValue(t, reg, "idem_webhook_deliveries_total", "dead"); n != 2 {
			t.Errorf("dead-lettered counted %v", n)
		}
		if n := counterValue(t, reg, "idem_webhook_deliveries_total", "succeeded"); n != 1 {
			t.Errorf("succeeded counted %v", n)
		}
		if code, body := call(t, "POST", api.URL+"/v1/webhooks/endpoints/broken/disable", `{"reason":"maintenance"}`); code != 200 || !strings.Contains(body, "maintenance") {
			t.Fatalf("disable: %d %s", code, body)
		}
		text := gather(t, reg)
		for _, want := range []string{`idem_webhook_dead_lettered{endpoint="broken"} 2`, `idem_webhook_endpoints 2`, `idem_webhook_endpoints_disabled 1`,
			`idem_webhook_attempt_duration_seconds_count{outcome="succeeded"} 1`} {
			if !strings.Contains(text, want) {
				t.Errorf("metrics lack %s:\n%s", want, text)
			}
		}
		// Replay the dead letters to the re-enabled endpoint.
		s.respond = nil
		if code, _ := call(t, "POST", api.URL+"/v1/webhooks/endpoints/broken/enable", ""); code != 200 {
			t.Fatal("enable")
		}
		code, body = call(t, "POST", api.URL+"/v1/webhooks/replay", `{"endpoint_id":"broken","dead_only":true}`)
		if code != 200 || !strings.Contains(body, `"replayed": 2`) {
			t.Fatalf("replay: %d %s", code, body)
		}
		settled := func() bool { return len(r.deliveries(webhook.DeliveryFilter{Status: webhook.StatusPending})) == 0 }
		testkit.Eventually(t, 20*time.Second, "replayed dead letters delivered", func() bool { return len(s.succeeded("broken")) == 2 && settled() })
		// Replay one message everywhere: the receiver sees the same id again.
		code, body = call(t, "POST", api.URL+"/v1/webhooks/replay", `{"message_id":"m1"}`)
		if code != 200 || !strings.Contains(body, `"replayed": 2`) {
			t.Fatalf("replay message: %d %s", code, body)
		}
		testkit.Eventually(t, 20*time.Second, "m1 again at both", func() bool {
			return len(s.succeeded("good")) == 2 && len(s.succeeded("broken")) == 3 && settled()
		})
		if ids := s.succeeded("good"); ids[0] != ids[1] {
			t.Fatalf("replay changed the webhook-id: %v", ids)
		}
		code, body = call(t, "POST", api.URL+"/v1/webhooks/replay", `{"endpoint_id":"good","since":"1h"}`)
		if code != 200 || !strings.Contains(body, `"replayed": 1`) {
			t.Fatalf("replay since: %d %s", code, body)
		}
		// Rotation over the API: a new secret, the old one kept for the overlap.
		code, body = call(t, "POST", api.URL+"/v1/webhooks/endpoints/good/rotate-secret", `{"overlap":"2h"}`)
		var rotated struct{ Secret string }
		if code != 200 || json.Unmarshal([]byte(body), &rotated) != nil || !strings.HasPrefix(rotated.Secret, "whsec_") || rotated.Secret == added.Secret {
			t.Fatalf("rotate-secret: %d %s", code, body)
		}
		if code, body := call(t, "GET", api.URL+"/v1/webhooks/endpoints/good", ""); code != 200 || !strings.Contains(body, `"secrets": 2`) {
			t.Fatalf("after rotation: %d %s", code, body)
		}
		for _, c := range []struct{ path, body string }{
			{"/v1/webhooks/endpoints/nope/rotate-secret", ``},
			{"/v1/webhooks/endpoints/good/rotate-secret", `{"secret":"whsec_short"}`},
			{"/v1/webhooks/endpoints/good/rotate-secret", `{"overlap":"a while"}`},
		} {
			if code, body := call(t, "POST", api.URL+c.path, c.body); code < 400 || code == 500 {
				t.Errorf("POST %s %s: %d %s, want a 4xx problem", c.path, c.body, code, body)
			}
		}
	})
}

func counterValue(t *testing.T, reg *prometheus.Registry, name, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func gather(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	srv := httptest.NewServer(promhttpHandler(reg))
	defer srv.Close()
	_, body := call(t, "GET", srv.URL, "")
	return body
}

// TestRotationSignsWithBothSecretsDuringTheOverlap: after a rotation every
// request carries a signature by the new and by the old secret, so a
// receiver holding either verifies it; after the overlap only the new one
// signs.
func TestRotationSignsWithBothSecretsDuringTheOverlap(t *testing.T) {
	r := newRig(t, "sqlite", withFakeClock())
	s := newSink(t)
	oldSecret := webhook.NewSecret()
	r.addEndpoint(webhook.EndpointSpec{ID: "old", URL: s.url("old", oldSecret, r.clock.Now), Secret: oldSecret})
	newSecret, err := webhook.RotateSecret(context.Background(), r.store, "old", "", time.Hour, r.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	oldOnly, _ := webhook.NewVerifier(oldSecret)
	newOnly, _ := webhook.NewVerifier(newSecret)
	time.Sleep(1200 * time.Millisecond) // the dispatcher reloads endpoints every second
	r.produce(event{typ: "a", idemKey: "during"})
	testkit.Eventually(t, 20*time.Second, "delivery during the overlap", func() bool { return len(s.receipts("old")) == 1 })
	rc := s.receipts("old")[0]
	if n := len(strings.Fields(rc.sigHeader)); n != 2 {
		t.Fatalf("%d signatures during the overlap, want 2: %q", n, rc.sigHeader)
	}
	for _, v := range []*webhook.Verifier{oldOnly, newOnly} {
		v.Now = r.clock.Now
		h := http.Header{}
		h.Set(webhook.HeaderID, rc.id)
		h.Set(webhook.HeaderTimestamp, rc.signedAt)
		h.Set(webhook.HeaderSignature, rc.sigHeader)
		if _, err := v.Verify(h, event{typ: "a"}.payload()); err != nil {
			t.Errorf("a receiver with one of the secrets refuses: %v", err)
		}
	}
	r.clock.Advance(time.Hour)
	r.produce(event{typ: "a", idemKey: "after"})
	testkit.Eventually(t, 20*time.Second, "delivery after the overlap", func() bool { return len(s.receipts("old")) == 2 })
	if rc := s.receipts("old")[1]; len(strings.Fields(rc.sigHeader)) != 1 {
		t.Fatalf("signatures after the overlap: %q", rc.sigHeader)
	}
	e, _ := r.store.Endpoint(context.Background(), "old")
	if len(e.Secrets) != 2 || e.Secrets[0].Key != newSecret || e.Secrets[1].ExpiresAt.IsZero() {
		t.Fatalf("secrets after rotation: %+v", e.Secrets)
	}
}

func promhttpHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
}
