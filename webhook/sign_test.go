package webhook_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/idem-dev/idem/internal/testkit"
	"github.com/idem-dev/idem/webhook"
)

// The Standard Webhooks reference vectors (libraries/*/webhook*_test of
// github.com/standard-webhooks/standard-webhooks): the same inputs must give
// exactly these signatures in every implementation.
const (
	refSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	refMsgID     = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	refTimestamp = 1614265330
	refPayload   = `{"test": 2432232314}`
	refSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
	refPrivate   = "whsk_VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk="
	refSigV1a    = "v1a,tQ9V2XOqn7jL/DQenEFpqIugdBVtiMmER5mhSkXBNwM0mkATuDe6KYYUuxqtaiHeYGb7KaaBRdM5WqyeFiL8Ag=="
)

func mustKey(t testing.TB, s string) webhook.Key {
	t.Helper()
	k, err := webhook.ParseKey(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSignMatchesTheReferenceVectors(t *testing.T) {
	for _, c := range []struct{ name, key, want string }{
		{"v1 with prefix", refSecret, refSignature},
		{"v1 without prefix", strings.TrimPrefix(refSecret, "whsec_"), refSignature},
		{"v1a ed25519", refPrivate, refSigV1a},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := webhook.Sign(refMsgID, time.Unix(refTimestamp, 0), []byte(refPayload), mustKey(t, c.key))
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Fatalf("signature %s, want the reference %s", got, c.want)
			}
		})
	}
}

