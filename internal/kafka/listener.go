package kafka

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/idem-dev/idem/internal/kafka/api"
	"github.com/idem-dev/idem/internal/security"
)

// Listener is what a listener's connections share: its name, whether they
// speak TLS, whether they must authenticate with SASL, and the address
// their clients are told to use.
type Listener struct {
	// Name is the listener's name (PLAINTEXT, SASL_SSL, or a custom name
	// mapped by listener.security.protocol.map).
	Name string
	// TLS, if set, wraps every connection in TLS (SSL, SASL_SSL).
	TLS *tls.Config
	// Principals maps a verified client certificate to a principal; nil
	// leaves certificate clients ANONYMOUS (until SASL says otherwise).
	Principals *security.PrincipalMapper
	// SASL, if set, requires authentication before any request but
	// ApiVersions and the SASL ones (SASL_PLAINTEXT, SASL_SSL).
	SASL *security.Authenticator
	// ReauthAfter is connections.max.reauth.ms (KIP-368); 0 means sessions
	// last as long as their credential.
	ReauthAfter time.Duration
	// AdvertisedHost and AdvertisedPort are what this listener's clients
	// are told in Metadata; an empty host means Env's.
	AdvertisedHost string
	AdvertisedPort int32
}

// tlsHandshakeTimeout bounds a TLS handshake, so that a client that
// connects and says nothing holds a connection slot only briefly.
const tlsHandshakeTimeout = 10 * time.Second

// secure runs the TLS handshake on a listener with TLS and sets the
// principal from a verified client certificate. It runs on the
// connection's own goroutine, never on the accept loop.
func (c *conn) secure() error {
	if c.listener.TLS == nil {
		return nil
	}
	tc := tls.Server(c.nc, c.listener.TLS)
	tc.SetDeadline(time.Now().Add(tlsHandshakeTimeout))
	if err := tc.HandshakeContext(c.ctx); err != nil {
		var rec tls.RecordHeaderError
		if errors.As(err, &rec) {
			return fmt.Errorf("%w: not TLS (a plaintext client on a TLS listener?): %v", errTLS, err)
		}
		return fmt.Errorf("%w: %v", errTLS, err)
	}
	tc.SetDeadline(time.Time{})
	c.rw = tc
	if certs := tc.ConnectionState().PeerCertificates; len(certs) > 0 && c.listener.Principals != nil {
		p, err := c.listener.Principals.CertificatePrincipal(certs[0])
		if err != nil {
			return fmt.Errorf("%w: client certificate %q: %v", errTLS, certs[0].Subject, err)
		}
		c.info.Principal = p
	}
	return nil
}

// errTLS wraps TLS handshake failures: the connection is closed and the
// failure logged (at most once a second).
var errTLS = errors.New("kafka: TLS handshake failed")

// hostOf is the IP of a remote address, as ACL bindings name hosts.
func hostOf(a net.Addr) string {
	if tcp, ok := a.(*net.TCPAddr); ok {
		return tcp.IP.String()
	}
	if h, _, err := net.SplitHostPort(addrString(a)); err == nil {
		return h
	}
	return addrString(a)
}

// newSASLState is a connection's SASL state on a listener that requires it.
func (l *Listener) newSASLState() *api.SASLState {
	if l.SASL == nil {
		return nil
	}
	return &api.SASLState{Auth: l.SASL, ReauthAfter: l.ReauthAfter}
}
