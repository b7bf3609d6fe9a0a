package security

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"go.uber.org/goleak"

	"github.com/idem-dev/idem/internal/logstore"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func openStore(t *testing.T, fs logstore.FS) *Store {
	t.Helper()
	s, err := Open(StoreConfig{FS: fs, Dir: "__security"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func addUser(t *testing.T, s *Store, user, pass string, m ScramMechanism) {
	t.Helper()
	c, err := NewCredential(m, pass, MinIterations)
	if err != nil {
		t.Fatal(err)
	}
	if errs := s.AlterCredentials(context.Background(), []CredentialChange{{User: user, Mechanism: m, Credential: &c}}); errs[0] != nil {
		t.Fatal(errs[0])
	}
}

// run drives an exchange with a franz-go client mechanism, as a broker
// connection would, and returns the server's final error.
func run(t *testing.T, a *Authenticator, m sasl.Mechanism) (Exchange, error) {
	t.Helper()
	ex, err := a.Start(m.Name())
	if err != nil {
		return nil, err
	}
	sess, msg, err := m.Authenticate(context.Background(), "idem:9092")
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		out, done, err := ex.Step(msg)
		if err != nil {
			return ex, err
		}
		cdone, next, cerr := sess.Challenge(out)
		if done {
			if cerr != nil || !cdone {
				t.Fatalf("server done but client says done=%v err=%v", cdone, cerr)
			}
			return ex, nil
		}
		if cerr != nil {
			t.Fatalf("client: %v", cerr)
		}
		msg = next
	}
	t.Fatal("exchange did not end")
	return nil, nil
}

func TestSASLRefusesWrongPasswordsUnknownUsersAndBrokenMessages(t *testing.T) {
	s := openStore(t, logstore.NewMemFS())
	addUser(t, s, "alice", "secret", ScramSHA256)
	addUser(t, s, "alice", "secret", ScramSHA512)
	a, err := NewAuthenticator(s, []string{MechPlain, MechScramSHA256, MechScramSHA512}, nil)
	if err != nil {
		t.Fatal(err)
	}
	bad := map[string]sasl.Mechanism{
		"scram-256 wrong password": scram.Auth{User: "alice", Pass: "nope"}.AsSha256Mechanism(),
		"scram-512 wrong password": scram.Auth{User: "alice", Pass: "nope"}.AsSha512Mechanism(),
		"scram unknown user":       scram.Auth{User: "mallory", Pass: "secret"}.AsSha256Mechanism(),
		"plain wrong password":     plain.Auth{User: "alice", Pass: "nope"}.AsMechanism(),
		"plain unknown user":       plain.Auth{User: "mallory", Pass: "secret"}.AsMechanism(),
		"plain other authzid":      plain.Auth{Zid: "root", User: "alice", Pass: "secret"}.AsMechanism(),
	}
	for name, m := range bad {
		_, err := run(t, a, m)
		if err == nil {
			t.Errorf("%s: authenticated", name)
		}
	}
	// The same message whether the user exists or not.
	_, e1 := run(t, a, bad["scram unknown user"])
	_, e2 := run(t, a, bad["scram-256 wrong password"])
	if e1.Error() != e2.Error() || !errors.Is(e1, ErrAuthentication) {
		t.Errorf("unknown user %q and wrong password %q must fail alike", e1, e2)
	}
	if _, err := a.Start("GSSAPI"); !errors.Is(err, ErrUnsupportedMechanism) {
		t.Errorf("GSSAPI: %v, want ErrUnsupportedMechanism", err)
	}
	for _, msg := range []string{"", "n,,", "p=tls-unique,,n=alice,r=abc", "n,,n=alice", "n,,n=alice,r=abc,ext=1", "n,,n=al=ice,r=abc", strings.Repeat("x", 5000)} {
		ex, _ := a.Start(MechScramSHA256)
		if _, _, err := ex.Step([]byte(msg)); err == nil {
			t.Errorf("client-first %q accepted", msg)
		}
	}
	for _, msg := range []string{"", "alice\x00secret", "\x00alice\x00", strings.Repeat("a", 1000)} {
		ex, _ := a.Start(MechPlain)
		if _, _, err := ex.Step([]byte(msg)); err == nil {
			t.Errorf("PLAIN %q accepted", msg)
		}
	}
}

// TestSCRAMNonceMustBeTheServers is CVE-2024-56128: a client-final message
// with another nonce (here: only the client's part) must fail even with a
// correct proof for that nonce.
func TestSCRAMNonceMustBeTheServers(t *testing.T) {
	s := openStore(t, logstore.NewMemFS())
	addUser(t, s, "alice", "secret", ScramSHA256)
	a, _ := NewAuthenticator(s, []string{MechScramSHA256}, nil)
	ex, _ := a.Start(MechScramSHA256)
	first, _, err := ex.Step([]byte("n,,n=alice,r=clientnonce"))
	if err != nil {
		t.Fatal(err)
	}
	var salt []byte
	var iters int
	for _, kv := range strings.Split(string(first), ",") {
		switch {
		case strings.HasPrefix(kv, "s="):
			salt, _ = base64.StdEncoding.DecodeString(kv[2:])
		case strings.HasPrefix(kv, "i="):
			fmt.Sscan(kv[2:], &iters)
		}
	}
	salted, _ := SaltPassword(ScramSHA256, "secret", salt, iters)
	cred, _ := CredentialFromSalted(ScramSHA256, iters, salt, salted)
	clientKey := hmacSum(ScramSHA256, salted, []byte("Client Key"))
	withoutProof := "c=biws,r=clientnonce"
	forged := strings.Replace(string(first), strings.Split(strings.Split(string(first), ",")[0], "=")[1], "clientnonce", 1)
	sig := hmacSum(ScramSHA256, cred.StoredKey, []byte("n=alice,r=clientnonce,"+forged+","+withoutProof))
	proof := make([]byte, len(sig))
	for i := range sig {
		proof[i] = clientKey[i] ^ sig[i]
	}
	_, _, err = ex.Step([]byte(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof)))
	if err == nil || !strings.Contains(err.Error(), "nonce") {
		t.Fatalf("client-final with the client's nonce only: %v, want a nonce error", err)
	}
	// Neither may the server's nonce be altered or padded, except by
	// librdkafka's one known prefix (the client nonce again).
	full := strings.TrimPrefix(strings.Split(string(first), ",")[0], "r=")
	for nonce, ok := range map[string]bool{
		full:                     true,
		"clientnonce" + full:     true, // librdkafka < 2.6.1
		"x" + full:               false,
		full + "x":               false,
		"clientnonc" + full:      false,
		"clientnonce" + full[1:]: false,
	} {
		ex, _ := a.Start(MechScramSHA256)
		first, _, _ := ex.Step([]byte("n,,n=alice,r=clientnonce"))
		salted, _ := SaltPassword(ScramSHA256, "secret", salt, iters)
		serverNonce := strings.TrimPrefix(strings.Split(string(first), ",")[0], "r=")
		n := strings.Replace(nonce, full, serverNonce, 1)
		withoutProof := "c=biws,r=" + n
		sig := hmacSum(ScramSHA256, cred.StoredKey, []byte("n=alice,r=clientnonce,"+string(first)+","+withoutProof))
		proof := make([]byte, len(sig))
		ck := hmacSum(ScramSHA256, salted, []byte("Client Key"))
		for i := range sig {
			proof[i] = ck[i] ^ sig[i]
		}
		_, done, err := ex.Step([]byte(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof)))
		if (err == nil && done) != ok {
			t.Errorf("nonce %q (server's %q): done=%v err=%v, want accepted=%v", n, serverNonce, done, err, ok)
		}
	}
}

