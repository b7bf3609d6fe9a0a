package clientprops

import (
	"context"
	"crypto/tls"
	"crypto/x509/pkix"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/idem-dev/idem/internal/testkit"
)

func TestParseRefusesWhatItDoesNotKnow(t *testing.T) {
	p, err := Parse([]string{"brokers=a:1,b:2", "client.id=me", "security.protocol=SASL_SSL", "sasl.password=x=y"})
	if err != nil || p["brokers"] != "a:1,b:2" || p["sasl.password"] != "x=y" {
		t.Fatalf("Parse: %v %v", p, err)
	}
	for _, c := range []struct {
		xs   []string
		sec  bool
		want string
	}{
		{[]string{"sasl.passwd=x"}, false, `unknown client property "sasl.passwd"`},
		{[]string{"security.protocol"}, false, "want name=value"},
		{[]string{"client.id=x"}, true, "not a client security property"},
		{[]string{"brokers=x"}, true, "not a client security property"},
	} {
		parse := Parse
		if c.sec {
			parse = ParseSecurity
		}
		if _, err := parse(c.xs); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, want %q", c.xs, err, c.want)
		}
	}
}

func TestSecurityOf(t *testing.T) {
	s, err := SecurityOf(nil)
	if err != nil || s.Protocol != "PLAINTEXT" || s.TLS != nil || s.SASL != nil || len(s.Opts()) != 0 {
		t.Fatalf("no properties: %+v %v", s, err)
	}
	s, err = SecurityOf(map[string]string{"security.protocol": "sasl_plaintext", "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": "u", "sasl.password": "p"})
	if err != nil || s.Protocol != "SASL_PLAINTEXT" || s.TLS != nil || s.SASL == nil || len(s.Opts()) != 1 || len(s.SASLOpts()) != 1 {
		t.Fatalf("SASL_PLAINTEXT: %+v %v", s, err)
	}
	for _, c := range []struct {
		p    map[string]string
		want string
	}{
		{map[string]string{"security.protocol": "TLS"}, "want PLAINTEXT, SSL"},
		{map[string]string{"sasl.username": "u"}, "does not use SASL"},
		{map[string]string{"security.protocol": "SASL_PLAINTEXT", "ssl.ca.location": "ca.pem"}, "does not use TLS"},
		{map[string]string{"security.protocol": "SASL_SSL"}, "set -X sasl.mechanism"},
		{map[string]string{"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN", "sasl.username": "u"}, "needs -X sasl.username and -X sasl.password"},
		{map[string]string{"security.protocol": "SSL", "ssl.ca.location": "/nonexistent/ca.pem"}, "ssl.ca.location"},
		{map[string]string{"security.protocol": "SSL", "ssl.certificate.location": "c.pem"}, "go together"},
	} {
		if _, err := SecurityOf(c.p); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, want %q", c.p, err, c.want)
		}
	}
}

// Dial is what kgo's DialTLSConfig does: TLS with the broker's name
// checked against the address dialled.
func TestDialVerifiesTheBroker(t *testing.T) {
	ca := testkit.NewCA(t, "clientprops CA")
	srv := ca.Issue(t, pkix.Name{CommonName: "localhost"})
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{srv.TLS(t)}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.WriteString(c, "hello")
			}()
		}
	}()
	dir := t.TempDir()
	trusted := testkit.WriteFile(t, dir, "ca.pem", ca.CertPEM)
	other := testkit.WriteFile(t, dir, "other.pem", testkit.NewCA(t, "another CA").CertPEM)
	dial := func(ca, addr string) error {
		s, err := SecurityOf(map[string]string{"security.protocol": "SSL", "ssl.ca.location": ca})
		if err != nil {
			t.Fatal(err)
		}
		c, err := s.Dial(context.Background(), "tcp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		b, err := io.ReadAll(c)
		if err == nil && string(b) != "hello" {
			t.Errorf("read %q", b)
		}
		return err
	}
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	if err := dial(trusted, ln.Addr().String()); err != nil {
		t.Errorf("trusted CA: %v", err)
	}
	if err := dial(trusted, "localhost:"+port); err != nil {
		t.Errorf("trusted CA by name: %v", err)
	}
	if err := dial(other, ln.Addr().String()); err == nil {
		t.Error("a broker signed by another CA was accepted")
	}
}
