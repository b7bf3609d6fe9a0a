package webhook

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The Standard Webhooks v1 headers.
const (
	// HeaderID is the message id: the same on every attempt and every
	// redelivery, so it is the receiver's idempotency key.
	HeaderID = "webhook-id"
	// HeaderTimestamp is the unix time in seconds of this attempt.
	HeaderTimestamp = "webhook-timestamp"
	// HeaderSignature is a space-separated list of "v1,<base64>" (HMAC) and
	// "v1a,<base64>" (ed25519) signatures; one valid signature suffices,
	// which is what makes key rotation possible.
	HeaderSignature = "webhook-signature"
)

// DefaultTolerance is how far a timestamp may be from the receiver's clock,
// in either direction, as in the reference libraries: it bounds how long a
// captured request can be replayed.
const DefaultTolerance = 5 * time.Minute

// Key prefixes of Standard Webhooks.
const (
	prefixSecret  = "whsec_" // HMAC-SHA256 secret
	prefixPrivate = "whsk_"  // ed25519 private key (seed)
	prefixPublic  = "whpk_"  // ed25519 public key
)

type keyKind int

const (
	kindHMAC keyKind = iota + 1
	kindPrivate
	kindPublic
)

// Key is one signing or verification key: a whsec_ secret (HMAC-SHA256,
// scheme v1), a whsk_ ed25519 private key (v1a, signs and verifies) or a
// whpk_ ed25519 public key (v1a, verifies only). The zero Key is invalid.
type Key struct {
	kind keyKind
	hmac []byte
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
}

// ParseKey reads a key in its Standard Webhooks text form. A secret without
// the whsec_ prefix is accepted too, as the reference libraries do.
func ParseKey(s string) (Key, error) {
	s = strings.TrimSpace(s)
	switch {
	case strings.HasPrefix(s, prefixPrivate):
		b, err := base64.StdEncoding.DecodeString(s[len(prefixPrivate):])
		if err != nil {
			return Key{}, fmt.Errorf("webhook: whsk_ key is not base64: %w", err)
		}
		switch len(b) {
		case ed25519.SeedSize:
			priv := ed25519.NewKeyFromSeed(b)
			return Key{kind: kindPrivate, priv: priv, pub: priv.Public().(ed25519.PublicKey)}, nil
		case ed25519.PrivateKeySize:
			priv := ed25519.PrivateKey(b)
			return Key{kind: kindPrivate, priv: priv, pub: priv.Public().(ed25519.PublicKey)}, nil
		}
		return Key{}, fmt.Errorf("webhook: whsk_ key has %d bytes, want a %d-byte ed25519 seed", len(b), ed25519.SeedSize)
	case strings.HasPrefix(s, prefixPublic):
		b, err := base64.StdEncoding.DecodeString(s[len(prefixPublic):])
		if err != nil {
			return Key{}, fmt.Errorf("webhook: whpk_ key is not base64: %w", err)
		}
		if len(b) != ed25519.PublicKeySize {
			return Key{}, fmt.Errorf("webhook: whpk_ key has %d bytes, want %d", len(b), ed25519.PublicKeySize)
		}
		return Key{kind: kindPublic, pub: ed25519.PublicKey(b)}, nil
	}
	raw := strings.TrimPrefix(s, prefixSecret)
	if raw == "" {
		return Key{}, errors.New("webhook: empty secret (want whsec_ followed by base64)")
	}
	b, err := base64.StdEncoding.DecodeString(raw)
	if err != nil {
		return Key{}, fmt.Errorf("webhook: secret is not whsec_ followed by base64: %w", err)
	}
	// The spec asks for 24 to 64 random bytes; fewer would be guessable.
	if len(b) < 24 || len(b) > 64 {
		return Key{}, fmt.Errorf("webhook: secret has %d bytes, want 24 to 64", len(b))
	}
	return Key{kind: kindHMAC, hmac: b}, nil
}

