package broker_test

import (
	"context"
	"crypto/tls"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/idem-dev/idem/broker"
	"github.com/idem-dev/idem/broker/brokertest"
	"github.com/idem-dev/idem/internal/testkit"
)

func TestUnauthenticatedListenerOnNonLoopbackRefusesToStart(t *testing.T) {
	for _, props := range [][][2]string{
		{{"listeners", "PLAINTEXT://0.0.0.0:0"}},
		{{"listeners", "127.0.0.1:0,EXTERNAL://:0"}, {"listener.security.protocol.map", "PLAINTEXT:PLAINTEXT,EXTERNAL:PLAINTEXT"}},
	} {
		var opts []broker.Option
		for _, kv := range props {
			opts = append(opts, broker.WithProperty(kv[0], kv[1]))
		}
		b, err := broker.New(append([]broker.Option{broker.WithDataDir(t.TempDir()), broker.WithAdminAddr("")}, opts...)...)
		if err != nil {
			t.Fatal(err)
		}
		err = b.Start()
		b.Close()
		if err == nil || !strings.Contains(err.Error(), "idem.listeners.allow.unauthenticated=true") || !strings.Contains(err.Error(), "SASL_SSL") {
			t.Errorf("%v: start error %v, want a refusal that says how to allow it", props, err)
		}
	}
	// Said explicitly, it starts.
	brokertest.Run(t, broker.WithKafkaAddr("0.0.0.0:0"), broker.WithProperty("idem.listeners.allow.unauthenticated", "true"))
}

// tlsBroker starts a broker with an SSL listener whose keystore is a file
// (so it can be rotated) and returns it with the CA that signed it.
func tlsBroker(t *testing.T, extra ...broker.Option) (*brokertest.Broker, *testkit.CA, string) {
	t.Helper()
	dir := t.TempDir()
	ca := testkit.NewCA(t, "idem test CA")
	srv := ca.Issue(t, pkix.Name{CommonName: "localhost"})
	keystore := testkit.WriteFile(t, dir, "broker.pem", srv.KeyPEM, srv.CertPEM)
	b := brokertest.Run(t, append([]broker.Option{
		broker.WithProperty("listeners", "SSL://127.0.0.1:0"),
		broker.WithProperty("ssl.keystore.location", keystore),
	}, extra...)...)
	return b, ca, keystore
}

// pingFails reports whether a client with opts cannot talk to addr.
func pingErr(t *testing.T, addr string, opts ...kgo.Opt) error {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.RequestRetries(0), kgo.RetryTimeout(time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return cl.Ping(ctx)
}

func TestTLSListenerRefusesPlaintextOldTLSAndUntrustedServers(t *testing.T) {
	b, ca, _ := tlsBroker(t)
	addr := b.ListenerAddr("SSL")
	if err := pingErr(t, addr); err == nil {
		t.Error("a plaintext client talked to a TLS listener")
	}
	if err := pingErr(t, addr, kgo.DialTLSConfig(&tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})); err == nil {
		t.Error("a TLS 1.1 client was served")
	}
	other := testkit.NewCA(t, "another CA")
	if err := pingErr(t, addr, kgo.DialTLSConfig(&tls.Config{RootCAs: other.Pool()})); err == nil {
		t.Error("a client that does not trust the broker's CA connected")
	}
	// TLS 1.2 and 1.3 both work.
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		if err := pingErr(t, addr, kgo.DialTLSConfig(&tls.Config{RootCAs: ca.Pool(), MinVersion: v, MaxVersion: v})); err != nil {
			t.Errorf("TLS %x: %v", v, err)
		}
	}
}

