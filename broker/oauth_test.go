package broker_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/testkit"
)

// jwks writes a JWKS file with key's public half as kid.
func jwks(t *testing.T, dir, kid string, key *rsa.PrivateKey) string {
	t.Helper()
	b64 := base64.RawURLEncoding.EncodeToString
	set := map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
		"n": b64(key.N.Bytes()), "e": b64(big.NewInt(int64(key.E)).Bytes()),
	}}}
	raw, _ := json.Marshal(set)
	return testkit.WriteFile(t, dir, "jwks.json", raw)
}

func signed(t *testing.T, key *rsa.PrivateKey, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestOAuthBearerWithJWKS(t *testing.T) {
	dir := t.TempDir()
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	forger, _ := rsa.GenerateKey(rand.Reader, 2048)
	b := brokertest.Run(t,
		broker.WithProperty("listeners", "SASL_PLAINTEXT://127.0.0.1:0"),
		broker.WithProperty("sasl.enabled.mechanisms", "OAUTHBEARER"),
		broker.WithProperty("sasl.oauthbearer.jwks.endpoint.url", jwks(t, dir, "k1", key)),
		broker.WithProperty("sasl.oauthbearer.expected.issuer", "https://issuer.test"),
		broker.WithProperty("sasl.oauthbearer.expected.audience", "idem"),
	)
	addr := b.ListenerAddr("SASL_PLAINTEXT")
	good := func() jwt.MapClaims {
		return jwt.MapClaims{"sub": "svc", "iss": "https://issuer.test", "aud": "idem", "exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix()}
	}
	with := func(k string, v any) jwt.MapClaims { c := good(); c[k] = v; return c }
	enc := base64.RawURLEncoding.EncodeToString
	for name, token := range map[string]string{
		"expired":        signed(t, key, "k1", with("exp", time.Now().Add(-time.Hour).Unix())),
		"wrong issuer":   signed(t, key, "k1", with("iss", "https://evil.test")),
		"wrong audience": signed(t, key, "k1", with("aud", "other")),
		"forged":         signed(t, forger, "k1", good()),
		"unknown kid":    signed(t, key, "k2", good()),
		"unsigned":       enc([]byte(`{"alg":"none"}`)) + "." + enc([]byte(fmt.Sprintf(`{"sub":"svc","exp":%d}`, time.Now().Add(time.Hour).Unix()))) + ".",
		"no sub":         signed(t, key, "k1", with("sub", "")),
	} {
		err := pingErr(t, addr, kgo.SASL(oauth.Auth{Token: token}.AsMechanism()))
		if !errors.Is(err, kerr.SaslAuthenticationFailed) || !strings.Contains(err.Error(), "invalid_token") {
			t.Errorf("%s token: %v, want SASL_AUTHENTICATION_FAILED with invalid_token", name, err)
		}
	}
	if err := pingErr(t, addr, kgo.SASL(oauth.Auth{Token: signed(t, key, "k1", good())}.AsMechanism())); err != nil {
		t.Fatalf("valid token: %v", err)
	}
}

// saslAuth authenticates nc as user with SCRAM-SHA-256 through
// SaslHandshake v1 and SaslAuthenticate v1 and returns the last answer.
func saslAuth(t *testing.T, nc net.Conn, user, pass string) *kmsg.SASLAuthenticateResponse {
	t.Helper()
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.SetVersion(1)
	hs.Mechanism = "SCRAM-SHA-256"
	nc.Write(frame(hs, 1))
	if r := readResponse(t, nc, hs).(*kmsg.SASLHandshakeResponse); r.ErrorCode != 0 {
		t.Fatalf("handshake: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	sess, msg, err := scram.Auth{User: user, Pass: pass}.AsSha256Mechanism().Authenticate(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	for i := int32(2); ; i++ {
		au := kmsg.NewPtrSASLAuthenticateRequest()
		au.SetVersion(1)
		au.SASLAuthBytes = msg
		nc.Write(frame(au, i))
		r := readResponse(t, nc, au).(*kmsg.SASLAuthenticateResponse)
		if r.ErrorCode != 0 {
			return r
		}
		done, next, err := sess.Challenge(r.SASLAuthBytes)
		if err != nil {
			t.Fatal(err)
		}
		if done {
			return r
		}
		msg = next
	}
}

func TestReauthentication(t *testing.T) {
	b := saslBroker(t, broker.WithProperty("connections.max.reauth.ms", "1500"), broker.WithTopics("reauth"))
	createUser(t, b, "alice", "alice-pw", kadm.ScramSha256)
	createUser(t, b, "bob", "bob-pw", kadm.ScramSha256)
	addr := b.ListenerAddr("SASL_PLAINTEXT")
	dial := func() net.Conn {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		nc.SetDeadline(time.Now().Add(20 * time.Second))
		return nc
	}
	metadata := func(nc net.Conn) error {
		md := kmsg.NewPtrMetadataRequest()
		md.SetVersion(9)
		nc.Write(frame(md, 99))
		var size [4]byte
		if _, err := nc.Read(size[:]); err != nil {
			return err
		}
		body := make([]byte, int(size[0])<<24|int(size[1])<<16|int(size[2])<<8|int(size[3]))
		_, err := io.ReadFull(nc, body)
		return err
	}
	// The session lifetime is announced; after it, any request but a
	// re-authentication closes the connection.
	nc := dial()
	r := saslAuth(t, nc, "alice", "alice-pw")
	if r.SessionLifetimeMillis <= 0 || r.SessionLifetimeMillis > 1500 {
		t.Fatalf("session lifetime %d ms, want (0, 1500]", r.SessionLifetimeMillis)
	}
	if err := metadata(nc); err != nil {
		t.Fatalf("within the session: %v", err)
	}
	time.Sleep(1600 * time.Millisecond)
	if err := metadata(nc); err == nil {
		t.Error("a request after the session expired was served")
	}
	// Re-authenticating as the same principal extends the session; as
	// another is refused.
	nc = dial()
	saslAuth(t, nc, "alice", "alice-pw")
	if r := saslAuth(t, nc, "alice", "alice-pw"); r.ErrorCode != 0 {
		t.Fatalf("re-authentication: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	if r := saslAuth(t, nc, "bob", "bob-pw"); r.ErrorCode != kerr.SaslAuthenticationFailed.Code {
		t.Errorf("re-authentication as another principal: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	// franz-go re-authenticates by itself and keeps working past the
	// lifetime.
	cl := b.Client(t, kgo.SeedBrokers(addr), kgo.SASL(scram.Auth{User: "alice", Pass: "alice-pw"}.AsSha256Mechanism()), kgo.DefaultProduceTopic("reauth"))
	ctx := context.Background()
	for i := range 4 {
		if err := cl.ProduceSync(ctx, kgo.StringRecord(fmt.Sprint(i))).FirstErr(); err != nil {
			t.Fatalf("produce %d across re-authentications: %v", i, err)
		}
		time.Sleep(700 * time.Millisecond)
	}
}
