package main

import (
	"fmt"
	"io"
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"
)

// recordFormat is a compiled kcat-style -f format. The codes are kcat's, so
// a user's muscle memory and scripts carry over:
//
//	%t topic    %p partition    %o offset    %T timestamp (ms)
//	%k key      %K key length   %s value     %S value length
//	%h headers as name=value pairs separated by commas
//	%% a percent sign; \n \r \t \\ escapes
type recordFormat []formatPiece

type formatPiece struct {
	lit  string
	code byte // 0 for a literal
}

// parseFormat compiles f, rejecting unknown codes so that a typo shows up
// as an error instead of odd output.
func parseFormat(f string) (recordFormat, error) {
	var out recordFormat
	var lit []byte
	flush := func() {
		if len(lit) > 0 {
			out = append(out, formatPiece{lit: string(lit)})
			lit = nil
		}
	}
	for i := 0; i < len(f); i++ {
		c := f[i]
		switch c {
		case '%', '\\':
			if i+1 == len(f) {
				return nil, fmt.Errorf("format %q: dangling %c at the end", f, c)
			}
			i++
			n := f[i]
			if c == '\\' {
				switch n {
				case 'n':
					lit = append(lit, '\n')
				case 'r':
					lit = append(lit, '\r')
				case 't':
					lit = append(lit, '\t')
				case '\\':
					lit = append(lit, '\\')
				default:
					return nil, fmt.Errorf("format %q: unknown escape \\%c", f, n)
				}
				continue
			}
			switch n {
			case '%':
				lit = append(lit, '%')
			case 't', 'p', 'o', 'T', 'k', 'K', 's', 'S', 'h':
				flush()
				out = append(out, formatPiece{code: n})
			default:
				return nil, fmt.Errorf("format %q: unknown code %%%c (known: %%t %%p %%o %%T %%k %%K %%s %%S %%h %%%%)", f, n)
			}
		default:
			lit = append(lit, c)
		}
	}
	flush()
	return out, nil
}

// write appends r formatted to buf and returns it.
func (f recordFormat) write(buf []byte, r *kgo.Record) []byte {
	for _, p := range f {
		switch p.code {
		case 0:
			buf = append(buf, p.lit...)
		case 't':
			buf = append(buf, r.Topic...)
		case 'p':
			buf = strconv.AppendInt(buf, int64(r.Partition), 10)
		case 'o':
			buf = strconv.AppendInt(buf, r.Offset, 10)
		case 'T':
			buf = strconv.AppendInt(buf, r.Timestamp.UnixMilli(), 10)
		case 'k':
			buf = append(buf, r.Key...)
		case 'K':
			buf = strconv.AppendInt(buf, int64(len(r.Key)), 10)
		case 's':
			buf = append(buf, r.Value...)
		case 'S':
			buf = strconv.AppendInt(buf, int64(len(r.Value)), 10)
		case 'h':
			for i, h := range r.Headers {
				if i > 0 {
					buf = append(buf, ',')
				}
				buf = append(buf, h.Key...)
				buf = append(buf, '=')
				buf = append(buf, h.Value...)
			}
		}
	}
	return buf
}

// Fprint writes one formatted record.
func (f recordFormat) Fprint(w io.Writer, r *kgo.Record) error {
	_, err := w.Write(f.write(nil, r))
	return err
}
