package broker

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/idem-dev/idem/internal/admin"
	"github.com/idem-dev/idem/internal/config"
	"github.com/idem-dev/idem/internal/kafka"
	"github.com/idem-dev/idem/internal/security"
)

// refuseExposedListeners is the safe default: a listener that lets clients
// in without authentication may bind only loopback, unless the operator
// says explicitly that the network is trusted.
func refuseExposedListeners(conf *config.Config, ls []config.Listener) error {
	if conf.Bool("idem.listeners.allow.unauthenticated") {
		return nil
	}
	for _, l := range ls {
		if conf.Unauthenticated(l) && !config.Loopback(l.Host) {
			return fmt.Errorf("listener %s would let anyone who can reach %s in without authentication; "+
				"use SASL_SSL or SASL_PLAINTEXT (listener.security.protocol.map), or SSL with ssl.client.auth=required, "+
				"bind a loopback address, or set idem.listeners.allow.unauthenticated=true if the network itself keeps strangers out",
				l.URL(), net.JoinHostPort(l.Host, fmt.Sprint(l.Port)))
		}
	}
	return nil
}

// securityListeners builds each listener's TLS and SASL from the
// properties. TLS material is loaded (and checked) once, shared by every
// TLS listener, and reloaded when its files change.
func (b *Broker) securityListeners(ls []config.Listener, store *security.Store) ([]*kafka.Listener, error) {
	c := b.conf
	var tlsSource *security.TLSSource
	var mapper *security.PrincipalMapper
	var auth *security.Authenticator
	out := make([]*kafka.Listener, len(ls))
	for i, l := range ls {
		kl := &kafka.Listener{Name: l.Name, AdvertisedHost: l.AdvertisedHost, AdvertisedPort: int32(l.AdvertisedPort)}
		if l.TLS() {
			if tlsSource == nil {
				var err error
				tlsSource, err = security.NewTLSSource(security.TLSConfig{
					KeystoreLocation:       c.String("ssl.keystore.location"),
					KeystoreChain:          c.String("ssl.keystore.certificate.chain"),
					KeystoreKey:            c.String("ssl.keystore.key"),
					KeyPassword:            c.String("ssl.key.password"),
					TruststoreLocation:     c.String("ssl.truststore.location"),
					TruststoreCertificates: c.String("ssl.truststore.certificates"),
					ClientAuth:             c.String("ssl.client.auth"),
					Protocols:              splitList(c.String("ssl.enabled.protocols")),
				})
				if err != nil {
					return nil, fmt.Errorf("listener %s: %w", l.URL(), err)
				}
				if mapper, err = security.NewPrincipalMapper(c.String("ssl.principal.mapping.rules")); err != nil {
					return nil, err
				}
				b.tls = tlsSource
			}
			kl.TLS, kl.Principals = tlsSource.ServerConfig(), mapper
		}
		if l.SASL() {
			if auth == nil {
				mechs := splitList(c.String("sasl.enabled.mechanisms"))
				var oauth *security.OAuthValidator
				for _, m := range mechs {
					if m == security.MechOAuthBearer {
						var err error
						oauth, err = security.NewOAuthValidator(security.OAuthConfig{
							JWKS:      c.String("sasl.oauthbearer.jwks.endpoint.url"),
							Issuer:    c.String("sasl.oauthbearer.expected.issuer"),
							Audience:  splitList(c.String("sasl.oauthbearer.expected.audience")),
							SubClaim:  c.String("sasl.oauthbearer.sub.claim.name"),
							ClockSkew: time.Duration(c.Int("sasl.oauthbearer.clock.skew.seconds")) * time.Second,
							Unsecured: c.Bool("idem.sasl.oauthbearer.unsecured.jwt.enable"),
						})
						if err != nil {
							return nil, err
						}
						b.oauth = oauth
						if oauth != nil && c.Bool("idem.sasl.oauthbearer.unsecured.jwt.enable") {
							b.log.Warn("OAUTHBEARER accepts unsigned tokens (idem.sasl.oauthbearer.unsecured.jwt.enable=true): any client can claim any identity; for development only")
						}
					}
				}
				var err error
				if auth, err = security.NewAuthenticator(store, mechs, oauth); err != nil {
					return nil, err
				}
				if len(store.Users()) == 0 && oauth == nil {
					b.log.Warn("SASL listeners are configured but no user exists: create one with `idem user create --data-dir …` (before the start) or AlterUserScramCredentials")
				}
			}
			kl.SASL, kl.ReauthAfter = auth, c.Millis("connections.max.reauth.ms")
			if !l.TLS() && !config.Loopback(l.Host) && slices.Contains(auth.Mechanisms(), security.MechPlain) {
				b.log.Warn("PLAIN sends passwords in clear text on a listener without TLS; use SASL_SSL, or leave PLAIN out of sasl.enabled.mechanisms", "listener", l.URL())
			}
		}
		out[i] = kl
	}
	return out, nil
}

// secureAdmin gives the admin HTTP server the Kafka listeners' protection
// when security is configured (a listener other than PLAINTEXT, or the
// authorizer): HTTPS with the listeners' certificate when they have one,
// and Basic authentication with the broker's users, who need DESCRIBE on
// the cluster when the authorizer is on. /healthz stays open.
// idem.admin.security=none turns this off explicitly.
func (b *Broker) secureAdmin(cfg *admin.Config, ls []config.Listener, store *security.Store, az *security.Authorizer) error {
	secured := b.conf.AuthorizerEnabled()
	for _, l := range ls {
		secured = secured || l.Protocol != config.Plaintext
	}
	if !secured || b.conf.String("idem.admin.security") == "none" {
		return nil
	}
	if b.tls != nil {
		cfg.TLS = b.tls.ServerConfig()
	}
	check, err := security.NewAuthenticator(store, []string{security.MechPlain}, nil)
	if err != nil {
		return err
	}
	cfg.Authenticate = func(user, password string) bool {
		if !check.CheckPassword(user, password) {
			return false
		}
		return az == nil || az.Authorize("User:"+user, "", security.OpDescribe, security.ResourceCluster, security.ClusterName)
	}
	return nil
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}