// ParseKeys parses several keys, for a verifier during a rotation.
func ParseKeys(ss ...string) ([]Key, error) {
	keys := make([]Key, 0, len(ss))
	for _, s := range ss {
		k, err := ParseKey(s)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// String is the key's text form (whsec_…, whsk_… or whpk_…). It is the
// secret itself: do not log it.
func (k Key) String() string {
	switch k.kind {
	case kindHMAC:
		return prefixSecret + base64.StdEncoding.EncodeToString(k.hmac)
	case kindPrivate:
		return prefixPrivate + base64.StdEncoding.EncodeToString(k.priv.Seed())
	case kindPublic:
		return prefixPublic + base64.StdEncoding.EncodeToString(k.pub)
	}
	return ""
}

// Public returns the whpk_ public key of an ed25519 key, for receivers of
// v1a signatures; false for an HMAC secret, which has none.
func (k Key) Public() (Key, bool) {
	if k.kind != kindPrivate && k.kind != kindPublic {
		return Key{}, false
	}
	return Key{kind: kindPublic, pub: k.pub}, true
}

// NewSecret returns a new random whsec_ secret of 32 bytes.
func NewSecret() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand documents it)
	return prefixSecret + base64.StdEncoding.EncodeToString(b)
}

// NewSigningKey returns a new ed25519 key pair for v1a signatures: the
// whsk_ private key for the sender and the whpk_ public key for receivers.
func NewSigningKey() (private, public string) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	return prefixPrivate + base64.StdEncoding.EncodeToString(priv.Seed()), prefixPublic + base64.StdEncoding.EncodeToString(pub)
}

// signedContent is what both schemes sign: id.timestamp.payload, exactly
// the bytes sent.
func signedContent(id string, ts int64, payload []byte) []byte {
	b := make([]byte, 0, len(id)+len(payload)+24)
	b = append(b, id...)
	b = append(b, '.')
	b = strconv.AppendInt(b, ts, 10)
	b = append(b, '.')
	return append(b, payload...)
}

func (k Key) sign(content []byte) (string, error) {
	switch k.kind {
	case kindHMAC:
		m := hmac.New(sha256.New, k.hmac)
		m.Write(content)
		return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil)), nil
	case kindPrivate:
		return "v1a," + base64.StdEncoding.EncodeToString(ed25519.Sign(k.priv, content)), nil
	case kindPublic:
		return "", errors.New("webhook: a whpk_ public key cannot sign")
	}
	return "", errors.New("webhook: invalid (zero) key")
}

// Sign returns the webhook-signature header value for a message signed with
// every key: one signature per key, space-separated, so receivers holding
// either the old or the new secret of a rotation accept it. The id must not
// contain a '.', which would make the signed content ambiguous.
func Sign(id string, ts time.Time, payload []byte, keys ...Key) (string, error) {
	if id == "" || strings.ContainsAny(id, ". ") {
		return "", fmt.Errorf("webhook: message id %q is empty or contains '.' or ' '", id)
	}
	if len(keys) == 0 {
		return "", errors.New("webhook: no key to sign with")
	}
	content := signedContent(id, ts.Unix(), payload)
	sigs := make([]string, 0, len(keys))
	for _, k := range keys {
		s, err := k.sign(content)
		if err != nil {
			return "", err
		}
		sigs = append(sigs, s)
	}
	return strings.Join(sigs, " "), nil
}

// SetHeaders sets the three Standard Webhooks headers of an outgoing
// request for message id, signed at ts with keys.
func SetHeaders(h http.Header, id string, ts time.Time, payload []byte, keys ...Key) error {
	sig, err := Sign(id, ts, payload, keys...)
	if err != nil {
		return err
	}
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(HeaderSignature, sig)
	return nil
}

// Verification errors. Each wraps into a *VerifyError that carries the
// HTTP status a receiver answers with (StatusOf).
var (
	// ErrMissingHeaders: webhook-id, webhook-timestamp or webhook-signature
	// is absent or empty (400: the request is not a webhook).
	ErrMissingHeaders = errors.New("webhook: missing webhook-id, webhook-timestamp or webhook-signature header")
	// ErrBadTimestamp: webhook-timestamp is not unix seconds (400).
	ErrBadTimestamp = errors.New("webhook: webhook-timestamp is not an integer number of seconds")
	// ErrTimestampOutOfTolerance: the timestamp is too old or too far in
	// the future (401): a replayed or forged request, or a clock off by
	// more than the tolerance.
	ErrTimestampOutOfTolerance = errors.New("webhook: webhook-timestamp is outside the tolerance")
	// ErrNoValidSignature: no signature in the header matches any key
	// (401): a wrong secret or a tampered payload.
	ErrNoValidSignature = errors.New("webhook: no valid signature")
)

