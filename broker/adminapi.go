package broker

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"slices"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/idem-dev/idem/internal/admin/api"
	"github.com/idem-dev/idem/internal/admin/console"
	"github.com/idem-dev/idem/internal/config"
	"github.com/idem-dev/idem/internal/logstore"
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
		Lab:         b.labRuns(listeners, bound),
	})
}

// labRuns is the manager of the lab runs the API starts; reports are kept
// under the data directory's lab/ when the data is on disk.
func (b *Broker) labRuns(listeners []config.Listener, bound []net.Addr) *api.LabRuns {
	var dataDir string
	if b.fs == logstore.OSFS() {
		dataDir = b.conf.String("log.dirs")
	}
	return api.NewLabRuns(api.LabRunsConfig{
		Executable: labExecutable(),
		Target: func(user, password string) (api.LabTarget, error) {
			return b.labTarget(listeners, bound, user, password)
		},
		DataDir: dataDir,
		Logger:  b.log,
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
	pick, mech, err := b.adminListener(listeners, user, true)
	if err != nil {
		return nil, err
	}
	l := listeners[pick]
	addr := dialable(bound[pick])
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

// adminListener picks the listener a client of the admin server's user
// connects to, and its SASL mechanism: with a user, a SASL listener offering
// PLAIN or SCRAM (so the user's ACLs apply); without, a PLAINTEXT or SSL
// listener that needs no client certificate. withTLS false leaves out TLS
// listeners (the lab's consumer processes cannot pin the certificate).
func (b *Broker) adminListener(listeners []config.Listener, user string, withTLS bool) (int, string, error) {
	pick := -1
	var mech string
	if user != "" {
		for i, l := range listeners {
			if !l.SASL() || (l.TLS() && (!withTLS || b.conf.ForListener(l.Name, "ssl.client.auth") == "required")) {
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
			if !l.SASL() && (!l.TLS() || (withTLS && b.conf.ForListener(l.Name, "ssl.client.auth") != "required")) {
				pick = i
				break
			}
		}
	}
	if pick < 0 {
		return -1, "", errors.New("admin api: no Kafka listener it can connect to (it needs PLAINTEXT, SSL without required client certificates, or SASL with PLAIN or SCRAM and the admin server's Basic credentials)")
	}
	return pick, mech, nil
}

// dialable is a bound address a client on this host can dial: a wildcard
// host becomes 127.0.0.1.
func dialable(bound net.Addr) string {
	if tcp, ok := bound.(*net.TCPAddr); ok && tcp.IP.IsUnspecified() {
		return net.JoinHostPort("127.0.0.1", fmt.Sprint(tcp.Port))
	}
	return bound.String()
}

// labTarget is how a lab run started through the API by user reaches this
// broker: the listener the API's client would use, but never one with TLS
// (the lab's consumer processes, with only client properties, could not
// pin the listener's certificate as the API's client does).
func (b *Broker) labTarget(listeners []config.Listener, bound []net.Addr, user, password string) (api.LabTarget, error) {
	pick, mech, err := b.adminListener(listeners, user, false)
	if err != nil {
		return api.LabTarget{}, errors.New("lab runs need a PLAINTEXT listener, or a SASL_PLAINTEXT one with PLAIN or SCRAM and the admin server's Basic credentials; run `idem lab --bootstrap … -X …` to measure over TLS")
	}
	props := map[string]string{"security.protocol": listeners[pick].Protocol}
	if mech != "" {
		props["sasl.mechanism"], props["sasl.username"], props["sasl.password"] = mech, user, password
	}
	return api.LabTarget{Bootstrap: []string{dialable(bound[pick])}, ClientProps: props}, nil
}

// labExecutable is the program lab runs start as their children: the
// IDEM_LAB_EXECUTABLE environment variable, else this process when it is
// the idem binary; "" (lab runs refused) when a program embeds the broker.
func labExecutable() string {
	if exe := os.Getenv("IDEM_LAB_EXECUTABLE"); exe != "" {
		return exe
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Path == "github.com/idem-dev/idem/cmd/idem" {
		if exe, err := os.Executable(); err == nil {
			return exe
		}
	}
	return ""
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
// The console's lag sampler runs until close is called.
func (b *Broker) adminHandler(svc *api.Service) (h http.Handler, close func(), err error) {
	con, err := console.New(console.Config{API: svc, Gatherer: b.reg, Logger: b.log,
		LagSampleEvery: b.conf.Millis("idem.console.lag.sample.ms")})
	if err != nil {
		return nil, nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/v1/", svc.Handler())
	mux.Handle("/", con.Handler())
	return mux, con.Close, nil
}
