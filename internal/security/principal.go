package security

import (
	"crypto/x509"
	"fmt"
	"regexp"
	"strings"
)

// Anonymous is the principal of a connection that did not authenticate
// (a PLAINTEXT listener, or SSL without a client certificate).
const Anonymous = "User:ANONYMOUS"

// PrincipalMapper turns a client certificate's subject into a user name
// with Kafka's ssl.principal.mapping.rules: a comma-separated list of
// RULE:pattern/replacement/[LU] and DEFAULT, tried in order; the first
// rule whose pattern matches the whole distinguished name wins, DEFAULT
// takes the name as it is.
type PrincipalMapper struct {
	rules []mappingRule
}

type mappingRule struct {
	def         bool
	re          *regexp.Regexp
	replacement string
	lower       bool
	upper       bool
}

// NewPrincipalMapper parses ssl.principal.mapping.rules.
func NewPrincipalMapper(rules string) (*PrincipalMapper, error) {
	m := &PrincipalMapper{}
	rest := strings.TrimSpace(rules)
	if rest == "" {
		rest = "DEFAULT"
	}
	for rest != "" {
		rest = strings.TrimLeft(rest, " ,")
		switch {
		case rest == "":
		case strings.HasPrefix(rest, "DEFAULT"):
			m.rules = append(m.rules, mappingRule{def: true})
			rest = rest[len("DEFAULT"):]
		case strings.HasPrefix(rest, "RULE:"):
			r, n, err := parseRule(rest[len("RULE:"):])
			if err != nil {
				return nil, fmt.Errorf("ssl.principal.mapping.rules: %w", err)
			}
			m.rules = append(m.rules, r)
			rest = rest[len("RULE:")+n:]
		default:
			return nil, fmt.Errorf("ssl.principal.mapping.rules: want RULE:pattern/replacement/[LU] or DEFAULT at %q", rest)
		}
	}
	return m, nil
}

// parseRule reads "pattern/replacement/" and an optional L or U; pattern
// and replacement may contain escaped slashes ("\/").
func parseRule(s string) (mappingRule, int, error) {
	var parts []string
	var cur strings.Builder
	i := 0
	for ; i < len(s) && len(parts) < 2; i++ {
		switch {
		case s[i] == '\\' && i+1 < len(s) && s[i+1] == '/':
			cur.WriteByte('/')
			i++
		case s[i] == '/':
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(s[i])
		}
	}
	if len(parts) != 2 {
		return mappingRule{}, 0, fmt.Errorf("rule %q: want pattern/replacement/", s)
	}
	re, err := regexp.Compile("^(?:" + parts[0] + ")$")
	if err != nil {
		return mappingRule{}, 0, fmt.Errorf("rule pattern %q: %w", parts[0], err)
	}
	r := mappingRule{re: re, replacement: javaToGoReplacement(parts[1])}
	if i < len(s) && (s[i] == 'L' || s[i] == 'U') {
		r.lower, r.upper = s[i] == 'L', s[i] == 'U'
		i++
	}
	return r, i, nil
}

// javaToGoReplacement turns Java's $1 into Go's ${1}.
func javaToGoReplacement(s string) string {
	return regexp.MustCompile(`\$(\d+)`).ReplaceAllString(s, "$${$1}")
}

// Map returns the user name for a distinguished name.
func (m *PrincipalMapper) Map(dn string) (string, error) {
	for _, r := range m.rules {
		if r.def {
			return dn, nil
		}
		if !r.re.MatchString(dn) {
			continue
		}
		out := r.re.ReplaceAllString(dn, r.replacement)
		switch {
		case r.lower:
			out = strings.ToLower(out)
		case r.upper:
			out = strings.ToUpper(out)
		}
		return out, nil
	}
	return "", fmt.Errorf("no ssl.principal.mapping.rules rule matches %q", dn)
}

// CertificatePrincipal is the principal of a verified client certificate.
func (m *PrincipalMapper) CertificatePrincipal(cert *x509.Certificate) (string, error) {
	name, err := m.Map(cert.Subject.String())
	if err != nil {
		return "", err
	}
	return "User:" + name, nil
}
