package security

import (
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
)

// ScramMechanism is a SCRAM hash, numbered as Kafka numbers them in
// DescribeUserScramCredentials and AlterUserScramCredentials.
type ScramMechanism int8

// The SCRAM mechanisms (RFC 5802 with RFC 7677's SHA-256, and SHA-512).
const (
	ScramSHA256 ScramMechanism = 1
	ScramSHA512 ScramMechanism = 2
)

// Iteration bounds Kafka enforces on stored SCRAM credentials.
const (
	MinIterations = 4096
	MaxIterations = 16384
)

// SASL mechanism names as clients send them in SaslHandshake.
const (
	MechPlain       = "PLAIN"
	MechScramSHA256 = "SCRAM-SHA-256"
	MechScramSHA512 = "SCRAM-SHA-512"
	MechOAuthBearer = "OAUTHBEARER"
)

// String is the SASL mechanism name.
func (m ScramMechanism) String() string {
	switch m {
	case ScramSHA256:
		return MechScramSHA256
	case ScramSHA512:
		return MechScramSHA512
	}
	return "UNKNOWN(" + strconv.Itoa(int(m)) + ")"
}

// Valid reports whether m is a known mechanism.
func (m ScramMechanism) Valid() bool { return m == ScramSHA256 || m == ScramSHA512 }

// ParseScramMechanism turns a SASL mechanism name into a ScramMechanism.
func ParseScramMechanism(name string) (ScramMechanism, bool) {
	switch strings.ToUpper(name) {
	case MechScramSHA256:
		return ScramSHA256, true
	case MechScramSHA512:
		return ScramSHA512, true
	}
	return 0, false
}

func (m ScramMechanism) newHash() func() hash.Hash {
	if m == ScramSHA512 {
		return sha512.New
	}
	return sha256.New
}

func (m ScramMechanism) size() int {
	if m == ScramSHA512 {
		return sha512.Size
	}
	return sha256.Size
}

// Credential is what is stored for one user and mechanism: never the
// password, only the salt and the keys derived from it (RFC 5802 §3).
type Credential struct {
	Mechanism  ScramMechanism `json:"mechanism"`
	Iterations int            `json:"iterations"`
	Salt       []byte         `json:"salt"`
	StoredKey  []byte         `json:"stored_key"`
	ServerKey  []byte         `json:"server_key"`
}

// ErrUnacceptableCredential is wrapped by errors for credentials that may
// not be stored: an empty user name, iterations out of range, an empty salt
// or salted password of the wrong length.
var ErrUnacceptableCredential = errors.New("unacceptable credential")

// ErrUnsupportedMechanism is wrapped by errors naming a SASL or SCRAM
// mechanism that is unknown or not enabled.
var ErrUnsupportedMechanism = errors.New("unsupported SASL mechanism")

// CredentialFromSalted derives a credential from a salted password
// (PBKDF2 of the password, which AlterUserScramCredentials carries: clients
// compute it, so the password never reaches the broker).
func CredentialFromSalted(m ScramMechanism, iterations int, salt, salted []byte) (Credential, error) {
	switch {
	case !m.Valid():
		return Credential{}, fmt.Errorf("%w: mechanism %d", ErrUnsupportedMechanism, m)
	case iterations < MinIterations || iterations > MaxIterations:
		return Credential{}, fmt.Errorf("%w: iterations %d outside [%d, %d]", ErrUnacceptableCredential, iterations, MinIterations, MaxIterations)
	case len(salt) == 0 || len(salt) > 1024:
		return Credential{}, fmt.Errorf("%w: salt of %d bytes", ErrUnacceptableCredential, len(salt))
	case len(salted) != m.size():
		return Credential{}, fmt.Errorf("%w: salted password of %d bytes, %s wants %d", ErrUnacceptableCredential, len(salted), m, m.size())
	}
	clientKey := hmacSum(m, salted, []byte("Client Key"))
	h := m.newHash()()
	h.Write(clientKey)
	return Credential{
		Mechanism:  m,
		Iterations: iterations,
		Salt:       append([]byte(nil), salt...),
		StoredKey:  h.Sum(nil),
		ServerKey:  hmacSum(m, salted, []byte("Server Key")),
	}, nil
}

// SaltPassword is PBKDF2-HMAC(password, salt, iterations), the salted
// password of RFC 5802.
func SaltPassword(m ScramMechanism, password string, salt []byte, iterations int) ([]byte, error) {
	return pbkdf2.Key(m.newHash(), password, salt, iterations, m.size())
}

