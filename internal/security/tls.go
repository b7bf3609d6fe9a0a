package security

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// TLSConfig is a listener's TLS material, by Kafka's property names. Files
// are reread when they change (checked at most once a second on a new
// connection), so certificates can be rotated without a restart.
type TLSConfig struct {
	// KeystoreLocation is a PEM file with the private key and the
	// certificate chain (ssl.keystore.location, ssl.keystore.type=PEM).
	KeystoreLocation string
	// KeystoreChain and KeystoreKey are the same, inline
	// (ssl.keystore.certificate.chain, ssl.keystore.key).
	KeystoreChain, KeystoreKey string
	// KeyPassword decrypts an encrypted PKCS#8 key (ssl.key.password).
	KeyPassword string
	// TruststoreLocation and TruststoreCertificates are the CAs that
	// client certificates must chain to (ssl.truststore.location,
	// ssl.truststore.certificates).
	TruststoreLocation, TruststoreCertificates string
	// ClientAuth is none, requested or required (ssl.client.auth).
	ClientAuth string
	// Protocols are the TLS versions served (ssl.enabled.protocols):
	// TLSv1.2 and TLSv1.3 only.
	Protocols []string
}

// TLSSource serves a listener's tls.Config and reloads its files.
type TLSSource struct {
	cfg        TLSConfig
	minV, maxV uint16
	clientAuth tls.ClientAuthType

	mu      sync.Mutex
	current *tls.Config // mu guards current, checked, mods
	checked time.Time
	mods    [2]time.Time
}

// NewTLSSource loads the material once (failing on any problem) and
// returns a source that reloads it as files change.
func NewTLSSource(cfg TLSConfig) (*TLSSource, error) {
	s := &TLSSource{cfg: cfg}
	switch cfg.ClientAuth {
	case "", "none":
		s.clientAuth = tls.NoClientCert
	case "requested":
		s.clientAuth = tls.VerifyClientCertIfGiven
	case "required":
		s.clientAuth = tls.RequireAndVerifyClientCert
	default:
		return nil, fmt.Errorf("ssl.client.auth=%q: want none, requested or required", cfg.ClientAuth)
	}
	if len(cfg.Protocols) == 0 {
		cfg.Protocols = []string{"TLSv1.2", "TLSv1.3"}
	}
	for _, p := range cfg.Protocols {
		var v uint16
		switch strings.TrimSpace(p) {
		case "TLSv1.2":
			v = tls.VersionTLS12
		case "TLSv1.3":
			v = tls.VersionTLS13
		default:
			return nil, fmt.Errorf("ssl.enabled.protocols: %q is not served (only TLSv1.2 and TLSv1.3)", p)
		}
		if s.minV == 0 || v < s.minV {
			s.minV = v
		}
		s.maxV = max(s.maxV, v)
	}
	c, mods, err := s.load()
	if err != nil {
		return nil, err
	}
	s.current, s.mods, s.checked = c, mods, time.Now()
	return s, nil
}

// ServerConfig is the tls.Config for the listener: each handshake gets the
// current material.
func (s *TLSSource) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: s.minV,
		MaxVersion: s.maxV,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return s.config(), nil
		},
	}
}

// config returns the current tls.Config, reloading changed files.
func (s *TLSSource) config() *tls.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	if time.Since(s.checked) < time.Second {
		return s.current
	}
	s.checked = time.Now()
	if s.fileMods() == s.mods {
		return s.current
	}
	c, mods, err := s.load()
	if err != nil {
		// Keep serving the last good material; the next change retries.
		s.mods = mods
		return s.current
	}
	s.current, s.mods = c, mods
	return c
}

// Reload rereads the material now (tests, or a SIGHUP handler).
func (s *TLSSource) Reload() error {
	c, mods, err := s.load()
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.current, s.mods, s.checked = c, mods, time.Now()
	s.mu.Unlock()
	return nil
}

func (s *TLSSource) fileMods() [2]time.Time {
	var m [2]time.Time
	for i, f := range []string{s.cfg.KeystoreLocation, s.cfg.TruststoreLocation} {
		if f == "" {
			continue
		}
		if st, err := os.Stat(f); err == nil {
			m[i] = st.ModTime()
		}
	}
	return m
}

