package security

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
)

// OAuthConfig configures OAUTHBEARER token validation (KIP-255, KIP-768),
// with Kafka's property names in the comments.
type OAuthConfig struct {
	// JWKS is where the signing keys are: a file path (or file:// URL),
	// reread when it changes, or an http(s) URL, refreshed in the
	// background (sasl.oauthbearer.jwks.endpoint.url).
	JWKS string
	// Issuer, if set, must equal the token's iss
	// (sasl.oauthbearer.expected.issuer).
	Issuer string
	// Audience, if set, must contain one of the token's aud
	// (sasl.oauthbearer.expected.audience).
	Audience []string
	// SubClaim names the claim that is the principal
	// (sasl.oauthbearer.sub.claim.name, default "sub").
	SubClaim string
	// ClockSkew is tolerated on exp, nbf and iat
	// (sasl.oauthbearer.clock.skew.seconds).
	ClockSkew time.Duration
	// Unsecured accepts tokens with alg "none", as Kafka's default
	// development validator does: anyone can then claim any identity. Only
	// for development; it is never on by default.
	Unsecured bool
	Now       func() time.Time
}

// OAuthValidator checks bearer tokens.
type OAuthValidator struct {
	cfg    OAuthConfig
	cancel context.CancelFunc

	mu       sync.Mutex
	keys     keyfunc.Keyfunc // mu guards keys, fileMod
	fileMod  time.Time
	fileName string
}

// maxJWKSFile caps the JWKS file read.
const maxJWKSFile = 1 << 20

// NewOAuthValidator prepares a validator; with an http(s) JWKS URL it
// starts the refresh goroutine that Close stops.
func NewOAuthValidator(cfg OAuthConfig) (*OAuthValidator, error) {
	if cfg.SubClaim == "" {
		cfg.SubClaim = "sub"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	v := &OAuthValidator{cfg: cfg}
	switch {
	case cfg.JWKS == "" && !cfg.Unsecured:
		return nil, errors.New("OAUTHBEARER needs sasl.oauthbearer.jwks.endpoint.url (or, for development only, idem.sasl.oauthbearer.unsecured.jwt.enable=true)")
	case cfg.JWKS == "":
	case strings.HasPrefix(cfg.JWKS, "http://") || strings.HasPrefix(cfg.JWKS, "https://"):
		ctx, cancel := context.WithCancel(context.Background())
		k, err := keyfunc.NewDefaultCtx(ctx, []string{cfg.JWKS})
		if err != nil {
			cancel()
			return nil, fmt.Errorf("JWKS %s: %w", cfg.JWKS, err)
		}
		v.keys, v.cancel = k, cancel
	default:
		v.fileName = strings.TrimPrefix(cfg.JWKS, "file://")
		if _, err := v.fileKeys(); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// Close stops the JWKS refresh, if any.
func (v *OAuthValidator) Close() {
	if v != nil && v.cancel != nil {
		v.cancel()
	}
}

// fileKeys returns the keys of the JWKS file, rereading it when its
// modification time changed (keys rotate without a restart).
func (v *OAuthValidator) fileKeys() (keyfunc.Keyfunc, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	st, err := os.Stat(v.fileName)
	if err != nil {
		if v.keys != nil {
			return v.keys, nil // keep the last good keys
		}
		return nil, fmt.Errorf("JWKS file: %w", err)
	}
	if v.keys != nil && st.ModTime().Equal(v.fileMod) {
		return v.keys, nil
	}
	if st.Size() > maxJWKSFile {
		return nil, fmt.Errorf("JWKS file %s: %d bytes, more than %d", v.fileName, st.Size(), maxJWKSFile)
	}
	raw, err := os.ReadFile(v.fileName)
	if err != nil {
		return nil, fmt.Errorf("JWKS file: %w", err)
	}
	k, err := keyfunc.NewJWKSetJSON(raw)
	if err != nil {
		if v.keys != nil {
			return v.keys, nil
		}
		return nil, fmt.Errorf("JWKS file %s: %w", v.fileName, err)
	}
	v.keys, v.fileMod = k, st.ModTime()
	return k, nil
}

// Validate checks a compact JWS and returns its principal and expiry.
func (v *OAuthValidator) Validate(token string) (principal string, exp time.Time, err error) {
	if len(token) > maxOAuthToken {
		return "", time.Time{}, fmt.Errorf("token of %d bytes is too large", len(token))
	}
	var claims jwt.MapClaims
	if v.cfg.Unsecured && isUnsecured(token) {
		claims, err = v.unsecuredClaims(token)
	} else {
		claims, err = v.signedClaims(token)
	}
	if err != nil {
		return "", time.Time{}, err
	}
	sub, _ := claims[v.cfg.SubClaim].(string)
	if sub == "" {
		return "", time.Time{}, fmt.Errorf("token has no %q claim", v.cfg.SubClaim)
	}
	et, err := claims.GetExpirationTime()
	if err != nil || et == nil {
		return "", time.Time{}, errors.New("token has no exp claim")
	}
	return "User:" + sub, et.Time, nil
}

func (v *OAuthValidator) parserOptions() []jwt.ParserOption {
	opts := []jwt.ParserOption{
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(v.cfg.ClockSkew),
		jwt.WithTimeFunc(v.cfg.Now),
		jwt.WithIssuedAt(),
	}
	if v.cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(v.cfg.Issuer))
	}
	if len(v.cfg.Audience) > 0 {
		opts = append(opts, jwt.WithAudience(v.cfg.Audience...))
	}
	return opts
}

func (v *OAuthValidator) signedClaims(token string) (jwt.MapClaims, error) {
	keys := v.keys
	if v.fileName != "" {
		var err error
		if keys, err = v.fileKeys(); err != nil {
			return nil, err
		}
	}
	if keys == nil {
		return nil, errors.New("signed tokens are not accepted: no JWKS is configured")
	}
	opts := append(v.parserOptions(), jwt.WithValidMethods([]string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}))
	claims := jwt.MapClaims{}
	if _, err := jwt.ParseWithClaims(token, claims, keys.Keyfunc, opts...); err != nil {
		return nil, err
	}
	return claims, nil
}