// NewCredential salts password with a fresh random salt.
func NewCredential(m ScramMechanism, password string, iterations int) (Credential, error) {
	if !m.Valid() {
		return Credential{}, fmt.Errorf("%w: mechanism %d", ErrUnsupportedMechanism, m)
	}
	if password == "" {
		return Credential{}, fmt.Errorf("%w: empty password", ErrUnacceptableCredential)
	}
	salt := make([]byte, 24)
	rand.Read(salt)
	salted, err := SaltPassword(m, password, salt, iterations)
	if err != nil {
		return Credential{}, fmt.Errorf("%w: %v", ErrUnacceptableCredential, err)
	}
	return CredentialFromSalted(m, iterations, salt, salted)
}

// VerifyPassword reports whether password produces c's stored key. PLAIN
// logins are checked this way, so only SCRAM keys are ever stored.
func (c Credential) VerifyPassword(password string) bool {
	salted, err := SaltPassword(c.Mechanism, password, c.Salt, c.Iterations)
	if err != nil {
		return false
	}
	clientKey := hmacSum(c.Mechanism, salted, []byte("Client Key"))
	h := c.Mechanism.newHash()()
	h.Write(clientKey)
	return subtle.ConstantTimeCompare(h.Sum(nil), c.StoredKey) == 1
}

func hmacSum(m ScramMechanism, key, msg []byte) []byte {
	mac := hmac.New(m.newHash(), key)
	mac.Write(msg)
	return mac.Sum(nil)
}

// scramServer is the server side of one SCRAM exchange (RFC 5802 §5): two
// client messages, two answers.
type scramServer struct {
	mech   ScramMechanism
	lookup func(user string) (Credential, bool)
	// decoy makes a credential for an unknown user, so that the exchange
	// runs to its end and fails exactly as a wrong password does: whether a
	// user exists is not told.
	decoy func(user string, m ScramMechanism) Credential

	step        int
	user        string
	known       bool
	cred        Credential
	gs2Header   string
	nonce       string // client nonce + server nonce
	clientNonce string
	clientFirst string // client-first-message-bare
	serverFirst string
}

// errAuth is the one failure message of every password authentication: it
// says nothing about which part was wrong.
var errAuth = fmt.Errorf("%w: invalid username or password", ErrAuthentication)

// maxScramMessage caps a SCRAM client message; real ones are < 300 bytes.
const maxScramMessage = 4096

func (s *scramServer) Step(msg []byte) (out []byte, done bool, err error) {
	if len(msg) > maxScramMessage {
		return nil, false, fmt.Errorf("%w: SCRAM message of %d bytes", ErrBadSASL, len(msg))
	}
	switch s.step {
	case 0:
		s.step++
		return s.first(string(msg))
	case 1:
		s.step++
		return s.final(string(msg))
	}
	return nil, false, fmt.Errorf("%w: SCRAM exchange already finished", ErrBadSASL)
}

// first parses client-first-message "gs2-header client-first-message-bare"
// and answers server-first-message.
func (s *scramServer) first(msg string) ([]byte, bool, error) {
	// gs2-header = gs2-cbind-flag "," [ authzid ] ","
	flag, rest, ok := strings.Cut(msg, ",")
	if !ok {
		return nil, false, fmt.Errorf("%w: client-first-message has no GS2 header", ErrBadSASL)
	}
	switch {
	case flag == "n", flag == "y":
	case strings.HasPrefix(flag, "p="):
		return nil, false, fmt.Errorf("%w: SCRAM channel binding is not supported", ErrBadSASL)
	default:
		return nil, false, fmt.Errorf("%w: bad GS2 channel-binding flag %q", ErrBadSASL, flag)
	}
	authzid, bare, ok := strings.Cut(rest, ",")
	if !ok {
		return nil, false, fmt.Errorf("%w: client-first-message has no GS2 header", ErrBadSASL)
	}
	s.gs2Header = flag + "," + authzid + ","
	s.clientFirst = bare
	attrs := strings.Split(bare, ",")
	if len(attrs) < 2 || !strings.HasPrefix(attrs[0], "n=") || !strings.HasPrefix(attrs[1], "r=") {
		return nil, false, fmt.Errorf("%w: client-first-message-bare must start n=…,r=…", ErrBadSASL)
	}
	if len(attrs) > 2 {
		// Kafka knows one extension, tokenauth, for delegation tokens,
		// which idem does not issue.
		return nil, false, fmt.Errorf("%w: SCRAM extensions are not supported", ErrBadSASL)
	}
	user, err := scramUnescape(attrs[0][2:])
	if err != nil || user == "" {
		return nil, false, fmt.Errorf("%w: bad SCRAM user name", ErrBadSASL)
	}
	if authzid != "" {
		az, err := scramUnescape(strings.TrimPrefix(authzid, "a="))
		if !strings.HasPrefix(authzid, "a=") || err != nil || az != user {
			return nil, false, fmt.Errorf("%w: authorization id must be empty or the user name", ErrBadSASL)
		}
	}
	cnonce := attrs[1][2:]
	if cnonce == "" || strings.ContainsAny(cnonce, ",") || !printable(cnonce) {
		return nil, false, fmt.Errorf("%w: bad SCRAM client nonce", ErrBadSASL)
	}
	s.user = user
	s.cred, s.known = s.lookup(user)
	if !s.known {
		s.cred = s.decoy(user, s.mech)
	}
	var snonce [18]byte
	rand.Read(snonce[:])
	s.clientNonce = cnonce
	s.nonce = cnonce + base64.RawURLEncoding.EncodeToString(snonce[:])
	s.serverFirst = "r=" + s.nonce + ",s=" + base64.StdEncoding.EncodeToString(s.cred.Salt) + ",i=" + strconv.Itoa(s.cred.Iterations)
	return []byte(s.serverFirst), false, nil
}