func TestTLSCertificateReloadsWithoutRestart(t *testing.T) {
	b, ca, keystore := tlsBroker(t)
	addr := b.ListenerAddr("SSL")
	if err := pingErr(t, addr, kgo.DialTLSConfig(&tls.Config{RootCAs: ca.Pool()})); err != nil {
		t.Fatal(err)
	}
	ca2 := testkit.NewCA(t, "rotated CA")
	srv2 := ca2.Issue(t, pkix.Name{CommonName: "localhost"})
	testkit.WriteFile(t, "", keystore, srv2.KeyPEM, srv2.CertPEM)
	deadline := time.Now().Add(10 * time.Second)
	for pingErr(t, addr, kgo.DialTLSConfig(&tls.Config{RootCAs: ca2.Pool()})) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the rotated certificate was never served")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err := pingErr(t, addr, kgo.DialTLSConfig(&tls.Config{RootCAs: ca.Pool()})); err == nil {
		t.Error("the old certificate is still served")
	}
}

// saslBroker runs a broker with a loopback PLAINTEXT listener (used to
// create users: there is no authorizer) and a SASL_PLAINTEXT one.
func saslBroker(t *testing.T, extra ...broker.Option) *brokertest.Broker {
	t.Helper()
	return brokertest.Run(t, append([]broker.Option{
		broker.WithProperty("listeners", "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0"),
	}, extra...)...)
}

func createUser(t *testing.T, b *brokertest.Broker, user, pass string, m kadm.ScramMechanism) {
	t.Helper()
	adm := kadm.NewClient(b.Client(t))
	res, err := adm.AlterUserSCRAMs(context.Background(), nil, []kadm.UpsertSCRAM{{User: user, Mechanism: m, Iterations: 4096, Password: pass}})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Error(); err != nil {
		t.Fatal(err)
	}
}

func TestSASLRefusesBadCredentialsAndUnauthenticatedRequests(t *testing.T) {
	b := saslBroker(t)
	createUser(t, b, "alice", "alice-secret", kadm.ScramSha256)
	addr := b.ListenerAddr("SASL_PLAINTEXT")
	for name, m := range map[string]sasl.Mechanism{
		"wrong password": scram.Auth{User: "alice", Pass: "guess"}.AsSha256Mechanism(),
		"unknown user":   scram.Auth{User: "mallory", Pass: "alice-secret"}.AsSha256Mechanism(),
		"other mech":     scram.Auth{User: "alice", Pass: "alice-secret"}.AsSha512Mechanism(), // only SHA-256 was created
		"plain wrong":    plain.Auth{User: "alice", Pass: "guess"}.AsMechanism(),
	} {
		err := pingErr(t, addr, kgo.SASL(m))
		if !errors.Is(err, kerr.SaslAuthenticationFailed) || !strings.Contains(err.Error(), "invalid username or password") {
			t.Errorf("%s: %v, want SASL_AUTHENTICATION_FAILED with a message", name, err)
		}
	}
	// No SASL at all: the first request after ApiVersions closes the
	// connection without an answer.
	if err := pingErr(t, addr); err == nil {
		t.Error("a client without SASL was served on a SASL listener")
	}
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	md := kmsg.NewPtrMetadataRequest()
	md.SetVersion(9)
	nc.Write(frame(md, 1))
	nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := nc.Read(make([]byte, 64)); err == nil || n > 0 {
		t.Errorf("Metadata before authentication was answered (%d bytes, %v)", n, err)
	}
	// An unknown mechanism: UNSUPPORTED_SASL_MECHANISM with the list.
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.SetVersion(1)
	hs.Mechanism = "GSSAPI"
	resp := roundTripOn(t, addr, hs).(*kmsg.SASLHandshakeResponse)
	if resp.ErrorCode != kerr.UnsupportedSaslMechanism.Code || len(resp.SupportedMechanisms) == 0 {
		t.Errorf("GSSAPI handshake: %+v", resp)
	}
}

// roundTripOn sends req on a new connection and reads its response.
func roundTripOn(t *testing.T, addr string, req kmsg.Request) kmsg.Response {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := nc.Write(frame(req, 7)); err != nil {
		t.Fatal(err)
	}
	return readResponse(t, nc, req)
}