// isUnsecured reports whether the token's header says alg "none".
func isUnsecured(token string) bool {
	head, _, ok := strings.Cut(token, ".")
	if !ok {
		return false
	}
	raw, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		return false
	}
	var h struct {
		Alg string `json:"alg"`
	}
	return json.Unmarshal(raw, &h) == nil && h.Alg == "none"
}

// unsecuredClaims reads an alg-none token (header.claims. with an empty
// signature) and checks its times, as Kafka's
// OAuthBearerUnsecuredValidatorCallbackHandler does.
func (v *OAuthValidator) unsecuredClaims(token string) (jwt.MapClaims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 || parts[2] != "" {
		return nil, errors.New("an unsecured token must be header.claims. with an empty signature")
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("token claims: %w", err)
	}
	claims := jwt.MapClaims{}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&claims); err != nil {
		return nil, fmt.Errorf("token claims: %w", err)
	}
	// Validate times and issuer/audience with the same rules as signed tokens.
	if err := jwt.NewValidator(v.parserOptions()...).Validate(claims); err != nil {
		return nil, err
	}
	return claims, nil
}

// maxOAuthToken caps a bearer token.
const maxOAuthToken = 64 << 10

// oauthServer is the server side of OAUTHBEARER (RFC 7628): one client
// message with the token; on failure an error JSON, the client's "\x01",
// and then the failure.
type oauthServer struct {
	v         *OAuthValidator
	step      int
	failure   error
	principal string
	exp       time.Time
}

func (o *oauthServer) Step(msg []byte) ([]byte, bool, error) {
	defer func() { o.step++ }()
	switch o.step {
	case 0:
		token, err := parseOAuthClientFirst(msg)
		if err != nil {
			return nil, false, err
		}
		principal, exp, err := o.v.Validate(token)
		if err != nil {
			o.failure = err
			return []byte(`{"status":"invalid_token"}`), false, nil
		}
		o.principal, o.exp = principal, exp
		return nil, true, nil
	case 1:
		if o.failure != nil {
			return nil, false, fmt.Errorf("%w: invalid_token: %v", ErrAuthentication, o.failure)
		}
	}
	return nil, false, fmt.Errorf("%w: OAUTHBEARER exchange already finished", ErrBadSASL)
}

func (o *oauthServer) Principal() string { return o.principal }
func (o *oauthServer) Expiry() time.Time { return o.exp }

// parseOAuthClientFirst extracts the bearer token from
// "gs2-header \x01 auth=Bearer <token> \x01 [key=value \x01]* \x01".
func parseOAuthClientFirst(msg []byte) (string, error) {
	if len(msg) > maxOAuthToken+1024 {
		return "", fmt.Errorf("%w: OAUTHBEARER message of %d bytes", ErrBadSASL, len(msg))
	}
	s := string(msg)
	header, rest, ok := strings.Cut(s, "\x01")
	if !ok || !strings.HasSuffix(rest, "\x01\x01") {
		return "", fmt.Errorf("%w: OAUTHBEARER message must be GS2 header, \\x01-separated key=value pairs, \\x01\\x01", ErrBadSASL)
	}
	if !strings.HasPrefix(header, "n,") && !strings.HasPrefix(header, "y,") {
		return "", fmt.Errorf("%w: bad OAUTHBEARER GS2 header", ErrBadSASL)
	}
	var token string
	for _, kv := range strings.Split(strings.TrimSuffix(rest, "\x01\x01"), "\x01") {
		k, val, ok := strings.Cut(kv, "=")
		if !ok {
			return "", fmt.Errorf("%w: OAUTHBEARER pair without '='", ErrBadSASL)
		}
		if k == "auth" {
			scheme, t, ok := strings.Cut(val, " ")
			if !ok || !strings.EqualFold(scheme, "Bearer") || t == "" {
				return "", fmt.Errorf("%w: OAUTHBEARER auth must be \"Bearer <token>\"", ErrBadSASL)
			}
			token = strings.TrimSpace(t)
		}
	}
	if token == "" {
		return "", fmt.Errorf("%w: OAUTHBEARER message has no auth=Bearer token", ErrBadSASL)
	}
	return token, nil
}
