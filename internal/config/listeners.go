package config

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"sort"
	"strings"
)

// Security protocols of listeners (listener.security.protocol.map).
const (
	Plaintext     = "PLAINTEXT"
	SSL           = "SSL"
	SASLPlaintext = "SASL_PLAINTEXT"
	SASLSSL       = "SASL_SSL"
)

// Listener is one entry of listeners with its security protocol and the
// address advertised for it.
type Listener struct {
	Name     string // PLAINTEXT, SASL_SSL, or a custom name
	Protocol string // from listener.security.protocol.map
	Host     string // "" binds every interface
	Port     int
	// AdvertisedHost and AdvertisedPort come from advertised.listeners;
	// empty when it does not name this listener.
	AdvertisedHost string
	AdvertisedPort int
}

// TLS reports whether the listener's connections are encrypted.
func (l Listener) TLS() bool { return l.Protocol == SSL || l.Protocol == SASLSSL }

// SASL reports whether the listener's clients must authenticate with SASL.
func (l Listener) SASL() bool { return l.Protocol == SASLPlaintext || l.Protocol == SASLSSL }

// URL is the listener as written in listeners.
func (l Listener) URL() string {
	return l.Name + "://" + net.JoinHostPort(l.Host, fmt.Sprint(l.Port))
}

var listenerName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// parseListenerList reads "NAME://host:port,…"; a bare host:port has the
// name PLAINTEXT (the single-listener shorthand).
func parseListenerList(v string) ([]Listener, error) {
	var out []Listener
	seen := map[string]bool{}
	ports := map[int]string{}
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name := Plaintext
		if i := strings.Index(item, "://"); i >= 0 {
			name = strings.ToUpper(item[:i])
			if !listenerName.MatchString(name) {
				return nil, fmt.Errorf("listener name %q: letters, digits, _ and - only", item[:i])
			}
		}
		h, p, err := HostPort(item)
		if err != nil {
			return nil, fmt.Errorf("listener %q: %v", item, err)
		}
		if seen[name] {
			return nil, fmt.Errorf("listener name %s appears twice", name)
		}
		if other, dup := ports[p]; dup && p != 0 {
			return nil, fmt.Errorf("listeners %s and %s share port %d", other, name, p)
		}
		seen[name], ports[p] = true, name
		out = append(out, Listener{Name: name, Host: h, Port: p})
	}
	return out, nil
}

func parseProtocolMap(v string) (map[string]string, error) {
	m := map[string]string{}
	for _, item := range strings.Split(v, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, proto, ok := strings.Cut(item, ":")
		if !ok {
			return nil, fmt.Errorf("%q: want NAME:PROTOCOL", item)
		}
		proto = strings.ToUpper(strings.TrimSpace(proto))
		switch proto {
		case Plaintext, SSL, SASLPlaintext, SASLSSL:
		default:
			return nil, fmt.Errorf("%q: protocol %s is not PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL", item, proto)
		}
		m[strings.ToUpper(strings.TrimSpace(name))] = proto
	}
	return m, nil
}

func checkProtocolMap(v string) error {
	_, err := parseProtocolMap(v)
	return err
}

func checkAuthorizer(v string) error {
	if !validAuthorizer(v) {
		return errors.New("want empty, idem, org.apache.kafka.metadata.authorizer.StandardAuthorizer or kafka.security.authorizer.AclAuthorizer")
	}
	return nil
}

func validAuthorizer(v string) bool {
	switch v {
	case "", "idem", "org.apache.kafka.metadata.authorizer.StandardAuthorizer", "kafka.security.authorizer.AclAuthorizer", "kafka.security.auth.SimpleAclAuthorizer":
		return true
	}
	return false
}

// AuthorizerEnabled reports whether authorizer.class.name names one.
func (c *Config) AuthorizerEnabled() bool { return c.String("authorizer.class.name") != "" }