func TestSASLAcceptsStoredUsers(t *testing.T) {
	s := openStore(t, logstore.NewMemFS())
	addUser(t, s, "alice", "secret", ScramSHA256)
	addUser(t, s, "bob,=x", "pw", ScramSHA512)
	a, _ := NewAuthenticator(s, []string{MechPlain, MechScramSHA256, MechScramSHA512}, nil)
	for name, m := range map[string]sasl.Mechanism{
		"User:alice":  scram.Auth{User: "alice", Pass: "secret"}.AsSha256Mechanism(),
		"User:bob,=x": scram.Auth{User: "bob,=x", Pass: "pw"}.AsSha512Mechanism(),
		"User:alice ": plain.Auth{User: "alice", Pass: "secret"}.AsMechanism(),
	} {
		ex, err := run(t, a, m)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if ex.Principal() != strings.TrimSpace(name) {
			t.Errorf("principal %q, want %q", ex.Principal(), name)
		}
	}
}

func TestStoreSurvivesReopenAndNeverHoldsPasswords(t *testing.T) {
	fs := logstore.NewMemFS()
	s, err := Open(StoreConfig{FS: fs, Dir: "__security"})
	if err != nil {
		t.Fatal(err)
	}
	addUser(t, s, "alice", "hunter2-password", ScramSHA256)
	ctx := context.Background()
	b := Binding{ResourceType: ResourceTopic, ResourceName: "orders", PatternType: PatternLiteral, Principal: "User:alice", Host: "*", Operation: OpRead, Permission: PermissionAllow}
	if errs := s.CreateACLs(ctx, []Binding{b}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	name := "alice"
	if err := s.AlterQuotas(ctx, []QuotaChange{{Entity: Entity{{Type: EntityUser, Name: &name}}, Key: QuotaProducerByteRate, Value: 1024}}, false); err != nil {
		t.Fatal(err)
	}
	// A power loss right after the acknowledgements keeps only what was
	// fsynced: each change must already be.
	clone := fs.CrashClone(logstore.CrashOptions{})
	s.Close()
	s2 := openStore(t, clone)
	if _, ok := s2.Credential("alice", ScramSHA256); !ok {
		t.Error("user lost over a crash")
	}
	if got := s2.ACLs(Filter{ResourceType: ResourceAny, PatternType: PatternAny, Operation: OpAny, Permission: PermissionAny}); len(got) != 1 || got[0] != b {
		t.Errorf("ACLs after crash: %v", got)
	}
	if q := s2.Quotas(); len(q) != 1 || q[0].Values[QuotaProducerByteRate] != 1024 {
		t.Errorf("quotas after crash: %v", q)
	}
	files, _ := clone.ReadDir("__security")
	if len(files) == 0 {
		t.Fatal("no files in the store's directory: the password check would prove nothing")
	}
	for _, f := range files {
		data, _ := clone.ReadFile("__security/" + f)
		if strings.Contains(string(data), "hunter2") {
			t.Fatalf("%s holds the password", f)
		}
	}
	if errs := s2.AlterCredentials(ctx, []CredentialChange{{User: "nobody", Mechanism: ScramSHA256, Delete: true}}); !errors.Is(errs[0], ErrNotFound) {
		t.Errorf("deleting a missing credential: %v", errs[0])
	}
	if errs := s2.AlterCredentials(ctx, []CredentialChange{{User: "alice", Mechanism: ScramSHA256, Delete: true}}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	if _, ok := s2.Credential("alice", ScramSHA256); ok {
		t.Error("deleted credential still there")
	}
}

func TestACLEvaluation(t *testing.T) {
	s := openStore(t, logstore.NewMemFS())
	acl := func(rt ResourceType, name string, pt PatternType, principal, host string, op Operation, perm Permission) Binding {
		return Binding{ResourceType: rt, ResourceName: name, PatternType: pt, Principal: principal, Host: host, Operation: op, Permission: perm}
	}
	errs := s.CreateACLs(context.Background(), []Binding{
		acl(ResourceTopic, "orders", PatternLiteral, "User:alice", "*", OpRead, PermissionAllow),
		acl(ResourceTopic, "logs-", PatternPrefixed, "User:alice", "*", OpWrite, PermissionAllow),
		acl(ResourceTopic, "logs-secret", PatternLiteral, "User:alice", "*", OpAll, PermissionDeny),
		acl(ResourceTopic, "*", PatternLiteral, "User:*", "10.0.0.1", OpDescribe, PermissionAllow),
		acl(ResourceGroup, "g", PatternLiteral, "User:bob", "*", OpAlterConfigs, PermissionAllow),
		// Invalid: refused.
		acl(ResourceAny, "x", PatternLiteral, "User:a", "*", OpRead, PermissionAllow),
		acl(ResourceTopic, "x", PatternMatch, "User:a", "*", OpRead, PermissionAllow),
		acl(ResourceTopic, "x", PatternLiteral, "alice", "*", OpRead, PermissionAllow),
		acl(ResourceCluster, "c", PatternLiteral, "User:a", "*", OpAlter, PermissionAllow),
	})
	for i, err := range errs {
		if (i >= 5) != errors.Is(err, ErrInvalidACL) {
			t.Errorf("binding %d: %v", i, err)
		}
	}
	az := NewAuthorizer(s, []string{"User:root"}, false)
	cases := []struct {
		who, host string
		op        Operation
		rt        ResourceType
		name      string
		want      bool
	}{
		{"User:alice", "1.2.3.4", OpRead, ResourceTopic, "orders", true},
		{"User:alice", "1.2.3.4", OpDescribe, ResourceTopic, "orders", true}, // implied by READ
		{"User:alice", "1.2.3.4", OpWrite, ResourceTopic, "orders", false},
		{"User:bob", "1.2.3.4", OpRead, ResourceTopic, "orders", false},
		{"User:alice", "1.2.3.4", OpWrite, ResourceTopic, "logs-app", true},
		{"User:alice", "1.2.3.4", OpWrite, ResourceTopic, "logs-secret", false}, // DENY wins
		{"User:alice", "1.2.3.4", OpWrite, ResourceTopic, "log", false},
		{"User:carol", "10.0.0.1", OpDescribe, ResourceTopic, "anything", true},
		{"User:carol", "10.0.0.2", OpDescribe, ResourceTopic, "anything", false},
		{"User:bob", "1.2.3.4", OpDescribeConfigs, ResourceGroup, "g", true},
		{"User:bob", "1.2.3.4", OpDescribe, ResourceGroup, "g", false},
		{"User:root", "1.2.3.4", OpDelete, ResourceCluster, ClusterName, true},
		{"User:alice", "1.2.3.4", OpRead, ResourceGroup, "none", false},
	}
	for _, c := range cases {
		if got := az.Authorize(c.who, c.host, c.op, c.rt, c.name); got != c.want {
			t.Errorf("%s from %s %s %s %q: %v, want %v", c.who, c.host, c.op, c.rt, c.name, got, c.want)
		}
	}
	open := NewAuthorizer(s, nil, true)
	if !open.Authorize("User:x", "h", OpRead, ResourceGroup, "no-acls") || open.Authorize("User:x", "h", OpRead, ResourceTopic, "orders") {
		t.Error("allow.everyone.if.no.acl.found: only resources without ACLs are open")
	}
	name := "logs-app"
	match := s.ACLs(Filter{ResourceType: ResourceTopic, ResourceName: &name, PatternType: PatternMatch, Operation: OpAny, Permission: PermissionAny})
	if len(match) != 2 { // logs- prefixed and the * literal
		t.Errorf("MATCH logs-app: %v", match)
	}
}

func TestThrottlerSlowsToTheQuota(t *testing.T) {
	s := openStore(t, logstore.NewMemFS())
	user := "alice"
	if err := s.AlterQuotas(context.Background(), []QuotaChange{{Entity: Entity{{Type: EntityUser, Name: &user}}, Key: QuotaProducerByteRate, Value: 1000}}, false); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []QuotaChange{
		{Entity: Entity{{Type: "group"}}, Key: QuotaProducerByteRate, Value: 1},
		{Entity: Entity{{Type: EntityIP}}, Key: QuotaProducerByteRate, Value: 1},
		{Entity: Entity{{Type: EntityUser}}, Key: QuotaConnectionCreationRate, Value: 1},
		{Entity: Entity{{Type: EntityUser}}, Key: "bogus", Value: 1},
		{Entity: Entity{{Type: EntityUser}}, Key: QuotaProducerByteRate, Value: -1},
	} {
		if err := s.AlterQuotas(context.Background(), []QuotaChange{bad}, false); !errors.Is(err, ErrInvalidQuota) {
			t.Errorf("%+v: %v", bad, err)
		}
	}
	now := time.Unix(1000, 0)
	th := NewThrottler(s, 11, time.Second, func() time.Time { return now })
	// A client that waits as told sends at the quota.
	sent := 0.0
	start := now
	for range 200 {
		sent += 500
		d := th.Record("alice", "c", QuotaProducerByteRate, 500)
		now = now.Add(d + 10*time.Millisecond)
	}
	rate := sent / now.Sub(start).Seconds()
	if rate > 1100 || rate < 800 {
		t.Errorf("throttled rate %.0f B/s, want about 1000", rate)
	}
	if d := th.Record("bob", "c", QuotaProducerByteRate, 1e9); d != 0 {
		t.Errorf("a user without a quota was throttled %v", d)
	}
}

func TestOAuthUnsecuredTokens(t *testing.T) {
	v, err := NewOAuthValidator(OAuthConfig{Unsecured: true})
	if err != nil {
		t.Fatal(err)
	}
	s := openStore(t, logstore.NewMemFS())
	a, err := NewAuthenticator(s, []string{MechOAuthBearer}, v)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	tok := func(claims string) string { return enc([]byte(`{"alg":"none"}`)) + "." + enc([]byte(claims)) + "." }
	for name, token := range map[string]string{
		"expired":   tok(fmt.Sprintf(`{"sub":"a","exp":%d}`, time.Now().Add(-time.Hour).Unix())),
		"no exp":    tok(`{"sub":"a"}`),
		"no sub":    tok(fmt.Sprintf(`{"exp":%d}`, time.Now().Add(time.Hour).Unix())),
		"forged":    enc([]byte(`{"alg":"HS256"}`)) + "." + enc([]byte(fmt.Sprintf(`{"sub":"a","exp":%d}`, time.Now().Add(time.Hour).Unix()))) + ".c2ln",
		"garbage":   "not-a-token",
		"signature": tok(fmt.Sprintf(`{"sub":"a","exp":%d}`, time.Now().Add(time.Hour).Unix())) + "sig",
	} {
		_, err := run(t, a, oauth.Auth{Token: token}.AsMechanism())
		if err == nil || !strings.Contains(err.Error(), "invalid_token") {
			t.Errorf("%s token: %v, want invalid_token", name, err)
		}
	}
	ex, err := run(t, a, oauth.Auth{Token: tok(fmt.Sprintf(`{"sub":"admin","exp":%d}`, time.Now().Add(time.Hour).Unix()))}.AsMechanism())
	if err != nil || ex.Principal() != "User:admin" || ex.Expiry().IsZero() {
		t.Fatalf("valid unsecured token: %v", err)
	}
	if _, err := NewOAuthValidator(OAuthConfig{}); err == nil {
		t.Error("a validator with neither JWKS nor unsecured mode was accepted")
	}
}

func TestPrincipalMappingRules(t *testing.T) {
	m, err := NewPrincipalMapper(`RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/L,RULE:^CN=([a-z]+)$/svc-$1/,DEFAULT`)
	if err != nil {
		t.Fatal(err)
	}
	for dn, want := range map[string]string{
		"CN=Alice,OU=ServiceUsers,O=Org": "alice",
		"CN=bob":                         "svc-bob",
		"CN=Carol,O=Other":               "CN=Carol,O=Other",
	} {
		if got, err := m.Map(dn); err != nil || got != want {
			t.Errorf("%s → %q, %v; want %q", dn, got, err, want)
		}
	}
	for _, bad := range []string{"RULE:x", "NOPE", "RULE:(/x/"} {
		if _, err := NewPrincipalMapper(bad); err == nil {
			t.Errorf("rules %q accepted", bad)
		}
	}
}

// BenchmarkSCRAMHandshake is one whole server-side SCRAM-SHA-256 exchange
// with the client's work (4096 iterations each side), as a connection pays
// it once.
func BenchmarkSCRAMHandshake(b *testing.B) {
	s, err := Open(StoreConfig{FS: logstore.NewMemFS(), Dir: "__security"})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	c, _ := NewCredential(ScramSHA256, "secret", MinIterations)
	s.AlterCredentials(context.Background(), []CredentialChange{{User: "alice", Mechanism: ScramSHA256, Credential: &c}})
	a, _ := NewAuthenticator(s, []string{MechScramSHA256}, nil)
	m := scram.Auth{User: "alice", Pass: "secret"}.AsSha256Mechanism()
	for b.Loop() {
		ex, _ := a.Start(MechScramSHA256)
		sess, msg, _ := m.Authenticate(context.Background(), "")
		for {
			out, done, err := ex.Step(msg)
			if err != nil {
				b.Fatal(err)
			}
			_, next, _ := sess.Challenge(out)
			if done {
				break
			}
			msg = next
		}
	}
}

// BenchmarkAuthorize checks one request's topic against 1,000 ACLs.
func BenchmarkAuthorize(b *testing.B) {
	s, err := Open(StoreConfig{FS: logstore.NewMemFS(), Dir: "__security"})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var bs []Binding
	for i := range 999 {
		bs = append(bs, Binding{ResourceType: ResourceTopic, ResourceName: fmt.Sprintf("topic-%d", i), PatternType: PatternLiteral + PatternType(i%2), Principal: fmt.Sprintf("User:u%d", i%50), Host: "*", Operation: OpWrite, Permission: PermissionAllow})
	}
	bs = append(bs, Binding{ResourceType: ResourceTopic, ResourceName: "orders-", PatternType: PatternPrefixed, Principal: "User:bob", Host: "*", Operation: OpWrite, Permission: PermissionAllow})
	s.CreateACLs(context.Background(), bs)
	az := NewAuthorizer(s, nil, false)
	for b.Loop() {
		if !az.Authorize("User:bob", "10.0.0.1", OpWrite, ResourceTopic, "orders-eu") {
			b.Fatal("denied")
		}
	}
}

func TestOAuthJWKSFromURL(t *testing.T) {
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	b64 := base64.RawURLEncoding.EncodeToString
	set := fmt.Sprintf(`{"keys":[{"kty":"RSA","kid":"k1","alg":"RS256","use":"sig","n":%q,"e":%q}]}`,
		b64(key.N.Bytes()), b64(big.NewInt(int64(key.E)).Bytes()))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, set) }))
	defer srv.Close()
	v, err := NewOAuthValidator(OAuthConfig{JWKS: srv.URL, Issuer: "iss"})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	sign := func(k *rsa.PrivateKey, claims jwt.MapClaims) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
		tok.Header["kid"] = "k1"
		s, _ := tok.SignedString(k)
		return s
	}
	exp := time.Now().Add(time.Hour).Unix()
	if p, _, err := v.Validate(sign(key, jwt.MapClaims{"sub": "svc", "iss": "iss", "exp": exp})); err != nil || p != "User:svc" {
		t.Fatalf("valid token: %q %v", p, err)
	}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	if _, _, err := v.Validate(sign(other, jwt.MapClaims{"sub": "svc", "iss": "iss", "exp": exp})); err == nil {
		t.Error("a token signed by another key was accepted")
	}
	if _, _, err := v.Validate(sign(key, jwt.MapClaims{"sub": "svc", "iss": "evil", "exp": exp})); err == nil {
		t.Error("a token from another issuer was accepted")
	}
}
