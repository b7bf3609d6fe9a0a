package security

import (
	"errors"
	"testing"

	"github.com/idem-dev/idem/internal/logstore"
)

// FuzzSASLExchange feeds arbitrary client tokens to every mechanism: no
// input may panic, authenticate without the password, or be answered with
// more than a bounded message.
func FuzzSASLExchange(f *testing.F) {
	for _, seed := range [][2]string{
		{"n,,n=alice,r=abc", "c=biws,r=abcdef,p=AAAA"},
		{"n,a=alice,n=alice,r=x", "c=bixx,r=x,p="},
		{"\x00alice\x00secret", ""},
		{"alice\x00alice\x00secret", "\x01"},
		{"n,,\x01auth=Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.\x01\x01", "\x01"},
		{"y,,n==2C=3D,r=" + string(make([]byte, 40)), ""},
	} {
		f.Add(seed[0], seed[1])
	}
	s, err := Open(StoreConfig{FS: logstore.NewMemFS(), Dir: "__security"})
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	c, _ := NewCredential(ScramSHA256, "secret", MinIterations)
	s.AlterCredentials(f.Context(), []CredentialChange{{User: "alice", Mechanism: ScramSHA256, Credential: &c}})
	v, _ := NewOAuthValidator(OAuthConfig{Unsecured: true})
	a, err := NewAuthenticator(s, []string{MechPlain, MechScramSHA256, MechScramSHA512, MechOAuthBearer}, v)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, first, second string) {
		for _, mech := range a.Mechanisms() {
			ex, err := a.Start(mech)
			if err != nil {
				t.Fatal(err)
			}
			for _, msg := range []string{first, second} {
				out, done, err := ex.Step([]byte(msg))
				if len(out) > 1024 {
					t.Fatalf("%s answered %d bytes", mech, len(out))
				}
				if err != nil {
					if !errors.Is(err, ErrBadSASL) && !errors.Is(err, ErrAuthentication) {
						t.Fatalf("%s: an error that is neither malformed nor a failed authentication: %v", mech, err)
					}
					break
				}
				if done && mech != MechOAuthBearer {
					// Only the right password authenticates; the
					// fuzzer cannot know it except by PLAIN's seed.
					if mech != MechPlain || ex.Principal() != "User:alice" {
						t.Fatalf("%s authenticated %q", mech, ex.Principal())
					}
				}
				if done {
					break
				}
			}
		}
	})
}
