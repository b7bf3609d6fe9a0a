package tail

import (
	"fmt"
	"strings"
	"testing"
)

func TestBufferKeepsTheLastBytes(t *testing.T) {
	b := NewBuffer(10)
	fmt.Fprint(b, "hello ")
	if got := b.String(); got != "hello " {
		t.Fatalf("under the limit: %q", got)
	}
	fmt.Fprint(b, "world, and more")
	if got := b.String(); got != ", and more" {
		t.Fatalf("over the limit: %q, want the last 10 bytes", got)
	}
	fmt.Fprint(b, strings.Repeat("x", 25))
	if got := b.String(); got != strings.Repeat("x", 10) {
		t.Fatalf("one write longer than the limit: %q", got)
	}
}
