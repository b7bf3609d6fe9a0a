package broker

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime/debug"
	"slices"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/idem-dev/idem/internal/admin/api"
	"github.com/idem-dev/idem/internal/admin/console"
	"github.com/idem-dev/idem/internal/config"
	"github.com/idem-dev/idem/internal/security"
)

// adminAPI makes the admin API's service: its Kafka clients dial this
// broker's own listeners (the bound address, whatever is advertised), as
// the admin server's Basic user when there is one.
func (b *Broker) adminAPI(listeners []config.Listener, bound []net.Addr, credentials bool) *api.Service {
	var shown []api.Listener
	for i, l := range listeners {
		shown = append(shown, api.Listener{Name: l.Name, Protocol: l.Protocol, Address: bound[i].String()})
	}
	return api.New(api.Config{
		ClientOpts: func(user, password string) ([]kgo.Opt, error) {
			return b.adminClientOpts(listeners, bound, user, password)
		},
		Credentials: credentials,
		NodeID:      int32(b.conf.Int("node.id")),
		Version:     version(),
		Listeners:   shown,
		Health:      b.health,
		Logger:      b.log,
	})
}

// version is the module version of the running idem ("(devel)" in a
// plain source build).
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "github.com/idem-dev/idem" {
				return d.Version
			}
		}
		if bi.Main.Path == "github.com/idem-dev/idem" && bi.Main.Version != "" {
			return bi.Main.Version
		}
	}
	return "(devel)"
}

// adminClientOpts picks the listener the admin API's client for user uses
// and the options to reach it: with credentials, a SASL listener offering
// PLAIN or SCRAM (so the user's ACLs apply); without, a PLAINTEXT or SSL
// listener that needs no client certificate.
func (b *Broker) adminClientOpts(listeners []config.Listener, bound []net.Addr, user, password string) ([]kgo.Opt, error) {
	pick := -1
	var mech string
	if user != "" {
		for i, l := range listeners {
			if !l.SASL() || (l.TLS() && b.conf.ForListener(l.Name, "ssl.client.auth") == "required") {
				continue
			}
			mechs := splitList(b.conf.ForListener(l.Name, "sasl.enabled.mechanisms"))
			for _, m := range []string{security.MechPlain, security.MechScramSHA512, security.MechScramSHA256} {
				if slices.Contains(mechs, m) {
					pick, mech = i, m
					break
				}
			}
			if pick >= 0 {
				break
			}
		}
	}
	if pick < 0 {
		for i, l := range listeners {
			if !l.SASL() && (!l.TLS() || b.conf.ForListener(l.Name, "ssl.client.auth") != "required") {
				pick = i
				break
			}
		}
	}
	if pick < 0 {
		return nil, errors.New("admin api: no Kafka listener it can connect to (it needs PLAINTEXT, SSL without required client certificates, or SASL with PLAIN or SCRAM and the admin server's Basic credentials)")
	}
	l := listeners[pick]
	addr := bound[pick].String()
	if tcp, ok := bound[pick].(*net.TCPAddr); ok && tcp.IP.IsUnspecified() {
		addr = net.JoinHostPort("127.0.0.1", fmt.Sprint(tcp.Port))
	}
	var tlsCfg *tls.Config
	if l.TLS() {
		tlsCfg = b.selfTLS()
	}
	dialer := &net.Dialer{}
	opts := []kgo.Opt{
		kgo.SeedBrokers(addr),
		// Every connection goes to the listener's bound address: the
		// advertised one may not route from inside the broker's host.
		kgo.Dialer(func(ctx context.Context, network, _ string) (net.Conn, error) {
			conn, err := dialer.DialContext(ctx, network, addr)
			if err != nil || tlsCfg == nil {
				return conn, err
			}
			tc := tls.Client(conn, tlsCfg)
			if err := tc.HandshakeContext(ctx); err != nil {
				conn.Close()
				return nil, err
			}
			return tc, nil
		}),
	}
	switch mech {
	case security.MechPlain:
		opts = append(opts, kgo.SASL(plain.Auth{User: user, Pass: password}.AsMechanism()))
	case security.MechScramSHA512:
		opts = append(opts, kgo.SASL(scram.Auth{User: user, Pass: password}.AsSha512Mechanism()))
	case security.MechScramSHA256:
		opts = append(opts, kgo.SASL(scram.Auth{User: user, Pass: password}.AsSha256Mechanism()))
	}
	return opts, nil
}

// selfTLS is the client side of a TLS connection to this broker's own
// listener: the certificate must be the one the listener serves now (the
// connection never leaves the host, and the broker knows its certificate,
// so it pins it instead of trusting a CA).
func (b *Broker) selfTLS() *tls.Config {
	src := b.tls
	return &tls.Config{
		InsecureSkipVerify: true, // replaced by the pinning below
		VerifyConnection: func(cs tls.ConnectionState) error {
			if src == nil || len(cs.PeerCertificates) == 0 {
				return errors.New("admin api: no certificate to check the listener's against")
			}
			cfg, err := src.ServerConfig().GetConfigForClient(nil)
			if err != nil {
				return err
			}
			for _, c := range cfg.Certificates {
				if len(c.Certificate) > 0 && bytes.Equal(c.Certificate[0], cs.PeerCertificates[0].Raw) {
					return nil
				}
			}
			return errors.New("admin api: the listener presented a certificate that is not the broker's")
		},
	}
}

// adminHandler is what the admin server serves besides /healthz, /metrics
// and pprof: the API under /v1/ and the web console at /.
func (b *Broker) adminHandler(svc *api.Service) (http.Handler, error) {
	con, err := console.New(console.Config{API: svc, Gatherer: b.reg, Logger: b.log})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/", svc.Handler())
	mux.Handle("/", con.Handler())
	return mux, nil
}
