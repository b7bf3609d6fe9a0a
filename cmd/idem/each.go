package main

import (
	"fmt"
	"io"
	"strings"
)

// eachNamed goes through the names a command was given, in order, with
// what the broker answered for each: lookup returns the answer, whether the
// broker returned the name at all, and the error it returned for it. show
// prints an answer; fail prints why a name has none ("not returned by the
// broker", or the error). The result names every failure: "could not <verb>
// a, b".
func eachNamed[T any](verb string, names []string, lookup func(name string) (T, bool, error), show func(name string, v T) error, fail func(name, why string)) error {
	var failed []string
	for _, name := range names {
		v, ok, err := lookup(name)
		switch {
		case !ok:
			fail(name, "not returned by the broker")
		case err != nil:
			fail(name, err.Error())
		default:
			if err := show(name, v); err != nil {
				return err
			}
			continue
		}
		failed = append(failed, name)
	}
	if len(failed) > 0 {
		return fmt.Errorf("could not %s %s", verb, strings.Join(failed, ", "))
	}
	return nil
}

// describeEach is eachNamed for describe commands: one block per name,
// separated by blank lines, and "name: why" for a name without an answer.
func describeEach[T any](w io.Writer, names []string, lookup func(name string) (T, bool, error), show func(name string, v T) error) error {
	first := true
	separate := func() {
		if !first {
			fmt.Fprintln(w)
		}
		first = false
	}
	return eachNamed("describe", names, lookup,
		func(name string, v T) error { separate(); return show(name, v) },
		func(name, why string) { separate(); fmt.Fprintf(w, "%s: %s\n", name, why) })
}
