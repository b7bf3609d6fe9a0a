package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// clientFlags are the connection flags of a command that talks to a broker
// as a client (topic, group, txn, produce, consume, user, acl). As in rpk
// and kcat, -X sets a client property by its librdkafka name, so scripts
// can say either --brokers or -X brokers=…, and connect with
// -X security.protocol=SASL_SSL -X sasl.mechanism=SCRAM-SHA-256 ….
// They are registered per command tree, not on the root, because `serve`
// uses -X for broker properties. Each tree has its own.
type clientFlags struct {
	brokers []string
	props   []string
}

// addClientFlags registers --brokers and -X as persistent flags of cmd and
// returns where they land.
func addClientFlags(cmd *cobra.Command) *clientFlags {
	f := &clientFlags{}
	cmd.PersistentFlags().StringSliceVar(&f.brokers, "brokers", []string{"127.0.0.1:9092"}, "comma-separated seed brokers (host:port)")
	cmd.PersistentFlags().StringArrayVarP(&f.props, "set", "X", nil,
		"client property name=value, repeatable: brokers, client.id, security.protocol, sasl.mechanism, sasl.username, sasl.password, "+
			"sasl.oauthbearer.token, ssl.ca.location, ssl.certificate.location, ssl.key.location, ssl.endpoint.identification.algorithm")
	return f
}

// clientProperties are the -X names understood, librdkafka's (kcat's).
var clientProperties = map[string]bool{
	"brokers": true, "client.id": true,
	"security.protocol": true, "sasl.mechanism": true, "sasl.mechanisms": true,
	"sasl.username": true, "sasl.password": true, "sasl.oauthbearer.token": true,
	"ssl.ca.location": true, "ssl.certificate.location": true, "ssl.key.location": true,
	"ssl.endpoint.identification.algorithm": true,
}

// opts turns the flags into kgo options. Unknown -X names are an error, not
// silently ignored: a typo must not send records somewhere unexpected, or
// in clear text.
func (f *clientFlags) opts() ([]kgo.Opt, error) {
	seeds := f.brokers
	props := map[string]string{}
	var opts []kgo.Opt
	for _, p := range f.props {
		name, value, ok := strings.Cut(p, "=")
		if !ok {
			return nil, fmt.Errorf("-X %q: want name=value", p)
		}
		if !clientProperties[name] {
			known := make([]string, 0, len(clientProperties))
			for k := range clientProperties {
				known = append(known, k)
			}
			sort.Strings(known)
			return nil, fmt.Errorf("-X %s: unknown client property %q (known: %s)", p, name, strings.Join(known, ", "))
		}
		props[name] = value
		switch name {
		case "brokers":
			seeds = strings.Split(value, ",")
		case "client.id":
			opts = append(opts, kgo.ClientID(value))
		}
	}
	sec, err := securityOpts(props)
	if err != nil {
		return nil, err
	}
	return append(append([]kgo.Opt{kgo.SeedBrokers(seeds...), kgo.ClientID("idem-cli")}, opts...), sec...), nil
}

// securityOpts builds TLS and SASL from the security properties, as
// librdkafka reads them.
func securityOpts(p map[string]string) ([]kgo.Opt, error) {
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
		return nil, fmt.Errorf("-X security.protocol=%s: want PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL", p["security.protocol"])
	}
	for _, k := range []string{"sasl.mechanism", "sasl.mechanisms", "sasl.username", "sasl.password", "sasl.oauthbearer.token"} {
		if p[k] != "" && !useSASL {
			return nil, fmt.Errorf("-X %s is set but security.protocol=%s does not use SASL (want SASL_SSL or SASL_PLAINTEXT)", k, proto)
		}
	}
	for _, k := range []string{"ssl.ca.location", "ssl.certificate.location", "ssl.key.location"} {
		if p[k] != "" && !useTLS {
			return nil, fmt.Errorf("-X %s is set but security.protocol=%s does not use TLS (want SSL or SASL_SSL)", k, proto)
		}
	}
	var opts []kgo.Opt
	if useTLS {
		cfg, err := clientTLS(p)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(cfg))
	}
	if useSASL {
		m, err := clientSASL(p)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.SASL(m))
	}
	return opts, nil
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

// newClient builds a kgo client from the connection flags plus extra.
func (f *clientFlags) newClient(extra ...kgo.Opt) (*kgo.Client, error) {
	opts, err := f.opts()
	if err != nil {
		return nil, err
	}
	return kgo.NewClient(append(opts, extra...)...)
}

// newAdmin builds an admin client; close it with the returned func.
func (f *clientFlags) newAdmin() (*kadm.Client, func(), error) {
	cl, err := f.newClient()
	if err != nil {
		return nil, nil, err
	}
	return kadm.NewClient(cl), cl.Close, nil
}
