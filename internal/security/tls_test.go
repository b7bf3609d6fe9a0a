package security

import (
	"crypto/x509/pkix"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/idem-dev/idem/internal/testkit"
)

// TestEncryptedKeystore: a key that openssl encrypted (PBES2, PBKDF2,
// AES-256-CBC, as Kafka's PEM keystores are) loads with ssl.key.password
// and is refused without it or with a wrong one.
func TestEncryptedKeystore(t *testing.T) {
	openssl := testkit.RequireTool(t, "openssl", "install the Debian package openssl")
	dir := t.TempDir()
	ca := testkit.NewCA(t, "test CA")
	srv := ca.Issue(t, pkix.Name{CommonName: "localhost"})
	plainKey := testkit.WriteFile(t, dir, "key.pem", srv.KeyPEM)
	for _, prf := range []string{"hmacWithSHA256", "hmacWithSHA1"} {
		enc := filepath.Join(dir, prf+".pem")
		out, err := exec.Command(openssl, "pkcs8", "-topk8", "-v2", "aes-256-cbc", "-v2prf", prf, "-in", plainKey, "-out", enc, "-passout", "pass:s3cret").CombinedOutput()
		if err != nil {
			t.Fatalf("openssl: %v\n%s", err, out)
		}
		encPEM, _ := os.ReadFile(enc)
		if !strings.Contains(string(encPEM), "ENCRYPTED PRIVATE KEY") {
			t.Fatalf("openssl wrote %s", encPEM)
		}
		keystore := testkit.WriteFile(t, dir, prf+"-keystore.pem", srv.CertPEM, encPEM)
		for pass, ok := range map[string]bool{"s3cret": true, "wrong": false, "": false} {
			_, err := NewTLSSource(TLSConfig{KeystoreLocation: keystore, KeyPassword: pass})
			if (err == nil) != ok {
				t.Errorf("%s with password %q: %v, want loaded=%v", prf, pass, err, ok)
			}
		}
	}
	// Garbage in the envelope is an error, never a panic.
	for _, garbage := range [][]byte{nil, {0x30}, {0x30, 0x03, 0x02, 0x01, 0x01}} {
		if _, err := decryptPKCS8(garbage, "x"); err == nil {
			t.Errorf("decrypted %x", garbage)
		}
	}
}
