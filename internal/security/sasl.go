package security

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// ErrBadSASL is wrapped by errors for SASL messages that break their
// mechanism's grammar. Like a wrong password, it fails the authentication
// (SASL_AUTHENTICATION_FAILED, then the connection is closed).
var ErrBadSASL = errors.New("malformed SASL message")

// ErrAuthentication is wrapped by every failed authentication, so callers
// can tell it from a broken exchange.
var ErrAuthentication = errors.New("authentication failed")

// Exchange is the server side of one SASL authentication: the connection
// feeds it each client token and sends back what it answers.
type Exchange interface {
	// Step consumes one client token. done with a nil error means the
	// client is authenticated; any error ends the exchange and the
	// connection.
	Step(token []byte) (out []byte, done bool, err error)
	// Principal is the authenticated principal ("User:alice"), valid once
	// Step reported done.
	Principal() string
	// Expiry is when the credential stops being valid (an OAuth token's
	// exp), or the zero time when it does not expire.
	Expiry() time.Time
}

// CredentialSource is where exchanges look users up (the Store).
type CredentialSource interface {
	Credential(user string, m ScramMechanism) (Credential, bool)
}

// Authenticator starts SASL exchanges for the enabled mechanisms.
type Authenticator struct {
	users      CredentialSource
	mechanisms []string
	oauth      *OAuthValidator
	// decoyKey seeds the fake salts of unknown users, so that they are the
	// same for one name across attempts (a changing salt would tell).
	decoyKey [32]byte
}

// NewAuthenticator returns an authenticator for mechanisms (PLAIN,
// SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER); OAUTHBEARER needs oauth.
func NewAuthenticator(users CredentialSource, mechanisms []string, oauth *OAuthValidator) (*Authenticator, error) {
	a := &Authenticator{users: users, oauth: oauth}
	rand.Read(a.decoyKey[:])
	for _, m := range mechanisms {
		m = strings.TrimSpace(m)
		switch m {
		case "":
			continue
		case MechPlain, MechScramSHA256, MechScramSHA512:
		case MechOAuthBearer:
			if oauth == nil {
				return nil, fmt.Errorf("%w: OAUTHBEARER is enabled but no token validator is configured (set sasl.oauthbearer.jwks.endpoint.url or, for development only, idem.sasl.oauthbearer.unsecured.jwt.enable=true)", ErrUnsupportedMechanism)
			}
		default:
			return nil, fmt.Errorf("%w: %q (idem serves PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 and OAUTHBEARER)", ErrUnsupportedMechanism, m)
		}
		if !slices.Contains(a.mechanisms, m) {
			a.mechanisms = append(a.mechanisms, m)
		}
	}
	if len(a.mechanisms) == 0 {
		return nil, fmt.Errorf("%w: sasl.enabled.mechanisms is empty", ErrUnsupportedMechanism)
	}
	return a, nil
}

// Mechanisms lists the enabled mechanisms, as SaslHandshake answers them
// (always, even on success: kafkajs insists).
func (a *Authenticator) Mechanisms() []string { return a.mechanisms }

// Start begins an exchange for mechanism, or fails with
// ErrUnsupportedMechanism when it is not enabled.
func (a *Authenticator) Start(mechanism string) (Exchange, error) {
	if !slices.Contains(a.mechanisms, mechanism) {
		return nil, fmt.Errorf("%w: %q is not enabled (enabled: %s)", ErrUnsupportedMechanism, mechanism, strings.Join(a.mechanisms, ", "))
	}
	switch mechanism {
	case MechPlain:
		return &plainServer{a: a}, nil
	case MechScramSHA256, MechScramSHA512:
		m, _ := ParseScramMechanism(mechanism)
		return &scramExchange{scramServer{mech: m, lookup: func(u string) (Credential, bool) { return a.users.Credential(u, m) }, decoy: a.decoy}}, nil
	case MechOAuthBearer:
		return &oauthServer{v: a.oauth}, nil
	}
	return nil, fmt.Errorf("%w: %q", ErrUnsupportedMechanism, mechanism)
}

// decoy is a credential that no password matches, with a salt that is the
// same for one user name every time.
func (a *Authenticator) decoy(user string, m ScramMechanism) Credential {
	mac := hmac.New(sha256.New, a.decoyKey[:])
	mac.Write([]byte(user))
	salt := mac.Sum(nil)
	return Credential{Mechanism: m, Iterations: MinIterations, Salt: salt, StoredKey: make([]byte, m.size()), ServerKey: make([]byte, m.size())}
}

type scramExchange struct{ scramServer }

func (s *scramExchange) Expiry() time.Time { return time.Time{} }

// plainServer checks a PLAIN token (RFC 4616: authzid NUL user NUL
// password) against the user's stored SCRAM credential.
type plainServer struct {
	a         *Authenticator
	principal string
	done      bool
}

// maxPlainToken caps a PLAIN token: RFC 4616 allows 255 bytes per field.
const maxPlainToken = 3*255 + 2

func (p *plainServer) Step(token []byte) ([]byte, bool, error) {
	if p.done {
		return nil, false, fmt.Errorf("%w: PLAIN exchange already finished", ErrBadSASL)
	}
	p.done = true
	if len(token) > maxPlainToken {
		return nil, false, fmt.Errorf("%w: PLAIN token of %d bytes", ErrBadSASL, len(token))
	}
	parts := bytes.Split(token, []byte{0})
	if len(parts) != 3 {
		return nil, false, fmt.Errorf("%w: PLAIN token must be authzid NUL user NUL password", ErrBadSASL)
	}
	authzid, user, pass := string(parts[0]), string(parts[1]), string(parts[2])
	if user == "" || pass == "" {
		return nil, false, fmt.Errorf("%w: PLAIN user and password must not be empty", ErrBadSASL)
	}
	if authzid != "" && authzid != user {
		return nil, false, fmt.Errorf("%w: authorization id must be empty or the user name", ErrBadSASL)
	}
	cred, ok := p.a.users.Credential(user, ScramSHA512)
	if !ok {
		cred, ok = p.a.users.Credential(user, ScramSHA256)
	}
	if !ok {
		// Spend the same work as a real check: timing must not tell
		// whether the user exists.
		p.a.decoy(user, ScramSHA256).VerifyPassword(pass)
		return nil, false, errAuth
	}
	if !cred.VerifyPassword(pass) {
		return nil, false, errAuth
	}
	p.principal = "User:" + user
	return nil, true, nil
}

func (p *plainServer) Principal() string { return p.principal }
func (p *plainServer) Expiry() time.Time { return time.Time{} }

// CheckPassword reports whether password is user's, checked against the
// stored SCRAM credential as a PLAIN login is (the admin HTTP server's
// Basic authentication uses it).
func (a *Authenticator) CheckPassword(user, password string) bool {
	p := &plainServer{a: a}
	_, done, err := p.Step([]byte("\x00" + user + "\x00" + password))
	return err == nil && done
}
