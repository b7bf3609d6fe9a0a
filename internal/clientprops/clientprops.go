// Package clientprops turns librdkafka-style client properties (kcat's and
// rpk's -X name=value: security.protocol, sasl.mechanism, ssl.ca.location,
// …) into franz-go options. The CLI's client commands, `idem bench` and
// `idem lab` (in its parent and in its worker processes, which get the
// property map in their spec) all connect through it, so a property means
// the same everywhere.
package clientprops

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// known are the property names understood, librdkafka's (kcat's): true for
// the security ones, false for brokers and client.id.
var known = map[string]bool{
	"brokers": false, "client.id": false,
	"security.protocol": true, "sasl.mechanism": true, "sasl.mechanisms": true,
	"sasl.username": true, "sasl.password": true, "sasl.oauthbearer.token": true,
	"ssl.ca.location": true, "ssl.certificate.location": true, "ssl.key.location": true,
	"ssl.endpoint.identification.algorithm": true,
}

// Known reports whether name is a client property.
func Known(name string) bool {
	_, ok := known[name]
	return ok
}

// IsSecurity reports whether name is a security property (every known
// property but brokers and client.id).
func IsSecurity(name string) bool { return known[name] }

// Names returns the known property names, sorted.
func Names() []string {
	out := make([]string, 0, len(known))
	for k := range known {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Parse turns -X name=value strings into a map (a later one wins). Unknown
// names are an error, not silently ignored: a typo must not send records
// somewhere unexpected, or in clear text.
func Parse(xs []string) (map[string]string, error) {
	p := map[string]string{}
	for _, x := range xs {
		name, value, ok := strings.Cut(x, "=")
		if !ok {
			return nil, fmt.Errorf("-X %q: want name=value", x)
		}
		if !Known(name) {
			return nil, fmt.Errorf("-X %s: unknown client property %q (known: %s)", x, name, strings.Join(Names(), ", "))
		}
		p[name] = value
	}
	return p, nil
}

// ParseSecurity is Parse for commands whose brokers and client id have
// their own flags: only security properties are accepted.
func ParseSecurity(xs []string) (map[string]string, error) {
	p := map[string]string{}
	for _, x := range xs {
		name, value, ok := strings.Cut(x, "=")
		if !ok {
			return nil, fmt.Errorf("-X %q: want name=value", x)
		}
		if !IsSecurity(name) {
			return nil, fmt.Errorf("-X %s: not a client security property (security.protocol, sasl.*, ssl.*)", x)
		}
		p[name] = value
	}
	return p, nil
}

// Security is how to connect: TLS, SASL, both or neither.
type Security struct {
	// Protocol is PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL.
	Protocol string
	// TLS is nil without TLS.
	TLS *tls.Config
	// SASL is nil without SASL.
	SASL sasl.Mechanism
}

// SecurityOf builds TLS and SASL from the security properties of p, as
// librdkafka reads them; other names in p are ignored. Certificate and key
// files are read now.
func SecurityOf(p map[string]string) (Security, error) {
	proto := strings.ToUpper(p["security.protocol"])
	if proto == "" {
		proto = "PLAINTEXT"
	}
	var useTLS, useSASL bool
	switch proto {
	case "PLAINTEXT":
	case "SSL":
		useTLS = true
	case "SASL_PLAINTEXT":
		useSASL = true
	case "SASL_SSL":
		useTLS, useSASL = true, true
	default:
		return Security{}, fmt.Errorf("-X security.protocol=%s: want PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL", p["security.protocol"])
	}
	for _, k := range []string{"sasl.mechanism", "sasl.mechanisms", "sasl.username", "sasl.password", "sasl.oauthbearer.token"} {
		if p[k] != "" && !useSASL {
			return Security{}, fmt.Errorf("-X %s is set but security.protocol=%s does not use SASL (want SASL_SSL or SASL_PLAINTEXT)", k, proto)
		}
	}
	for _, k := range []string{"ssl.ca.location", "ssl.certificate.location", "ssl.key.location"} {
		if p[k] != "" && !useTLS {
			return Security{}, fmt.Errorf("-X %s is set but security.protocol=%s does not use TLS (want SSL or SASL_SSL)", k, proto)
		}
	}
	s := Security{Protocol: proto}
	if useTLS {
		cfg, err := clientTLS(p)
		if err != nil {
			return Security{}, err
		}
		s.TLS = cfg
	}
	if useSASL {
		m, err := clientSASL(p)
		if err != nil {
			return Security{}, err
		}
		s.SASL = m
	}
	return s, nil
}

// Opts are the client options of s: kgo.DialTLSConfig and kgo.SASL.
func (s Security) Opts() []kgo.Opt {
	var opts []kgo.Opt
	if s.TLS != nil {
		opts = append(opts, kgo.DialTLSConfig(s.TLS))
	}
	return append(opts, s.SASLOpts()...)
}

// SASLOpts is kgo.SASL alone, for a client that dials through something
// that does the TLS for it (a proxy with Dial as its upstream dialer): kgo
// refuses both a Dialer and DialTLSConfig.
func (s Security) SASLOpts() []kgo.Opt {
	if s.SASL == nil {
		return nil
	}
	return []kgo.Opt{kgo.SASL(s.SASL)}
}

// Dial connects to addr as a client with Opts would: over TLS if s has it,
// verifying the broker's name (the host of addr) as kgo does.
func (s Security) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: 10 * time.Second}
	if s.TLS == nil {
		return d.DialContext(ctx, network, addr)
	}
	cfg := s.TLS.Clone()
	if cfg.ServerName == "" {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("unable to split host:port for dialing: %w", err)
		}
		cfg.ServerName = host
	}
	return (&tls.Dialer{NetDialer: d, Config: cfg}).DialContext(ctx, network, addr)
}