// final checks client-final-message "c=…,r=…,p=…" and answers
// server-final-message "v=…".
func (s *scramServer) final(msg string) ([]byte, bool, error) {
	i := strings.LastIndex(msg, ",p=")
	if i < 0 {
		return nil, false, fmt.Errorf("%w: client-final-message has no proof", ErrBadSASL)
	}
	withoutProof, proofB64 := msg[:i], msg[i+3:]
	attrs := strings.Split(withoutProof, ",")
	if len(attrs) != 2 || !strings.HasPrefix(attrs[0], "c=") || !strings.HasPrefix(attrs[1], "r=") {
		return nil, false, fmt.Errorf("%w: client-final-message must be c=…,r=…,p=…", ErrBadSASL)
	}
	if attrs[0][2:] != base64.StdEncoding.EncodeToString([]byte(s.gs2Header)) {
		return nil, false, fmt.Errorf("%w: channel binding does not repeat the GS2 header", ErrBadSASL)
	}
	// CVE-2024-56128: the nonce must be exactly the one this server sent,
	// with one exception: librdkafka before 2.6.1 (Debian's kcat among
	// them) sends its own nonce again in front of it (librdkafka #4895),
	// which Kafka 3.8.1–3.9 accepted. That form is accepted too: the
	// server's nonce is still required whole, and the prefix must be the
	// client's own nonce, so nothing but that exact bug passes.
	if got := attrs[1][2:]; subtle.ConstantTimeCompare([]byte(got), []byte(s.nonce)) != 1 &&
		subtle.ConstantTimeCompare([]byte(got), []byte(s.clientNonce+s.nonce)) != 1 {
		return nil, false, fmt.Errorf("%w: SCRAM nonce does not match", ErrBadSASL)
	}
	proof, err := base64.StdEncoding.DecodeString(proofB64)
	if err != nil || len(proof) != s.mech.size() {
		return nil, false, fmt.Errorf("%w: bad SCRAM proof", ErrBadSASL)
	}
	authMessage := []byte(s.clientFirst + "," + s.serverFirst + "," + withoutProof)
	signature := hmacSum(s.mech, s.cred.StoredKey, authMessage)
	clientKey := make([]byte, len(proof))
	for i := range proof {
		clientKey[i] = proof[i] ^ signature[i]
	}
	h := s.mech.newHash()()
	h.Write(clientKey)
	if subtle.ConstantTimeCompare(h.Sum(nil), s.cred.StoredKey) != 1 || !s.known {
		return nil, false, errAuth
	}
	return []byte("v=" + base64.StdEncoding.EncodeToString(hmacSum(s.mech, s.cred.ServerKey, authMessage))), true, nil
}

func (s *scramServer) Principal() string { return "User:" + s.user }

// scramUnescape decodes a saslname (RFC 5802 §5.1: "=2C" is ',' and "=3D"
// is '='; any other '=' is an error).
func scramUnescape(v string) (string, error) {
	if !strings.Contains(v, "=") {
		return v, nil
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] != '=' {
			b.WriteByte(v[i])
			continue
		}
		switch {
		case strings.HasPrefix(v[i:], "=2C"):
			b.WriteByte(',')
		case strings.HasPrefix(v[i:], "=3D"):
			b.WriteByte('=')
		default:
			return "", errors.New("bad escape")
		}
		i += 2
	}
	return b.String(), nil
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
