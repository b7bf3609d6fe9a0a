package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// property is one name=value setting with where it came from, so an error
// about it can point at the file and line (or the flag) that set it.
type property struct {
	name, value string
	source      string // "-X" or "file:line"
}

// readPropertiesFile parses a Java-style .properties file, the format of
// Kafka's server.properties: "#" or "!" comments, name and value separated
// by the first "=", ":" or whitespace, a trailing backslash continuing the
// line, and the usual escapes. A flat "name: value" YAML file parses too.
func readPropertiesFile(path string) ([]property, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	defer f.Close()
	return parseProperties(f, path)
}

func parseProperties(r io.Reader, name string) ([]property, error) {
	var out []property
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	lineNo := 0
	for sc.Scan() {
		lineNo++
		start := lineNo
		line := strings.TrimLeft(sc.Text(), " \t\f")
		if line == "" || line[0] == '#' || line[0] == '!' {
			continue
		}
		for continues(line) {
			line = line[:len(line)-1]
			if !sc.Scan() {
				break
			}
			lineNo++
			line += strings.TrimLeft(sc.Text(), " \t\f")
		}
		k, v := splitProperty(line)
		key, err := unescapeProperty(k)
		if err == nil {
			v, err = unescapeProperty(v)
		}
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, start, err)
		}
		if key == "" {
			return nil, fmt.Errorf("%s:%d: missing property name", name, start)
		}
		out = append(out, property{name: key, value: v, source: fmt.Sprintf("%s:%d", name, start)})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

// continues reports whether line ends in an odd number of backslashes.
func continues(line string) bool {
	n := 0
	for i := len(line) - 1; i >= 0 && line[i] == '\\'; i-- {
		n++
	}
	return n%2 == 1
}

// splitProperty splits at the first unescaped '=', ':' or whitespace; a
// whitespace separator may be followed by one '=' or ':'.
func splitProperty(line string) (key, value string) {
	for i := 0; i < len(line); i++ {
		switch c := line[i]; c {
		case '\\':
			i++
		case '=', ':':
			return line[:i], strings.TrimLeft(line[i+1:], " \t\f")
		case ' ', '\t', '\f':
			rest := strings.TrimLeft(line[i:], " \t\f")
			if rest != "" && (rest[0] == '=' || rest[0] == ':') {
				rest = strings.TrimLeft(rest[1:], " \t\f")
			}
			return line[:i], rest
		}
	}
	return line, ""
}

func unescapeProperty(s string) (string, error) {
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		i++
		switch c = s[i]; c {
		case 't':
			b.WriteByte('\t')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 'f':
			b.WriteByte('\f')
		case 'u':
			if i+5 > len(s) {
				return "", fmt.Errorf("bad \\u escape in %q", s)
			}
			r, err := strconv.ParseUint(s[i+1:i+5], 16, 16)
			if err != nil {
				return "", fmt.Errorf("bad \\u escape in %q", s)
			}
			b.WriteRune(rune(r))
			i += 4
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// parseSetFlags turns repeated -X name=value flags into properties.
func parseSetFlags(xs []string) ([]property, error) {
	var out []property
	for _, x := range xs {
		k, v, ok := strings.Cut(x, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("-X %q: want name=value (for example -X num.partitions=3)", x)
		}
		out = append(out, property{name: k, value: v, source: "-X"})
	}
	return out, nil
}