// Opts builds the options of a client from properties p: seed brokers
// (seeds, or -X brokers=…), client id (clientID, or -X client.id=…), TLS
// and SASL.
func Opts(p map[string]string, seeds []string, clientID string) ([]kgo.Opt, error) {
	if b, ok := p["brokers"]; ok {
		seeds = strings.Split(b, ",")
	}
	if id, ok := p["client.id"]; ok {
		clientID = id
	}
	sec, err := SecurityOf(p)
	if err != nil {
		return nil, err
	}
	return append([]kgo.Opt{kgo.SeedBrokers(seeds...), kgo.ClientID(clientID)}, sec.Opts()...), nil
}

func clientTLS(p map[string]string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca := p["ssl.ca.location"]; ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("-X ssl.ca.location: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-X ssl.ca.location=%s: no PEM certificate in it", ca)
		}
	}
	cert, key := p["ssl.certificate.location"], p["ssl.key.location"]
	if (cert == "") != (key == "") {
		return nil, errors.New("-X ssl.certificate.location and ssl.key.location go together")
	}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	switch alg := strings.ToLower(p["ssl.endpoint.identification.algorithm"]); alg {
	case "", "https":
	case "none":
		// The chain is still verified; only the host name is not.
		roots := cfg.RootCAs
		cfg.InsecureSkipVerify = true
		cfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("the broker sent no certificate")
			}
			certs := make([]*x509.Certificate, len(raw))
			for i, r := range raw {
				c, err := x509.ParseCertificate(r)
				if err != nil {
					return err
				}
				certs[i] = c
			}
			inter := x509.NewCertPool()
			for _, c := range certs[1:] {
				inter.AddCert(c)
			}
			_, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
			return err
		}
	default:
		return nil, fmt.Errorf("-X ssl.endpoint.identification.algorithm=%s: want https or none", alg)
	}
	return cfg, nil
}

func clientSASL(p map[string]string) (sasl.Mechanism, error) {
	mech := p["sasl.mechanism"]
	if mech == "" {
		mech = p["sasl.mechanisms"]
	}
	user, pass := p["sasl.username"], p["sasl.password"]
	needUser := func() error {
		if user == "" || pass == "" {
			return fmt.Errorf("-X sasl.mechanism=%s needs -X sasl.username and -X sasl.password", mech)
		}
		return nil
	}
	switch strings.ToUpper(mech) {
	case "PLAIN":
		if err := needUser(); err != nil {
			return nil, err
		}
		return plain.Auth{User: user, Pass: pass}.AsMechanism(), nil
	case "SCRAM-SHA-256":
		if err := needUser(); err != nil {
			return nil, err
		}
		return scram.Auth{User: user, Pass: pass}.AsSha256Mechanism(), nil
	case "SCRAM-SHA-512":
		if err := needUser(); err != nil {
			return nil, err
		}
		return scram.Auth{User: user, Pass: pass}.AsSha512Mechanism(), nil
	case "OAUTHBEARER":
		if p["sasl.oauthbearer.token"] == "" {
			return nil, errors.New("-X sasl.mechanism=OAUTHBEARER needs -X sasl.oauthbearer.token=<JWT>")
		}
		return oauth.Auth{Token: p["sasl.oauthbearer.token"]}.AsMechanism(), nil
	case "":
		return nil, errors.New("-X security.protocol uses SASL: set -X sasl.mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER)")
	}
	return nil, fmt.Errorf("-X sasl.mechanism=%s: want PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER", mech)
}
