package webhook

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// EndpointSpec is what a user gives to add an endpoint.
type EndpointSpec struct {
	ID  string // default: a random ep_… id
	URL string // http or https
	// Secret signs the requests: whsec_… (HMAC) or whsk_… (ed25519);
	// default: a new random whsec_ secret, which AddEndpoint returns.
	Secret      string
	EventTypes  []string
	Ordered     bool
	RateLimit   float64
	MaxInFlight int
	Description string
	Disabled    bool
}

// NewEndpoint validates spec and builds the endpoint to store.
func NewEndpoint(spec EndpointSpec, now time.Time) (Endpoint, error) {
	u, err := url.Parse(spec.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Endpoint{}, fmt.Errorf("webhook: endpoint URL %q is not an http(s) URL", spec.URL)
	}
	if spec.ID == "" {
		spec.ID = newID("ep_")
	}
	if strings.ContainsAny(spec.ID, " /\t\n") || len(spec.ID) > 100 {
		return Endpoint{}, fmt.Errorf("webhook: endpoint id %q: at most 100 characters, no spaces or '/'", spec.ID)
	}
	if spec.Secret == "" {
		spec.Secret = NewSecret()
	}
	k, err := ParseKey(spec.Secret)
	if err != nil {
		return Endpoint{}, err
	}
	if k.kind == kindPublic {
		return Endpoint{}, errors.New("webhook: an endpoint signs with a whsec_ secret or a whsk_ private key, not a whpk_ public key")
	}
	if spec.RateLimit < 0 || spec.MaxInFlight < 0 {
		return Endpoint{}, errors.New("webhook: rate limit and max in flight must not be negative")
	}
	var types []string
	for _, t := range spec.EventTypes {
		if t = strings.TrimSpace(t); t != "" && !slices.Contains(types, t) {
			types = append(types, t)
		}
	}
	e := Endpoint{ID: spec.ID, URL: spec.URL, Description: spec.Description, EventTypes: types, Ordered: spec.Ordered,
		Enabled: !spec.Disabled, RateLimit: spec.RateLimit, MaxInFlight: spec.MaxInFlight,
		Secrets: []Secret{{Key: k.String()}}, CreatedAt: now.UTC().Truncate(time.Microsecond)}
	if spec.Disabled {
		e.DisabledReason = "added disabled"
	}
	if e.EventTypes == nil {
		e.EventTypes = []string{}
	}
	return e, nil
}

// AddEndpoint validates spec and stores the endpoint. It returns it with
// its secret (generated if spec had none): show it to the user once.
func AddEndpoint(ctx context.Context, s Store, spec EndpointSpec, now time.Time) (Endpoint, error) {
	e, err := NewEndpoint(spec, now)
	if err != nil {
		return Endpoint{}, err
	}
	return e, s.AddEndpoint(ctx, e)
}

// RotateSecret makes newSecret (a new random one if "") the endpoint's
// current secret. The old ones keep signing until now+overlap (24 h if
// overlap is 0), so every request meanwhile carries both signatures and
// the receiver can switch its secret at any time. It returns the new
// secret.
func RotateSecret(ctx context.Context, s Store, id, newSecret string, overlap time.Duration, now time.Time) (string, error) {
	if newSecret == "" {
		newSecret = NewSecret()
	}
	k, err := ParseKey(newSecret)
	if err != nil {
		return "", err
	}
	if k.kind == kindPublic {
		return "", errors.New("webhook: cannot sign with a whpk_ public key")
	}
	if overlap <= 0 {
		overlap = 24 * time.Hour
	}
	e, err := s.Endpoint(ctx, id)
	if err != nil {
		return "", err
	}
	until := now.Add(overlap).UTC().Truncate(time.Microsecond)
	secrets := []Secret{{Key: k.String()}}
	for _, old := range e.Secrets {
		if old.Key == k.String() || (!old.ExpiresAt.IsZero() && !now.Before(old.ExpiresAt)) {
			continue // the same key again, or already expired
		}
		if old.ExpiresAt.IsZero() || old.ExpiresAt.After(until) {
			old.ExpiresAt = until
		}
		secrets = append(secrets, old)
	}
	return k.String(), s.SetSecrets(ctx, id, secrets)
}

func newID(prefix string) string {
	b := make([]byte, 10)
	rand.Read(b)
	return prefix + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
}