// headersAt signs the reference payload at ts with keys.
func headersAt(t testing.TB, ts time.Time, payload string, keys ...webhook.Key) http.Header {
	t.Helper()
	h := http.Header{}
	if err := webhook.SetHeaders(h, refMsgID, ts, []byte(payload), keys...); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestVerifyAcceptsAndRefuses(t *testing.T) {
	now := time.Unix(refTimestamp, 0)
	clock := func() time.Time { return now }
	secret := mustKey(t, refSecret)
	other := mustKey(t, webhook.NewSecret())
	priv := mustKey(t, refPrivate)
	pub, _ := priv.Public()
	v := &webhook.Verifier{Keys: []webhook.Key{secret}, Now: clock}
	type tc struct {
		name    string
		v       *webhook.Verifier
		headers func() http.Header
		payload string
		want    error // nil: accepted
		status  int
	}
	good := func() http.Header { return headersAt(t, now, refPayload, secret) }
	cases := []tc{
		{name: "valid", v: v, headers: good, payload: refPayload},
		{name: "reference signature", v: v, payload: refPayload, headers: func() http.Header {
			return http.Header{"Webhook-Id": {refMsgID}, "Webhook-Timestamp": {strconv.Itoa(refTimestamp)}, "Webhook-Signature": {refSignature}}
		}},
		{name: "tampered payload", v: v, headers: good, payload: `{"test": 2432232315}`, want: webhook.ErrNoValidSignature, status: 401},
		{name: "payload with a trailing newline", v: v, headers: good, payload: refPayload + "\n", want: webhook.ErrNoValidSignature, status: 401},
		{name: "wrong secret", v: &webhook.Verifier{Keys: []webhook.Key{other}, Now: clock}, headers: good, payload: refPayload, want: webhook.ErrNoValidSignature, status: 401},
		{name: "tampered id", v: v, payload: refPayload, headers: func() http.Header {
			h := good()
			h.Set(webhook.HeaderID, "msg_other")
			return h
		}, want: webhook.ErrNoValidSignature, status: 401},
		{name: "tampered timestamp", v: v, payload: refPayload, headers: func() http.Header {
			h := good()
			h.Set(webhook.HeaderTimestamp, strconv.Itoa(refTimestamp+1))
			return h
		}, want: webhook.ErrNoValidSignature, status: 401},
		{name: "stale timestamp", v: v, payload: refPayload, headers: func() http.Header {
			return headersAt(t, now.Add(-webhook.DefaultTolerance-time.Second), refPayload, secret)
		}, want: webhook.ErrTimestampOutOfTolerance, status: 401},
		{name: "future timestamp", v: v, payload: refPayload, headers: func() http.Header {
			return headersAt(t, now.Add(webhook.DefaultTolerance+time.Second), refPayload, secret)
		}, want: webhook.ErrTimestampOutOfTolerance, status: 401},
		{name: "at the tolerance edge", v: v, payload: refPayload, headers: func() http.Header {
			return headersAt(t, now.Add(-webhook.DefaultTolerance), refPayload, secret)
		}},
		{name: "missing id", v: v, payload: refPayload, headers: func() http.Header {
			h := good()
			h.Del(webhook.HeaderID)
			return h
		}, want: webhook.ErrMissingHeaders, status: 400},
		{name: "missing timestamp", v: v, payload: refPayload, headers: func() http.Header {
			h := good()
			h.Del(webhook.HeaderTimestamp)
			return h
		}, want: webhook.ErrMissingHeaders, status: 400},
		{name: "missing signature", v: v, payload: refPayload, headers: func() http.Header {
			h := good()
			h.Del(webhook.HeaderSignature)
			return h
		}, want: webhook.ErrMissingHeaders, status: 400},
		{name: "timestamp not a number", v: v, payload: refPayload, headers: func() http.Header {
			h := good()
			h.Set(webhook.HeaderTimestamp, "hello")
			return h
		}, want: webhook.ErrBadTimestamp, status: 400},
		{name: "partial signature", v: v, payload: refPayload, headers: func() http.Header {
			h := good()
			h.Set(webhook.HeaderSignature, "v1,")
			return h
		}, want: webhook.ErrNoValidSignature, status: 401},
		{name: "truncated signature", v: v, payload: refPayload, headers: func() http.Header {
			h := good()
			h.Set(webhook.HeaderSignature, h.Get(webhook.HeaderSignature)[:8])
			return h
		}, want: webhook.ErrNoValidSignature, status: 401},
		{name: "right bytes under another scheme", v: v, payload: refPayload, headers: func() http.Header {
			h := good()
			h.Set(webhook.HeaderSignature, "v2"+strings.TrimPrefix(h.Get(webhook.HeaderSignature), "v1"))
			return h
		}, want: webhook.ErrNoValidSignature, status: 401},
		{name: "multi signature with one valid", v: v, payload: refPayload, headers: func() http.Header {
			h := good()
			h.Set(webhook.HeaderSignature, strings.Join([]string{"v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=",
				"v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=", h.Get(webhook.HeaderSignature), "v1,garbage"}, " "))
			return h
		}},
		{name: "rotation: sent with old and new, receiver has the new one", v: &webhook.Verifier{Keys: []webhook.Key{other}, Now: clock},
			payload: refPayload, headers: func() http.Header { return headersAt(t, now, refPayload, secret, other) }},
		{name: "rotation: receiver holds both keys", v: &webhook.Verifier{Keys: []webhook.Key{other, secret}, Now: clock},
			payload: refPayload, headers: good},
		{name: "v1a with the public key", v: &webhook.Verifier{Keys: []webhook.Key{pub}, Now: clock},
			payload: refPayload, headers: func() http.Header { return headersAt(t, now, refPayload, priv) }},
		{name: "v1a tampered", v: &webhook.Verifier{Keys: []webhook.Key{pub}, Now: clock},
			payload: refPayload + " ", headers: func() http.Header { return headersAt(t, now, refPayload, priv) },
			want: webhook.ErrNoValidSignature, status: 401},
		{name: "v1 signature, v1a key", v: &webhook.Verifier{Keys: []webhook.Key{pub}, Now: clock},
			payload: refPayload, headers: good, want: webhook.ErrNoValidSignature, status: 401},
		{name: "tolerance off accepts an old timestamp", v: &webhook.Verifier{Keys: []webhook.Key{secret}, Now: clock, Tolerance: -1},
			payload: refPayload, headers: func() http.Header { return headersAt(t, now.Add(-24*time.Hour), refPayload, secret) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.v.Verify(c.headers(), []byte(c.payload))
			if c.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if got.ID != refMsgID {
					t.Fatalf("verified id %q", got.ID)
				}
				return
			}
			if !errors.Is(err, c.want) {
				t.Fatalf("err %v, want %v", err, c.want)
			}
			if s := webhook.StatusOf(err); s != c.status {
				t.Fatalf("status %d, want %d", s, c.status)
			}
		})
	}
}

func TestParseKeyRefusesBadKeys(t *testing.T) {
	for _, s := range []string{"", "whsec_", "whsec_not base64!", "whsec_" + strings.Repeat("A", 8), "whsk_AAAA", "whpk_AAAA", "whsk_%%%"} {
		if _, err := webhook.ParseKey(s); err == nil {
			t.Errorf("ParseKey(%q) accepted", s)
		}
	}
	k := mustKey(t, webhook.NewSecret())
	if again := mustKey(t, k.String()); again.String() != k.String() {
		t.Fatal("a secret does not survive String and ParseKey")
	}
	priv, pub := webhook.NewSigningKey()
	pk, _ := mustKey(t, priv).Public()
	if pk.String() != pub {
		t.Fatalf("public key %s, want %s", pk.String(), pub)
	}
	if _, err := webhook.Sign("a.b", time.Now(), nil, k); err == nil {
		t.Fatal("signed an id with a '.'")
	}
	if _, err := webhook.Sign("id", time.Now(), nil, mustKey(t, pub)); err == nil {
		t.Fatal("signed with a public key")
	}
	if _, err := webhook.NewVerifier(); err == nil {
		t.Fatal("a verifier without keys")
	}
}