// maxPEMFile caps a keystore or truststore file.
const maxPEMFile = 4 << 20

func readPEMFile(kind, name string) ([]byte, error) {
	st, err := os.Stat(name)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", kind, err)
	}
	if st.Size() > maxPEMFile {
		return nil, fmt.Errorf("%s %s: %d bytes, more than %d", kind, name, st.Size(), maxPEMFile)
	}
	return os.ReadFile(name)
}

func (s *TLSSource) load() (*tls.Config, [2]time.Time, error) {
	mods := s.fileMods()
	var chain, key []byte
	switch {
	case s.cfg.KeystoreLocation != "" && (s.cfg.KeystoreChain != "" || s.cfg.KeystoreKey != ""):
		return nil, mods, errors.New("set either ssl.keystore.location or ssl.keystore.certificate.chain with ssl.keystore.key, not both")
	case s.cfg.KeystoreLocation != "":
		raw, err := readPEMFile("ssl.keystore.location", s.cfg.KeystoreLocation)
		if err != nil {
			return nil, mods, err
		}
		chain, key = raw, raw
	case s.cfg.KeystoreChain != "" && s.cfg.KeystoreKey != "":
		chain, key = []byte(s.cfg.KeystoreChain), []byte(s.cfg.KeystoreKey)
	default:
		return nil, mods, errors.New("an SSL listener needs a certificate: set ssl.keystore.location (a PEM file with the key and the chain) or ssl.keystore.certificate.chain and ssl.keystore.key")
	}
	cert, err := keyPair(chain, key, s.cfg.KeyPassword)
	if err != nil {
		return nil, mods, err
	}
	c := &tls.Config{
		MinVersion:   s.minV,
		MaxVersion:   s.maxV,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   s.clientAuth,
	}
	var trust []byte
	switch {
	case s.cfg.TruststoreLocation != "":
		if trust, err = readPEMFile("ssl.truststore.location", s.cfg.TruststoreLocation); err != nil {
			return nil, mods, err
		}
	case s.cfg.TruststoreCertificates != "":
		trust = []byte(s.cfg.TruststoreCertificates)
	}
	if len(trust) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(trust) {
			return nil, mods, errors.New("ssl.truststore: no PEM certificate found")
		}
		c.ClientCAs = pool
	} else if s.clientAuth != tls.NoClientCert {
		return nil, mods, fmt.Errorf("ssl.client.auth=%s needs a truststore to verify client certificates (ssl.truststore.location or ssl.truststore.certificates)", s.cfg.ClientAuth)
	}
	return c, mods, nil
}

// keyPair reads a PEM certificate chain and private key; an encrypted
// PKCS#8 key ("ENCRYPTED PRIVATE KEY") is decrypted with password
// (ssl.key.password), as Kafka's PEM keystores are.
func keyPair(chain, key []byte, password string) (tls.Certificate, error) {
	var certs, keys []byte
	for rest := chain; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			certs = append(certs, pem.EncodeToMemory(b)...)
		}
	}
	for rest := key; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		switch {
		case b.Type == "ENCRYPTED PRIVATE KEY":
			if password == "" {
				return tls.Certificate{}, errors.New("the keystore's private key is encrypted: set ssl.key.password")
			}
			der, err := decryptPKCS8(b.Bytes, password)
			if err != nil {
				return tls.Certificate{}, err
			}
			keys = append(keys, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})...)
		case b.Headers["Proc-Type"] == "4,ENCRYPTED":
			return tls.Certificate{}, errors.New("the keystore's private key uses legacy PEM encryption, which is insecure and not supported: convert it with openssl pkcs8 -topk8 -v2 aes-256-cbc")
		case strings.HasSuffix(b.Type, "PRIVATE KEY"):
			keys = append(keys, pem.EncodeToMemory(b)...)
		}
	}
	if len(certs) == 0 {
		return tls.Certificate{}, errors.New("keystore: no PEM CERTIFICATE block")
	}
	if len(keys) == 0 {
		return tls.Certificate{}, errors.New("keystore: no PEM PRIVATE KEY block")
	}
	cert, err := tls.X509KeyPair(certs, keys)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("keystore: %w", err)
	}
	return cert, nil
}