func readResponse(t *testing.T, r io.Reader, req kmsg.Request) kmsg.Response {
	t.Helper()
	var size [4]byte
	if _, err := io.ReadFull(r, size[:]); err != nil {
		t.Fatalf("%s: %v", kmsg.NameForKey(req.Key()), err)
	}
	body := make([]byte, binary.BigEndian.Uint32(size[:]))
	if _, err := io.ReadFull(r, body); err != nil {
		t.Fatal(err)
	}
	resp := req.ResponseKind()
	resp.SetVersion(req.GetVersion())
	body = body[4:]
	if resp.IsFlexible() && req.Key() != 18 {
		body = body[1:]
	}
	if err := resp.ReadFrom(body); err != nil {
		t.Fatal(err)
	}
	return resp
}

func TestSASLMechanismsAuthenticate(t *testing.T) {
	b := saslBroker(t, broker.WithTopics("secured"))
	createUser(t, b, "alice", "alice-secret", kadm.ScramSha256)
	createUser(t, b, "bob", "bob-secret", kadm.ScramSha512)
	addr := b.ListenerAddr("SASL_PLAINTEXT")
	for name, m := range map[string]sasl.Mechanism{
		"SCRAM-SHA-256": scram.Auth{User: "alice", Pass: "alice-secret"}.AsSha256Mechanism(),
		"SCRAM-SHA-512": scram.Auth{User: "bob", Pass: "bob-secret"}.AsSha512Mechanism(),
		"PLAIN":         plain.Auth{User: "bob", Pass: "bob-secret"}.AsMechanism(),
	} {
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.SASL(m), kgo.DefaultProduceTopic("secured"))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := cl.ProduceSync(ctx, kgo.StringRecord(name)).FirstErr(); err != nil {
			t.Errorf("%s: produce: %v", name, err)
		}
		cancel()
		cl.Close()
	}
}

func TestSASLHandshakeV0TokensTravelBare(t *testing.T) {
	b := saslBroker(t)
	createUser(t, b, "alice", "alice-secret", kadm.ScramSha256)
	nc, err := net.Dial("tcp", b.ListenerAddr("SASL_PLAINTEXT"))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	hs := kmsg.NewPtrSASLHandshakeRequest()
	hs.Mechanism = "PLAIN"
	nc.Write(frame(hs, 1))
	if r := readResponse(t, nc, hs).(*kmsg.SASLHandshakeResponse); r.ErrorCode != 0 {
		t.Fatalf("handshake v0: %v", kerr.ErrorForCode(r.ErrorCode))
	}
	token := []byte("\x00alice\x00alice-secret")
	nc.Write(binary.BigEndian.AppendUint32(nil, uint32(len(token))))
	nc.Write(token)
	var size [4]byte
	if _, err := io.ReadFull(nc, size[:]); err != nil || binary.BigEndian.Uint32(size[:]) != 0 {
		t.Fatalf("bare answer to the PLAIN token: %v %v", size, err)
	}
	md := kmsg.NewPtrMetadataRequest()
	md.SetVersion(9)
	nc.Write(frame(md, 2))
	if r := readResponse(t, nc, md).(*kmsg.MetadataResponse); len(r.Brokers) != 1 {
		t.Fatalf("metadata after v0 authentication: %+v", r)
	}
}

