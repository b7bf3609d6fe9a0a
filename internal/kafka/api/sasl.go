package api

// The SASL state of a connection, shared by SaslHandshake (17),
// SaslAuthenticate (36) and the wire server, which checks it before every
// other request (internal/kafka/auth.go has the state diagram).

import (
	"fmt"
	"time"

	"github.com/idem-dev/idem/internal/security"
)

// SASLState is one connection's SASL progress, read and changed only on
// the connection's reading goroutine (the handlers of SaslHandshake and
// SaslAuthenticate, and the server's check before every other request).
type SASLState struct {
	Auth *security.Authenticator
	// ReauthAfter is connections.max.reauth.ms (0: sessions do not expire
	// unless the credential does).
	ReauthAfter time.Duration
	// Exchange is the exchange in progress after a SaslHandshake, nil
	// otherwise; Mechanism is its mechanism.
	Exchange  security.Exchange
	Mechanism string
	// RawTokens: the handshake was v0, so the tokens travel as bare
	// size-prefixed frames instead of SaslAuthenticate requests.
	RawTokens bool
	// Authenticated is set once an exchange succeeded; Expiry is when the
	// session ends (zero: never), after which only a re-authentication is
	// served.
	Authenticated bool
	Expiry        time.Time
}

// errReauth is a re-authentication that would change the connection's
// principal (KIP-368 forbids it).
var errReauth = fmt.Errorf("%w: re-authentication must keep the principal", security.ErrAuthentication)

// CompleteSASL records the end of a successful exchange: the principal, and
// when the session ends. It returns the session lifetime to announce (0:
// none), which is set only when connections.max.reauth.ms is: it is then
// the shorter of that and the credential's remaining validity.
func (c *Conn) CompleteSASL(now time.Time) (time.Duration, error) {
	s := c.SASL
	p := s.Exchange.Principal()
	if s.Authenticated && p != c.Principal {
		return 0, fmt.Errorf("%w: %s on a connection of %s", errReauth, p, c.Principal)
	}
	exp := s.Exchange.Expiry()
	c.Principal = p
	s.Authenticated, s.RawTokens, s.Exchange = true, false, nil
	s.Expiry = time.Time{}
	if s.ReauthAfter <= 0 {
		return 0, nil
	}
	s.Expiry = now.Add(s.ReauthAfter)
	if !exp.IsZero() && exp.Before(s.Expiry) {
		s.Expiry = exp
	}
	return max(s.Expiry.Sub(now), time.Millisecond), nil
}

// errIllegalSASLState is the message of a SASL request in the wrong state.
var errIllegalSASLState = fmt.Errorf("SASL request not expected now: send SaslHandshake v1 first, on a SASL listener")