// nodeCrosscheck runs testdata/crosscheck.js, which uses the standardwebhooks
// npm package that .ci/run installs into testdata/standardwebhooks.
func nodeCrosscheck(t *testing.T, cases []map[string]any) []map[string]any {
	t.Helper()
	node := testkit.RequireTool(t, "node", "install the Debian package nodejs")
	if _, err := os.Stat(filepath.Join("testdata", "standardwebhooks", "node_modules", "standardwebhooks")); err != nil {
		testkit.Unavailable(t, "standardwebhooks npm package missing (npm install --prefix webhook/testdata/standardwebhooks standardwebhooks@1.1.1): %v", err)
	}
	in, _ := json.Marshal(cases)
	cmd := exec.Command(node, "crosscheck.js")
	cmd.Dir = "testdata"
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, stderr.String())
	}
	var res []map[string]any
	if err := json.Unmarshal(out, &res); err != nil || len(res) != len(cases) {
		t.Fatalf("node answered %s (%v)", out, err)
	}
	return res
}

// TestSignaturesAgreeWithTheStandardWebhooksNPMPackage checks both
// directions against an independent implementation: what node signs we
// verify, what we sign node verifies, and what we refuse node refuses.
func TestSignaturesAgreeWithTheStandardWebhooksNPMPackage(t *testing.T) {
	now := time.Now()
	secret, other := webhook.NewSecret(), webhook.NewSecret()
	payloads := []string{refPayload, `{"type":"invoice.paid","timestamp":"2026-12-02T10:00:00Z","data":{"id":"in_1","amount":4200,"note":"ünïcödé ✓"}}`, ``, "not json"}
	var cases []map[string]any
	for i, p := range payloads {
		cases = append(cases, map[string]any{"op": "sign", "secret": secret, "id": "msg_" + strconv.Itoa(i), "timestamp": now.Unix(), "payload": p})
	}
	type ours struct {
		payload string
		headers http.Header
		want    bool
	}
	var signed []ours
	for i, p := range payloads[:2] { // the npm package's verify also parses the payload as JSON
		h := http.Header{}
		if err := webhook.SetHeaders(h, "msg_go_"+strconv.Itoa(i), now, []byte(p), mustKey(t, other), mustKey(t, secret)); err != nil {
			t.Fatal(err)
		}
		signed = append(signed, ours{p, h, true}, ours{p + "x", h, false})
	}
	stale := http.Header{}
	webhook.SetHeaders(stale, "msg_stale", now.Add(-10*time.Minute), []byte(refPayload), mustKey(t, secret))
	signed = append(signed, ours{refPayload, stale, false})
	for _, s := range signed {
		hs := map[string]string{}
		for k := range s.headers {
			hs[strings.ToLower(k)] = s.headers.Get(k)
		}
		cases = append(cases, map[string]any{"op": "verify", "secret": secret, "payload": s.payload, "headers": hs})
	}
	res := nodeCrosscheck(t, cases)
	v, _ := webhook.NewVerifier(secret)
	for i, p := range payloads {
		sig, _ := res[i]["signature"].(string)
		h := http.Header{}
		h.Set(webhook.HeaderID, "msg_"+strconv.Itoa(i))
		h.Set(webhook.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
		h.Set(webhook.HeaderSignature, sig)
		if _, err := v.Verify(h, []byte(p)); err != nil {
			t.Errorf("payload %q: node's signature %q refused: %v", p, sig, err)
		}
		want, _ := webhook.Sign("msg_"+strconv.Itoa(i), now, []byte(p), mustKey(t, secret))
		if sig != want {
			t.Errorf("payload %q: node signs %q, we sign %q", p, sig, want)
		}
	}
	for j, s := range signed {
		r := res[len(payloads)+j]
		if ok, _ := r["ok"].(bool); ok != s.want {
			t.Errorf("case %d (payload %q): node says ok=%v (%v), want %v", j, s.payload, ok, r["error"], s.want)
		}
		_, err := v.Verify(s.headers, []byte(s.payload))
		if (err == nil) != s.want {
			t.Errorf("case %d: we say %v, node %v", j, err, r["ok"])
		}
	}
}