func TestSCRAMCredentialAdmin(t *testing.T) {
	b := saslBroker(t)
	adm := kadm.NewClient(b.Client(t))
	ctx := context.Background()
	// Refused: iterations out of range, an unknown mechanism, a user
	// altered twice, deleting what is not there. (kadm refuses some of
	// these itself, so the request is built by hand.)
	req := kmsg.NewPtrAlterUserSCRAMCredentialsRequest()
	up := func(user string, mech int8, iters int32) kmsg.AlterUserSCRAMCredentialsRequestUpsertion {
		u := kmsg.NewAlterUserSCRAMCredentialsRequestUpsertion()
		u.Name, u.Mechanism, u.Iterations, u.Salt, u.SaltedPassword = user, mech, iters, []byte("salt"), make([]byte, 32)
		return u
	}
	del := kmsg.NewAlterUserSCRAMCredentialsRequestDeletion()
	del.Name, del.Mechanism = "ghost", 1
	req.Deletions = append(req.Deletions, del)
	req.Upsertions = append(req.Upsertions, up("weak", 1, 100), up("", 1, 4096), up("odd", 9, 4096), up("twice", 1, 4096), up("twice", 1, 4096))
	resp, err := req.RequestWith(ctx, b.Client(t))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]*kerr.Error{"ghost": kerr.ResourceNotFound, "weak": kerr.UnacceptableCredential, "": kerr.UnacceptableCredential,
		"odd": kerr.UnsupportedSaslMechanism, "twice": kerr.DuplicateResource}
	if len(resp.Results) != len(want) {
		t.Errorf("%d results, want %d", len(resp.Results), len(want))
	}
	for _, r := range resp.Results {
		if r.ErrorCode != want[r.User].Code || r.ErrorMessage == nil {
			t.Errorf("%q: %v (%v), want %v", r.User, kerr.ErrorForCode(r.ErrorCode), r.ErrorMessage, want[r.User])
		}
	}
	createUser(t, b, "alice", "pw-one", kadm.ScramSha256)
	createUser(t, b, "alice", "pw-two", kadm.ScramSha512)
	desc, err := adm.DescribeUserSCRAMs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if a := desc["alice"]; len(a.CredInfos) != 2 || a.CredInfos[0].Iterations != 4096 {
		t.Errorf("described: %+v", desc)
	}
	if _, ok := desc["weak"]; ok {
		t.Error("a refused user was stored")
	}
	one, err := adm.DescribeUserSCRAMs(ctx, "nobody")
	if err != nil || !errors.Is(one["nobody"].Err, kerr.ResourceNotFound) {
		t.Errorf("describing a missing user: %+v %v", one, err)
	}
	// Durable: after a restart the user still logs in.
	saslAddr := b.ListenerAddr("SASL_PLAINTEXT")
	b.Restart(t, broker.WithProperty("listeners", "PLAINTEXT://"+b.ListenerAddr("PLAINTEXT")+",SASL_PLAINTEXT://"+saslAddr))
	if err := pingErr(t, b.ListenerAddr("SASL_PLAINTEXT"), kgo.SASL(scram.Auth{User: "alice", Pass: "pw-two"}.AsSha512Mechanism())); err != nil {
		t.Errorf("after restart: %v", err)
	}
}

