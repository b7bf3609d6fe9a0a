package broker

import (
	"fmt"
	"net"
	"slices"
	"strconv"
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
// properties, each listener reading its listener.name.<name>.… overrides
// first. Listeners whose material is the same share one TLSSource (loaded
// and checked once, reloaded when its files change) and one Authenticator.
func (b *Broker) securityListeners(ls []config.Listener, store *security.Store) ([]*kafka.Listener, error) {
	c := b.conf
	sources := map[string]*security.TLSSource{} // by their TLSConfig, printed
	auths := map[string]*security.Authenticator{}
	out := make([]*kafka.Listener, len(ls))
	for i, l := range ls {
		get := func(name string) string { return c.ForListener(l.Name, name) }
		kl := &kafka.Listener{Name: l.Name, AdvertisedHost: l.AdvertisedHost, AdvertisedPort: int32(l.AdvertisedPort)}
		if l.TLS() {
			tc := security.TLSConfig{
				KeystoreLocation:       get("ssl.keystore.location"),
				KeystoreChain:          get("ssl.keystore.certificate.chain"),
				KeystoreKey:            get("ssl.keystore.key"),
				KeyPassword:            c.String("ssl.key.password"),
				TruststoreLocation:     get("ssl.truststore.location"),
				TruststoreCertificates: get("ssl.truststore.certificates"),
				ClientAuth:             get("ssl.client.auth"),
				Protocols:              splitList(get("ssl.enabled.protocols")),
			}
			src, ok := sources[fmt.Sprintf("%#v", tc)]
			if !ok {
				var err error
				if src, err = security.NewTLSSource(tc); err != nil {
					return nil, fmt.Errorf("listener %s: %w", l.URL(), err)
				}
				sources[fmt.Sprintf("%#v", tc)] = src
				if b.tls == nil {
					b.tls = src
				}
			}
			mapper, err := security.NewPrincipalMapper(get("ssl.principal.mapping.rules"))
			if err != nil {
				return nil, fmt.Errorf("listener %s: %w", l.URL(), err)
			}
			kl.TLS, kl.Principals = src.ServerConfig(), mapper
		}
		if l.SASL() {
			mechs := splitList(get("sasl.enabled.mechanisms"))
			key := strings.Join(mechs, ",")
			auth, ok := auths[key]
			if !ok {
				var oauth *security.OAuthValidator
				if slices.Contains(mechs, security.MechOAuthBearer) {
					var err error
					if oauth, err = b.oauthValidator(); err != nil {
						return nil, err
					}
				}
				var err error
				if auth, err = security.NewAuthenticator(store, mechs, oauth); err != nil {
					return nil, fmt.Errorf("listener %s: %w", l.URL(), err)
				}
				auths[key] = auth
				if len(store.Users()) == 0 && oauth == nil {
					b.log.Warn("SASL listeners are configured but no user exists: create one with `idem user create --data-dir …` (before the start) or AlterUserScramCredentials")
				}
			}
			reauth, _ := strconv.ParseInt(get("connections.max.reauth.ms"), 10, 64)
			kl.SASL, kl.ReauthAfter = auth, time.Duration(reauth)*time.Millisecond
			if !l.TLS() && !config.Loopback(l.Host) && slices.Contains(auth.Mechanisms(), security.MechPlain) {
				b.log.Warn("PLAIN sends passwords in clear text on a listener without TLS; use SASL_SSL, or leave PLAIN out of sasl.enabled.mechanisms", "listener", l.URL())
			}
		}
		out[i] = kl
	}
	return out, nil
}

// oauthValidator is the broker's one OAUTHBEARER token validator, made on
// first use and closed with the broker.
func (b *Broker) oauthValidator() (*security.OAuthValidator, error) {
	if b.oauth != nil {
		return b.oauth, nil
	}
	c := b.conf
	v, err := security.NewOAuthValidator(security.OAuthConfig{
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
	if c.Bool("idem.sasl.oauthbearer.unsecured.jwt.enable") {
		b.log.Warn("OAUTHBEARER accepts unsigned tokens (idem.sasl.oauthbearer.unsecured.jwt.enable=true): any client can claim any identity; for development only")
	}
	b.oauth = v
	return v, nil
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