// Listeners resolves listeners, listener.security.protocol.map and
// advertised.listeners into one list, checking that they agree.
func (c *Config) Listeners() ([]Listener, error) {
	ls, err := parseListenerList(c.String("listeners"))
	if err != nil {
		return nil, fmt.Errorf("%w: listeners: %v", ErrInvalid, err)
	}
	protos, err := parseProtocolMap(c.String("listener.security.protocol.map"))
	if err != nil {
		return nil, fmt.Errorf("%w: listener.security.protocol.map: %v", ErrInvalid, err)
	}
	for i := range ls {
		p, ok := protos[ls[i].Name]
		if !ok {
			return nil, fmt.Errorf("%w: listener %s has no security protocol: add %s:<PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL> to listener.security.protocol.map", ErrInvalid, ls[i].Name, ls[i].Name)
		}
		ls[i].Protocol = p
	}
	adv, err := parseListenerList(c.String("advertised.listeners"))
	if err != nil {
		return nil, fmt.Errorf("%w: advertised.listeners: %v", ErrInvalid, err)
	}
	for _, a := range adv {
		found := false
		for i := range ls {
			if ls[i].Name == a.Name {
				ls[i].AdvertisedHost, ls[i].AdvertisedPort, found = a.Host, a.Port, true
			}
		}
		if !found {
			if len(adv) == 1 && a.Name == Plaintext {
				// The single-address shorthand (--advertised-addr host:port)
				// is for the first listener.
				ls[0].AdvertisedHost, ls[0].AdvertisedPort = a.Host, a.Port
				continue
			}
			return nil, fmt.Errorf("%w: advertised.listeners names %s, which is not in listeners", ErrInvalid, a.Name)
		}
	}
	return ls, nil
}

// Unauthenticated reports whether a listener lets clients in without
// authenticating: PLAINTEXT, or SSL without a required client certificate.
func (c *Config) Unauthenticated(l Listener) bool {
	switch l.Protocol {
	case Plaintext:
		return true
	case SSL:
		return c.String("ssl.client.auth") != "required"
	}
	return false
}

// Loopback reports whether host binds only the loopback interface.
func Loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// listenerOverridable are the properties one listener may set for itself
// with listener.name.<name>.<property>, as Kafka's listener-prefixed
// configs do: its mechanisms, its TLS material, its client authentication
// and its re-authentication period.
var listenerOverridable = map[string]bool{
	"sasl.enabled.mechanisms":        true,
	"connections.max.reauth.ms":      true,
	"ssl.keystore.location":          true,
	"ssl.keystore.certificate.chain": true,
	"ssl.keystore.key":               true,
	"ssl.truststore.location":        true,
	"ssl.truststore.certificates":    true,
	"ssl.client.auth":                true,
	"ssl.enabled.protocols":          true,
	"ssl.principal.mapping.rules":    true,
}

const listenerPrefix = "listener.name."

// splitListenerProperty splits listener.name.<listener>.<property>.
func splitListenerProperty(name string) (listener, prop string, ok bool) {
	rest, found := strings.CutPrefix(name, listenerPrefix)
	if !found {
		return "", "", false
	}
	listener, prop, ok = strings.Cut(rest, ".")
	return strings.ToLower(listener), prop, ok && listener != ""
}

// lookupListenerProperty validates a listener.name.… name and returns the
// property it overrides.
func lookupListenerProperty(name string) (*Property, error) {
	listener, prop, ok := splitListenerProperty(name)
	if !ok || !listenerName.MatchString(listener) {
		return nil, fmt.Errorf("%w %q: want listener.name.<listener>.<property>", ErrUnknown, name)
	}
	p, known := byName[prop]
	if !known || !listenerOverridable[prop] {
		names := make([]string, 0, len(listenerOverridable))
		for n := range listenerOverridable {
			names = append(names, n)
		}
		sort.Strings(names)
		return nil, fmt.Errorf("%w %q: a listener may override only %s", ErrUnknown, name, strings.Join(names, ", "))
	}
	return p, nil
}

// ValidateProperty checks name=value as Set would, without storing it:
// a registry property or a listener override.
func ValidateProperty(name, value string) error {
	if strings.HasPrefix(name, listenerPrefix) {
		p, err := lookupListenerProperty(name)
		if err != nil {
			return err
		}
		return p.validate(name, value)
	}
	p, ok := byName[name]
	if !ok {
		return fmt.Errorf("%w %q (see `idem serve --help-properties` for the list)", ErrUnknown, name)
	}
	return p.Validate(value)
}

// ForListener is property name as the listener called listener sees it: its
// listener.name.<listener>.<name> override if set, else the broker's.
func (c *Config) ForListener(listener, name string) string {
	c.mu.RLock()
	v, ok := c.set[listenerPrefix+strings.ToLower(listener)+"."+name]
	c.mu.RUnlock()
	if ok {
		return v
	}
	return c.String(name)
}