func TestMutualTLSPrincipalFromCertificate(t *testing.T) {
	dir := t.TempDir()
	ca := testkit.NewCA(t, "idem test CA")
	srv := ca.Issue(t, pkix.Name{CommonName: "localhost"})
	b := brokertest.Run(t,
		broker.WithProperty("listeners", "SSL://127.0.0.1:0"),
		broker.WithProperty("ssl.keystore.certificate.chain", string(srv.CertPEM)),
		broker.WithProperty("ssl.keystore.key", string(srv.KeyPEM)),
		broker.WithProperty("ssl.truststore.location", testkit.WriteFile(t, dir, "ca.pem", ca.CertPEM)),
		broker.WithProperty("ssl.client.auth", "required"),
		broker.WithProperty("ssl.principal.mapping.rules", "RULE:^CN=([^,]+),.*$/$1/L,DEFAULT"),
		broker.WithProperty("authorizer.class.name", "idem"),
		broker.WithProperty("super.users", "User:alice"),
	)
	addr := b.ListenerAddr("SSL")
	certOf := func(c *testkit.CA, cn string) []tls.Certificate {
		return []tls.Certificate{c.Issue(t, pkix.Name{CommonName: cn, Organization: []string{"Example"}}).TLS(t)}
	}
	// No certificate, or one from another CA: the handshake fails.
	if err := pingErr(t, addr, kgo.DialTLSConfig(&tls.Config{RootCAs: ca.Pool()})); err == nil {
		t.Error("a client without a certificate was served under ssl.client.auth=required")
	}
	other := testkit.NewCA(t, "another CA")
	if err := pingErr(t, addr, kgo.DialTLSConfig(&tls.Config{RootCAs: ca.Pool(), Certificates: certOf(other, "Alice")})); err == nil {
		t.Error("a certificate from another CA was accepted")
	}
	create := func(cn string) int16 {
		cl := b.Client(t, kgo.SeedBrokers(addr), kgo.DialTLSConfig(&tls.Config{RootCAs: ca.Pool(), Certificates: certOf(ca, cn)}))
		req := kmsg.NewPtrCreateTopicsRequest()
		rt := kmsg.NewCreateTopicsRequestTopic()
		rt.Topic, rt.NumPartitions, rt.ReplicationFactor = "from-"+strings.ToLower(cn), 1, 1
		req.Topics = append(req.Topics, rt)
		resp, err := cl.Broker(1).Request(context.Background(), req)
		if err != nil {
			t.Fatalf("%s: %v", cn, err)
		}
		return resp.(*kmsg.CreateTopicsResponse).Topics[0].ErrorCode
	}
	// CN=Alice,O=Example maps to User:alice, the super user; bob is not.
	if c := create("Alice"); c != 0 {
		t.Errorf("alice (super user by certificate): %v", kerr.ErrorForCode(c))
	}
	if c := create("Bob"); c != kerr.TopicAuthorizationFailed.Code {
		t.Errorf("bob: %v, want TOPIC_AUTHORIZATION_FAILED", kerr.ErrorForCode(c))
	}
}

// TestListenerOverrides: listener.name.<name>.… gives one listener its own
// mechanisms; a property a listener may not override is refused.
func TestListenerOverrides(t *testing.T) {
	b := saslBroker(t,
		broker.WithProperty("listeners", "PLAINTEXT://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0,INTERNAL://127.0.0.1:0"),
		broker.WithProperty("listener.security.protocol.map", "PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,INTERNAL:SASL_PLAINTEXT"),
		broker.WithProperty("listener.name.internal.sasl.enabled.mechanisms", "PLAIN"),
		broker.WithProperty("sasl.enabled.mechanisms", "SCRAM-SHA-256"))
	createUser(t, b, "alice", "alice-pw", kadm.ScramSha256)
	scramAlice := kgo.SASL(scram.Auth{User: "alice", Pass: "alice-pw"}.AsSha256Mechanism())
	plainAlice := kgo.SASL(plain.Auth{User: "alice", Pass: "alice-pw"}.AsMechanism())
	if err := pingErr(t, b.ListenerAddr("INTERNAL"), plainAlice); err != nil {
		t.Errorf("PLAIN on INTERNAL: %v", err)
	}
	if err := pingErr(t, b.ListenerAddr("INTERNAL"), scramAlice); !errors.Is(err, kerr.UnsupportedSaslMechanism) {
		t.Errorf("SCRAM on INTERNAL (PLAIN only): %v, want UNSUPPORTED_SASL_MECHANISM", err)
	}
	if err := pingErr(t, b.ListenerAddr("SASL_PLAINTEXT"), plainAlice); !errors.Is(err, kerr.UnsupportedSaslMechanism) {
		t.Errorf("PLAIN on SASL_PLAINTEXT (SCRAM only): %v, want UNSUPPORTED_SASL_MECHANISM", err)
	}
	if err := pingErr(t, b.ListenerAddr("SASL_PLAINTEXT"), scramAlice); err != nil {
		t.Errorf("SCRAM on SASL_PLAINTEXT: %v", err)
	}
	for _, name := range []string{"listener.name.internal.log.dirs", "listener.name..sasl.enabled.mechanisms", "listener.name.internal"} {
		if _, err := broker.New(broker.WithProperty(name, "x")); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}