// VerifyError is a failed verification, with the status to answer.
type VerifyError struct {
	Status int
	Err    error  // one of the Err* sentinels
	Detail string // what exactly was wrong, for the problem body
}

func (e *VerifyError) Error() string {
	if e.Detail == "" {
		return e.Err.Error()
	}
	return e.Err.Error() + ": " + e.Detail
}

func (e *VerifyError) Unwrap() error { return e.Err }

// StatusOf returns the HTTP status a receiver answers a verification error
// with: 400 for a request that is not a well-formed webhook, 401 for one
// whose signature or timestamp does not hold; 500 for anything else.
func StatusOf(err error) int {
	var ve *VerifyError
	if errors.As(err, &ve) {
		return ve.Status
	}
	return http.StatusInternalServerError
}

// Verifier checks incoming webhooks against one or more keys (several
// during a rotation: a signature by any of them is accepted).
type Verifier struct {
	Keys []Key
	// Tolerance bounds |now - webhook-timestamp| (default 5 minutes);
	// negative turns the check off, which only makes sense for replaying
	// stored requests in tests.
	Tolerance time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// NewVerifier parses the keys (whsec_, whsk_ or whpk_) of a verifier with
// the default tolerance.
func NewVerifier(keys ...string) (*Verifier, error) {
	ks, err := ParseKeys(keys...)
	if err != nil {
		return nil, err
	}
	if len(ks) == 0 {
		return nil, errors.New("webhook: a verifier needs at least one key")
	}
	return &Verifier{Keys: ks}, nil
}

// Verified is what a successful verification establishes about a request.
type Verified struct {
	ID        string    // webhook-id: the idempotency key
	Timestamp time.Time // webhook-timestamp: when this attempt was signed
}

// Verify checks the headers and the exact payload bytes of a webhook. It
// compares signatures in constant time and accepts the request if any
// signature in the header matches any key of the verifier.
func (v *Verifier) Verify(h http.Header, payload []byte) (Verified, error) {
	id := h.Get(HeaderID)
	tsText := h.Get(HeaderTimestamp)
	sigHeader := strings.Join(h.Values(HeaderSignature), " ")
	if id == "" || tsText == "" || strings.TrimSpace(sigHeader) == "" {
		return Verified{}, &VerifyError{Status: http.StatusBadRequest, Err: ErrMissingHeaders}
	}
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil || ts < 0 {
		return Verified{}, &VerifyError{Status: http.StatusBadRequest, Err: ErrBadTimestamp, Detail: fmt.Sprintf("%q", tsText)}
	}
	sent := time.Unix(ts, 0)
	tol := v.Tolerance
	if tol == 0 {
		tol = DefaultTolerance
	}
	if tol > 0 {
		now := time.Now()
		if v.Now != nil {
			now = v.Now()
		}
		if d := now.Sub(sent); d > tol || d < -tol {
			return Verified{}, &VerifyError{Status: http.StatusUnauthorized, Err: ErrTimestampOutOfTolerance,
				Detail: fmt.Sprintf("timestamp %d is %v from the receiver's clock; tolerance %v", ts, d.Round(time.Second), tol)}
		}
	}
	content := signedContent(id, ts, payload)
	var macs [][]byte // computed once per HMAC key, not once per signature
	for _, k := range v.Keys {
		if k.kind == kindHMAC {
			m := hmac.New(sha256.New, k.hmac)
			m.Write(content)
			macs = append(macs, m.Sum(nil))
		}
	}
	for _, sig := range strings.Fields(sigHeader) {
		scheme, b64, ok := strings.Cut(sig, ",")
		if !ok {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(b64)
		if err != nil || len(got) == 0 {
			continue
		}
		switch scheme {
		case "v1":
			for _, want := range macs {
				if hmac.Equal(got, want) {
					return Verified{ID: id, Timestamp: sent}, nil
				}
			}
		case "v1a":
			for _, k := range v.Keys {
				if k.pub != nil && ed25519.Verify(k.pub, content, got) {
					return Verified{ID: id, Timestamp: sent}, nil
				}
			}
		}
	}
	return Verified{}, &VerifyError{Status: http.StatusUnauthorized, Err: ErrNoValidSignature,
		Detail: "no signature in webhook-signature matches a key of this receiver (wrong secret, or the payload was changed)"}
}
